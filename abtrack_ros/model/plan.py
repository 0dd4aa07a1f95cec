"""The pruning plan: which attention-inner features and MLP hidden units each block keeps.

Plain data with no model imports, so the model (which records its plan) and the pruning code
(which makes and applies plans) can both depend on it without depending on each other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class PruningPlan:
    """Kept inner-attention features and MLP hidden units per block (original indices)."""

    ratio: float
    attn_keep: list[list[int]]
    mlp_keep: list[list[int]]

    def to_dict(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "attn_keep": self.attn_keep, "mlp_keep": self.mlp_keep}

    @classmethod
    def from_dict(cls, data: Any) -> "PruningPlan":
        if not isinstance(data, dict) or set(data) != {"ratio", "attn_keep", "mlp_keep"}:
            raise ValueError(f"a pruning plan needs exactly ratio, attn_keep, mlp_keep; got {data!r:.200}")
        for key in ("attn_keep", "mlp_keep"):
            rows = data[key]
            if not isinstance(rows, list) or not all(
                    isinstance(row, list) and all(isinstance(i, int) for i in row) for row in rows):
                raise ValueError(f"pruning plan '{key}' must be a list of integer lists")
        return cls(float(data["ratio"]), data["attn_keep"], data["mlp_keep"])
