"""Frame sources (video file or folder of images) and the annotated video writer for `abtrack track`."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
DEFAULT_FPS = 30.0
BOX_COLOUR_TRACKING = (0, 220, 0)  # RGB
BOX_COLOUR_LOST = (230, 30, 30)
BOX_COLOUR_INIT = (40, 120, 255)


class FrameSource:
    """RGB uint8 frames from a video file or a folder of images (sorted by name)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in folder {self.path}")
            self.fps = DEFAULT_FPS
        elif self.path.is_file():
            self.files = []
            capture = cv2.VideoCapture(str(self.path))
            if not capture.isOpened():
                raise ValueError(f"cannot open video file {self.path}")
            self.fps = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
            capture.release()
        else:
            raise ValueError(f"video file or frame folder not found: {self.path}")

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.files:
            from abtrack_ros.data import load_frame

            for file in self.files:
                yield load_frame(file)
            return
        capture = cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()


class AnnotatedVideoWriter:
    """Writes RGB frames to ``<stem>.mp4`` (mp4v); falls back to ``<stem>.avi`` (MJPG) if mp4 cannot be opened."""

    CODECS = ((".mp4", "mp4v"), (".avi", "MJPG"))

    def __init__(self, stem: Path, fps: float) -> None:
        self.stem = Path(stem)
        self.fps = fps
        self._writer: Optional[cv2.VideoWriter] = None
        self.path: Optional[Path] = None

    def _open(self, width: int, height: int) -> None:
        for suffix, codec in self.CODECS:
            path = self.stem.with_suffix(suffix)
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), self.fps, (width, height))
            if writer.isOpened():
                self._writer, self.path = writer, path
                return
            writer.release()
        raise RuntimeError(f"OpenCV can write neither mp4 (mp4v) nor avi (MJPG) to {self.stem.parent}")

    def write(self, frame_rgb: np.ndarray) -> None:
        if self._writer is None:
            self._open(frame_rgb.shape[1], frame_rgb.shape[0])
        self._writer.write(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> Optional[Path]:
        if self._writer is not None:
            self._writer.release()
        return self.path


def annotate(frame: np.ndarray, box: np.ndarray, colour: tuple[int, int, int], lines: list[str]) -> np.ndarray:
    """A copy of ``frame`` with the box and text lines drawn on it."""
    out = frame.copy()
    x, y, w, h = (int(round(v)) for v in box)
    cv2.rectangle(out, (x, y), (x + w, y + h), colour, 2)
    for i, text in enumerate(lines):
        origin = (5, 18 + 18 * i)
        cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out
