"""The one record every dataset reader returns, and frame loading."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


class DatasetError(ValueError):
    """A dataset that cannot be read: missing path, bad layout, malformed annotation."""


@dataclass
class Sequence:
    """One annotated video (or a single image, for COCO).

    ``boxes`` is ``N x 4`` ``[x, y, w, h]`` in pixels, NaN where the box is unknown;
    ``visible`` is ``N`` bool, False where the target is absent, fully occluded or unlabelled.
    """

    name: str
    frames: list[Path]
    boxes: np.ndarray
    visible: np.ndarray
    dataset: str

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.visible = np.asarray(self.visible, dtype=bool).reshape(-1)
        if not (len(self.frames) == len(self.boxes) == len(self.visible)):
            raise DatasetError(
                f"sequence {self.name!r}: {len(self.frames)} frames, {len(self.boxes)} boxes and "
                f"{len(self.visible)} visibility flags must have the same length"
            )

    def __len__(self) -> int:
        return len(self.frames)


def valid_boxes(boxes: np.ndarray) -> np.ndarray:
    """True where a box is finite with positive width and height."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    finite = np.isfinite(boxes).all(axis=1)
    with np.errstate(invalid="ignore"):
        return finite & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)


def load_frame(path: str | Path) -> np.ndarray:
    """Read an image file as an ``H x W x 3`` RGB uint8 array."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"frame file not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"cannot decode image file: {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
