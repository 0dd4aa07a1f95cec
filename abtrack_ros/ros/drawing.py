"""Annotating frames with a tracking result (the node's debug_image and the demo's video)."""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

# Colours are RGB (frames are RGB everywhere in the package).
TRACKING_COLOUR = (0, 220, 0)
LOST_COLOUR = (230, 40, 40)
TRUTH_COLOUR = (250, 250, 0)
RAN_COLOUR = (0, 200, 255)
BYPASSED_COLOUR = (90, 90, 90)
BLOCK_CELL_PX = 10


def draw_result(
    frame: np.ndarray,
    box_xywh: Optional[Sequence[float]],
    score: float,
    state_name: str,
    executed: Sequence[bool],
    truth_xywh: Optional[Sequence[float]] = None,
) -> np.ndarray:
    """A copy of `frame` with the box, the score/state and one cell per block (lit = executed)."""
    out = np.ascontiguousarray(frame).copy()
    if truth_xywh is not None and np.all(np.isfinite(truth_xywh)):
        _rectangle(out, truth_xywh, TRUTH_COLOUR, 1)
    if box_xywh is not None:
        colour = LOST_COLOUR if state_name == "LOST" else TRACKING_COLOUR
        _rectangle(out, box_xywh, colour, 2)
    label = f"{state_name} {score:.2f}" if box_xywh is not None else state_name
    cv2.putText(out, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    y = 20
    for i, ran in enumerate(executed):
        x = 4 + i * (BLOCK_CELL_PX + 2)
        colour = RAN_COLOUR if ran else BYPASSED_COLOUR
        cv2.rectangle(out, (x, y), (x + BLOCK_CELL_PX, y + BLOCK_CELL_PX), colour, -1)
    return out


def _rectangle(img: np.ndarray, box: Sequence[float], colour: tuple[int, int, int], thickness: int) -> None:
    x, y, w, h = (float(v) for v in box)
    cv2.rectangle(img, (round(x), round(y)), (round(x + w), round(y + h)), colour, thickness)
