"""Pure image geometry for tracking: crops with zero padding, box mapping, IoU, clipping.

Boxes in images are ``[x, y, w, h]`` in pixels (top-left corner); boxes inside a crop are
``[cx, cy, w, h]`` normalised to the crop side (0..1), as the model outputs them.
Pixel ``i`` covers the continuous interval ``[i, i + 1)``, so its centre is ``i + 0.5``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# ImageNet statistics used to normalise the model inputs (RGB, values in 0..1).
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# Smallest target side (pixels) a box may have inside the image: below it a crop around the box
# is mostly interpolation and the track cannot recover.
MIN_BOX_SIDE_PX = 3.0


@dataclass(frozen=True)
class CropWindow:
    """A square region of the image (top-left ``x0, y0``, side in image pixels) resized to ``out_size``."""

    x0: float
    y0: float
    side: float
    out_size: int

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel."""
        return self.out_size / self.side


def crop_side(box_xywh: np.ndarray, factor: float) -> float:
    """Side of the square crop around a box: ``sqrt(w * h) * factor`` (the usual context rule)."""
    w, h = float(box_xywh[2]), float(box_xywh[3])
    return math.sqrt(w * h) * factor


def box_center(box_xywh: np.ndarray) -> tuple[float, float]:
    """Centre ``(cx, cy)`` of an ``[x, y, w, h]`` box."""
    return float(box_xywh[0] + box_xywh[2] / 2.0), float(box_xywh[1] + box_xywh[3] / 2.0)


def box_at(center_xy: tuple[float, float], size_xywh: np.ndarray) -> np.ndarray:
    """An ``[x, y, w, h]`` box with the width and height of ``size_xywh``, centred on ``center_xy``."""
    w, h = float(size_xywh[2]), float(size_xywh[3])
    return np.array([center_xy[0] - w / 2.0, center_xy[1] - h / 2.0, w, h])


def crop_window(center_xy: tuple[float, float], side: float, out_size: int) -> CropWindow:
    """The square window of ``side`` image pixels centred on ``center_xy``."""
    if not side > 0:
        raise ValueError(f"crop side must be positive, got {side}")
    cx, cy = center_xy
    return CropWindow(x0=cx - side / 2.0, y0=cy - side / 2.0, side=float(side), out_size=int(out_size))


def crop_patch(frame: np.ndarray, window: CropWindow) -> np.ndarray:
    """Resample ``window`` of ``frame`` to ``out_size x out_size``; outside the image is zero."""
    s = window.scale
    # Continuous coordinate -> pixel index differs by half a pixel on both sides of the map.
    shift_x = window.x0 + 0.5 / s - 0.5
    shift_y = window.y0 + 0.5 / s - 0.5
    affine = np.array([[s, 0.0, -s * shift_x], [0.0, s, -s * shift_y]], dtype=np.float64)
    return cv2.warpAffine(
        frame,
        affine,
        (window.out_size, window.out_size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )


def box_to_crop(box_xywh: np.ndarray, window: CropWindow) -> np.ndarray:
    """Image ``[x, y, w, h]`` -> crop-normalised ``[cx, cy, w, h]``."""
    cx, cy = box_center(box_xywh)
    return np.array(
        [
            (cx - window.x0) / window.side,
            (cy - window.y0) / window.side,
            box_xywh[2] / window.side,
            box_xywh[3] / window.side,
        ],
        dtype=np.float64,
    )


def box_from_crop(box_cxcywh: np.ndarray, window: CropWindow) -> np.ndarray:
    """Crop-normalised ``[cx, cy, w, h]`` -> image ``[x, y, w, h]`` (the inverse of :func:`box_to_crop`)."""
    cx = window.x0 + float(box_cxcywh[0]) * window.side
    cy = window.y0 + float(box_cxcywh[1]) * window.side
    w = float(box_cxcywh[2]) * window.side
    h = float(box_cxcywh[3]) * window.side
    return np.array([cx - w / 2.0, cy - h / 2.0, w, h], dtype=np.float64)


def clip_box(box_xywh: np.ndarray, width: int, height: int, min_size: float = 1.0) -> np.ndarray:
    """Clip a box to the image, keeping at least ``min_size`` pixels of width and height."""
    x1 = min(max(float(box_xywh[0]), 0.0), width - min_size)
    y1 = min(max(float(box_xywh[1]), 0.0), height - min_size)
    x2 = min(max(float(box_xywh[0] + box_xywh[2]), x1 + min_size), float(width))
    y2 = min(max(float(box_xywh[1] + box_xywh[3]), y1 + min_size), float(height))
    return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float64)


