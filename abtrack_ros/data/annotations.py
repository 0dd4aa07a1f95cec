"""Parsing of the text files the tracking benchmarks ship: box lists, per-frame flags, frame folders."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .sequence import DatasetError

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# Benchmarks separate box fields by commas, tabs or spaces (OTB mixes all three).
_FIELD_SEPARATOR = re.compile(r"[,\s]+")
_EDGE_CHARACTERS = " ,\t\r"
_DIGITS = re.compile(r"\d+")


def read_boxes(path: Path) -> np.ndarray:
    """Read one ``x, y, w, h`` box per non-empty line; ``NaN`` fields are kept as NaN."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise DatasetError(f"cannot read annotation file {path}: {exc}") from exc
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        line = line.strip(_EDGE_CHARACTERS)  # some OTB files end rows with a separator
        if not line:
            continue
        fields = _FIELD_SEPARATOR.split(line)
        try:
            values = [float(field) for field in fields]
        except ValueError:
            values = []
        if len(values) != 4:
            raise DatasetError(f"{path}:{line_no}: expected 4 numbers (x, y, w, h), got {line!r}")
        rows.append(values)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def read_flags(path: Path, expected: int) -> np.ndarray:
    """Read integer per-frame labels, one per line or comma separated on one line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise DatasetError(f"cannot read label file {path}: {exc}") from exc
    values = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        for field in _FIELD_SEPARATOR.split(line.strip()):
            if not field:
                continue
            try:
                values.append(int(float(field)))
            except ValueError:
                raise DatasetError(f"{path}:{line_no}: expected integer labels, got {line.strip()!r}") from None
    if len(values) != expected:
        raise DatasetError(f"{path}: {len(values)} labels for {expected} frames")
    return np.asarray(values, dtype=np.int64)


def frame_number(path: Path) -> int:
    """The last run of digits in a file name (``00000012.jpg`` -> 12, ``img_7.png`` -> 7)."""
    digits = _DIGITS.findall(path.stem)
    return int(digits[-1]) if digits else -1


def list_frames(folder: Path) -> list[Path]:
    """Image files of a folder in numeric frame order (``2.jpg`` before ``10.jpg``)."""
    if not folder.is_dir():
        raise DatasetError(f"frame folder not found: {folder}")
    frames = [p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS and p.is_file()]
    return sorted(frames, key=lambda p: (frame_number(p), p.name))


def pad_boxes(boxes: np.ndarray, num_frames: int, source: Path) -> np.ndarray:
    """Match a box list to the frame count.

    Equal lengths pass; a single row (the first-frame-only annotation of test splits) is padded
    with NaN; anything else is an error naming the file.
    """
    if len(boxes) == num_frames:
        return boxes
    if len(boxes) == 1 and num_frames > 1:
        padded = np.full((num_frames, 4), np.nan)
        padded[0] = boxes[0]
        return padded
    raise DatasetError(f"{source}: {len(boxes)} boxes for {num_frames} frames")
