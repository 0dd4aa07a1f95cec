"""Run records: CSV logs, progress output, the resolved config and the git revision."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from typing import Optional

try:  # tqdm is optional: plain lines are printed without it
    from tqdm import tqdm
except ImportError:  # pragma: no cover - depends on the environment
    tqdm = None

from abtrack_ros.config import ABTrackConfig, save_config

CONFIG_FILE = "config.yaml"
REVISION_FILE = "git_revision.txt"


def git_revision() -> str:
    """``git rev-parse HEAD`` of the source tree, or "unknown" (no git, no commit yet)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    revision = result.stdout.strip()
    return revision if result.returncode == 0 and revision else "unknown"


def write_run_record(folder: Path, cfg: ABTrackConfig, revision: str) -> None:
    """The resolved config and the git revision, beside a stage's checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    save_config(cfg, folder / CONFIG_FILE)
    (folder / REVISION_FILE).write_text(revision + "\n")


class CsvLog:
    """Append rows with fixed columns; the header is written once (a resumed run appends). A log
    written by a version with other columns is first rewritten under the union of both (this
    version's columns first), so a resumed run never appends values under the wrong header."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = list(columns)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.stat().st_size == 0:
            self._rewrite([])
            return
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            old_columns, rows = list(reader.fieldnames or []), list(reader)
        if old_columns != self.columns:
            self.columns += [c for c in old_columns if c not in self.columns]
            self._rewrite(rows)

    def _rewrite(self, rows: list[dict]) -> None:
        with self.path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(self.columns)
            writer.writerows([row.get(c) or "" for c in self.columns] for row in rows)

    def write(self, row: dict) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise ValueError(f"{self.path.name}: unknown columns {sorted(unknown)}")
        with self.path.open("a", newline="") as handle:
            csv.writer(handle).writerow([_format(row.get(c, "")) for c in self.columns])


def _format(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def format_metrics(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={_format(v)}" for k, v in metrics.items())


class Progress:
    """A tqdm bar with the latest metrics, or plain lines when tqdm is missing; silent off rank 0."""

    def __init__(self, total: int, description: str, enabled: bool) -> None:
        self.enabled = enabled
        self.description = description
        self.bar: Optional[object] = None
        if enabled and tqdm is not None:
            self.bar = tqdm(total=total, desc=description, file=sys.stderr, dynamic_ncols=True, leave=True)

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def report(self, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(format_metrics(metrics))
        else:
            print(f"{self.description} {format_metrics(metrics)}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