def iou_xywh(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of matching rows of two ``(N, 4)`` (or ``(4,)``) ``[x, y, w, h]`` arrays.

    Rows with a NaN give NaN; boxes with non-positive size have zero area (IoU 0 unless both are empty, NaN then).
    """
    a = np.atleast_2d(np.asarray(boxes_a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(boxes_b, dtype=np.float64))
    if a.shape != b.shape or a.shape[-1] != 4:
        raise ValueError(f"IoU needs two (N, 4) arrays of the same shape, got {a.shape} and {b.shape}")
    aw, ah = np.clip(a[:, 2], 0, None), np.clip(a[:, 3], 0, None)
    bw, bh = np.clip(b[:, 2], 0, None), np.clip(b[:, 3], 0, None)
    inter_w = np.clip(np.minimum(a[:, 0] + aw, b[:, 0] + bw) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    inter_h = np.clip(np.minimum(a[:, 1] + ah, b[:, 1] + bh) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = inter_w * inter_h
    union = aw * ah + bw * bh - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), np.nan)
    iou[np.isnan(a).any(axis=1) | np.isnan(b).any(axis=1)] = np.nan
    return iou if np.ndim(boxes_a) > 1 else iou[0]


def hann_window_2d(size: int) -> np.ndarray:
    """``size x size`` Hann window that is positive everywhere (the zero end points are dropped)."""
    one_d = np.hanning(size + 2)[1:-1]
    return np.outer(one_d, one_d).astype(np.float32)


def validate_frame(frame: object) -> np.ndarray:
    """Check a frame is a non-empty ``H x W x 3`` uint8 array; return it, or raise ValueError."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8 RGB, got dtype {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be H x W x 3 (RGB), got shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"frame is empty (shape {frame.shape})")
    return frame


def validate_box(box_xywh: object, width: int, height: int) -> np.ndarray:
    """Check an ``[x, y, w, h]`` box and return its part inside the image, or raise ValueError.

    The box must be finite with a positive size, and its part inside the ``width x height``
    image must be at least MIN_BOX_SIDE_PX on both sides. Clipping first keeps every later size
    (crop side, area) finite: a box of 1e200 pixels becomes the whole image.
    """
    if width < MIN_BOX_SIDE_PX or height < MIN_BOX_SIDE_PX:
        raise ValueError(f"a {width}x{height} image is too small for a target box")
    try:
        box = np.asarray(box_xywh, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"box must be 4 numbers [x, y, w, h], got {box_xywh!r}") from exc
    if box.shape != (4,):
        raise ValueError(f"box must be 4 numbers [x, y, w, h], got {box.size} values")
    with np.errstate(over="ignore"):
        corners = np.array([box[0], box[1], box[0] + box[2], box[1] + box[3]])
    if not (np.all(np.isfinite(box)) and np.all(np.isfinite(corners))):
        raise ValueError(f"box has NaN or infinite values: {box.tolist()}")
    if box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"box width and height must be positive, got w={box[2]}, h={box[3]}")
    x1, y1 = max(corners[0], 0.0), max(corners[1], 0.0)
    x2, y2 = min(corners[2], float(width)), min(corners[3], float(height))
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"box {box.tolist()} lies fully outside the {width}x{height} frame")
    if x2 - x1 < MIN_BOX_SIDE_PX or y2 - y1 < MIN_BOX_SIDE_PX:
        raise ValueError(
            f"box {box.tolist()} has {x2 - x1:.3g} x {y2 - y1:.3g} pixels inside the {width}x{height} "
            f"frame; a target needs at least {MIN_BOX_SIDE_PX:g} x {MIN_BOX_SIDE_PX:g}"
        )
    return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float64)
