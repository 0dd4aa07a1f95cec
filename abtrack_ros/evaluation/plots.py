"""Success / precision plots and the Figure-3 style per-sequence plot (executed blocks + IoU)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from abtrack_ros.evaluation.metrics import (  # noqa: E402
    PRECISION_AT_PX,
    PRECISION_THRESHOLDS_PX,
    SUCCESS_THRESHOLDS,
    SequenceScores,
)


def _mean_curve(per_sequence: list[np.ndarray]) -> np.ndarray:
    curves = [c for c in per_sequence if not np.isnan(c).all()]
    return np.mean(curves, axis=0) if curves else np.full_like(per_sequence[0], np.nan)


def plot_success_and_precision(all_scores, out_dir: Path) -> list[Path]:
    """success.png (AUC in the legend) and precision.png (rate at 20 px in the legend)."""
    out_dir = Path(out_dir)
    paths = []
    for kind in ("success", "precision"):
        fig, ax = plt.subplots(figsize=(5, 4))
        for scores in all_scores:
            parts: list[SequenceScores] = list(scores.scores.values())
            if kind == "success":
                curve = _mean_curve([p.success() for p in parts])
                ax.plot(SUCCESS_THRESHOLDS, curve, label=f"{scores.name} [{scores.overall['auc']:.3f}]")
            else:
                curve = _mean_curve([p.precision() for p in parts])
                ax.plot(PRECISION_THRESHOLDS_PX, curve, label=f"{scores.name} [{scores.overall['precision']:.3f}]")
        if kind == "success":
            ax.set(xlabel="overlap threshold", ylabel="success rate", title="Success plot (OPE, AUC)")
        else:
            ax.axvline(PRECISION_AT_PX, color="grey", lw=0.5)
            ax.set(xlabel="location error threshold (px)", ylabel="precision", title="Precision plot (OPE)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        path = out_dir / f"{kind}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_blocks_and_iou(
    executed: np.ndarray, ious: np.ndarray, title: str, path: Path, value_label: str = "IoU"
) -> Path:
    """Figure-3 style: top, one column per frame with the executed blocks coloured (white =
    bypassed); bottom, the IoU per frame (or another 0..1 value, e.g. the score, when there is
    no ground truth). Frames the tracker did not step on are left blank."""
    executed = np.asarray(executed, dtype=bool)
    ious = np.asarray(ious, dtype=np.float64)
    frames = np.arange(len(ious))
    fig, (ax_blocks, ax_iou) = plt.subplots(
        2, 1, figsize=(8, 4), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    ax_blocks.imshow(
        executed.T.astype(float),
        aspect="auto",
        cmap="Blues",
        vmin=0,
        vmax=1.2,
        origin="lower",
        interpolation="nearest",
        extent=(-0.5, len(ious) - 0.5, 0.5, executed.shape[1] + 0.5),
    )
    ax_blocks.set(ylabel="block", title=f"{title}: executed blocks (white = bypassed) and {value_label}")
    counts = executed.sum(axis=1)
    ax_count = ax_blocks.twinx()
    ax_count.plot(frames, np.where(counts > 0, counts, np.nan), color="tab:orange", lw=1)
    ax_count.set_ylim(0.5, executed.shape[1] + 0.5)
    ax_count.set_ylabel("blocks run", color="tab:orange")
    ax_iou.plot(frames, ious, color="tab:green", lw=1)
    ax_iou.set(xlabel="frame", ylabel=value_label, ylim=(0, 1.02))
    ax_iou.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
