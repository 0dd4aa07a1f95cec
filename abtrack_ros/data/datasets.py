"""``open_dataset("FORMAT:PATH")``: the single entry point to every dataset reader."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .readers import (
    read_coco,
    read_got10k,
    read_lasot,
    read_otb,
    read_synthetic,
    read_trackingnet,
    read_uav123,
)
from .sequence import DatasetError, Sequence

_READERS: dict[str, Callable[[Path, str | None], list[Sequence]]] = {
    "got10k": read_got10k,
    "lasot": read_lasot,
    "trackingnet": read_trackingnet,
    "coco": read_coco,
    "uav123": read_uav123,
    "otb": read_otb,
    "synthetic": read_synthetic,
}
FORMATS = tuple(_READERS)


def parse_spec(spec: str) -> tuple[str, Path]:
    """Split ``"FORMAT:PATH"`` into a known format name and a path."""
    fmt, sep, path = spec.partition(":")
    fmt = fmt.strip().lower()
    if not sep or not path.strip():
        raise DatasetError(f"dataset spec must be FORMAT:PATH (formats: {', '.join(FORMATS)}), got {spec!r}")
    if fmt not in _READERS:
        raise DatasetError(f"unknown dataset format {fmt!r}; allowed: {', '.join(FORMATS)}")
    return fmt, Path(path.strip()).expanduser()


def open_dataset(spec: str, split: str | None = None) -> list[Sequence]:
    """Read every sequence of a dataset; raises :class:`DatasetError` with a clear message."""
    fmt, root = parse_spec(spec)
    if not root.is_dir():
        raise DatasetError(f"dataset path not found: {root}")
    sequences = _READERS[fmt](root, split)
    if not sequences:
        where = f"{root} (split {split})" if split else str(root)
        raise DatasetError(f"no sequences found in {where} for format {fmt}")
    return sequences
