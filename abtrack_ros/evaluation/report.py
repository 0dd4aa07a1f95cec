"""metrics.json and the markdown report of an evaluation."""
from __future__ import annotations

import json
import math
from pathlib import Path

REPORT_COLUMNS = (
    ("auc", "AUC"),
    ("precision", "P@20px"),
    ("norm_precision", "Pnorm@0.2"),
    ("ao", "AO"),
    ("sr50", "SR0.5"),
    ("sr75", "SR0.75"),
    ("fps", "FPS"),
    ("blocks_executed_mean", "blocks"),
)


def _json_number(value):
    # JSON has no NaN: missing values are written as null.
    return None if isinstance(value, float) and math.isnan(value) else value


def metrics_document(all_scores, meta: dict) -> dict:
    """The metrics.json content: meta plus, per tracker, overall and per-sequence metrics."""
    return {
        **meta,
        "trackers": {
            s.name: {
                "overall": {k: _json_number(v) for k, v in s.overall.items()},
                "sequences": {
                    seq: {k: _json_number(v) for k, v in entry.items()} for seq, entry in s.per_sequence.items()
                },
            }
            for s in all_scores
        },
    }


def write_metrics_json(all_scores, meta: dict, path: Path, sections: dict | None = None) -> Path:
    """metrics.json; ``sections`` (JSON-ready, e.g. ``adaptivity``) are added at the top level."""
    Path(path).write_text(json.dumps({**metrics_document(all_scores, meta), **(sections or {})}, indent=2))
    return Path(path)


def _cell(entry: dict, key: str) -> str:
    value = entry.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.1f}" if key in ("fps", "blocks_executed_mean") else f"{value:.3f}"


def _table(rows: list[tuple[str, dict]]) -> list[str]:
    lines = ["| tracker | " + " | ".join(title for _, title in REPORT_COLUMNS) + " |"]
    lines.append("|---" * (len(REPORT_COLUMNS) + 1) + "|")
    for label, entry in rows:
        lines.append(f"| {label} | " + " | ".join(_cell(entry, key) for key, _ in REPORT_COLUMNS) + " |")
    return lines


def write_report(all_scores, meta: dict, path: Path, images: list[str], extra_lines: list[str] | None = None) -> Path:
    """report.md: an overall table, one table per sequence, ``extra_lines`` (markdown of further
    sections, e.g. adaptivity), and links to the plots."""
    lines = [f"# Evaluation on {meta.get('dataset', '?')}", ""]
    lines += [f"- {key}: {value}" for key, value in meta.items() if key != "dataset"]
    lines += ["", "## Overall", ""] + _table([(s.name, s.overall) for s in all_scores])
    sequences = list(all_scores[0].per_sequence) if all_scores else []
    lines += ["", "## Per sequence", ""]
    for seq in sequences:
        lines += [f"### {seq}", ""] + _table([(s.name, s.per_sequence[seq]) for s in all_scores]) + [""]
    lines += list(extra_lines or [])
    lines += ["## Plots", ""] + [f"![{Path(img).stem}]({img})" for img in images]
    lines += ["", "AUC: mean success rate over IoU thresholds 0..1 (step 0.05, IoU > t); P@20px: centre "
              "error <= 20 px; Pnorm@0.2: normalised centre error <= 0.2; AO/SR: GOT-10k (frame-pooled); "
              "blocks: mean transformer blocks executed per tracking step.", ""]
    Path(path).write_text("\n".join(lines))
    return Path(path)
