"""Where the demo camera's frames come from: a generated synthetic sequence, a video, a folder of
frames or a webcam. Every source yields RGB uint8 frames with the ground-truth box when known."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np

from abtrack_ros.data import generate_synthetic, load_frame, open_dataset

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SYNTHETIC_SIZE = (640, 480)  # a normal camera: 921,600 bytes per frame, over the 512 KiB DDS default
SYNTHETIC_DIFFICULTY = "easy"
SYNTHETIC_SPLIT = "train"


@dataclass
class SourceFrame:
    frame: np.ndarray
    truth_xywh: Optional[np.ndarray]  # None (or NaN) where unknown


@dataclass
class FrameSource:
    """A bounded stream of frames plus the box to initialise on (in the first frame)."""

    name: str
    first_box: np.ndarray
    frames: Iterator[SourceFrame]


def synthetic_source(work_dir: Path, num_frames: int, seed: int) -> FrameSource:
    """One synthetic sequence generated into work_dir with abtrack_ros.data's generator."""
    generate_synthetic(work_dir, num_sequences=1, num_frames=num_frames, seed=seed,
                       difficulty=SYNTHETIC_DIFFICULTY, size=SYNTHETIC_SIZE, split=SYNTHETIC_SPLIT,
                       overwrite=True)
    (sequence,) = open_dataset(f"synthetic:{work_dir}", split=SYNTHETIC_SPLIT)
    frames = (SourceFrame(load_frame(path), sequence.boxes[i]) for i, path in enumerate(sequence.frames))
    return FrameSource(f"synthetic:{sequence.name}", np.asarray(sequence.boxes[0], dtype=np.float64), frames)


def _capture_frames(capture: cv2.VideoCapture, limit: int) -> Iterator[SourceFrame]:
    try:
        for _ in range(limit):
            ok, bgr = capture.read()
            if not ok:
                return
            yield SourceFrame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None)
    finally:
        capture.release()


def capture_source(device_or_file: int | str, box: np.ndarray, limit: int) -> FrameSource:
    """A video file or a webcam (cv2.VideoCapture); ValueError when it cannot be opened."""
    capture = cv2.VideoCapture(device_or_file)
    if not capture.isOpened():
        raise ValueError(f"cannot open video source {device_or_file!r}")
    return FrameSource(f"capture:{device_or_file}", box, _capture_frames(capture, limit))


def folder_source(folder: Path, box: np.ndarray, limit: int) -> FrameSource:
    """Image files of a folder in name order."""
    if not folder.is_dir():
        raise ValueError(f"frames folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return FrameSource(f"frames:{folder}", box, (SourceFrame(load_frame(p), None) for p in paths))
