"""Reading and writing tracking results in each benchmark's file layout.

Per tracker folder:
- GOT-10k and synthetic: ``<seq>/<seq>_001.txt`` (one ``x,y,w,h`` line per frame) and
  ``<seq>/<seq>_time.txt`` (seconds per frame), as the GOT-10k toolkit expects.
- LaSOT, TrackingNet, UAV123, OTB: ``<seq>.txt`` with one ``x,y,w,h`` line per frame, and
  ``<seq>_time.txt`` beside it (extra, so that an existing folder can be re-scored with its FPS).
- ABTrack also writes ``<seq>_blocks.txt`` next to the times: one line of 0/1 per frame, one
  digit per transformer block (1 = executed).
- ``<seq>_state.txt`` next to the times (ABTrack and the OpenCV peers): one ``score,state`` line per
  frame, the tracker's confidence score (``nan`` where it has none: the peers, the init frame) and
  its state (``TRACKING``, ``LOST``; ``-`` where none). Folders without it still score.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

GOT10K_LAYOUT_FORMATS = ("got10k", "synthetic")
NO_STATE = "-"  # the state column of a frame without a state (the init frame and before)


class ResultsError(ValueError):
    """A results folder that does not match the dataset."""


@dataclass
class SequenceResult:
    """What one tracker produced on one sequence."""

    name: str
    boxes: np.ndarray  # N x 4 xywh (NaN where the tracker gave nothing)
    times: np.ndarray  # N seconds per frame (the init frame included)
    executed: Optional[np.ndarray] = None  # N x num_blocks bool (ABTrack only); init frame row all False
    scores: Optional[np.ndarray] = None  # N confidence scores, NaN where none; None: the tracker has no score
    states: Optional[np.ndarray] = None  # N states ("TRACKING", "LOST"; "" where none); None: it reports none
    raw_scores: Optional[np.ndarray] = None  # N raw peak scores of the model, NaN where none; None: none


class ResultsLayout:
    """File paths of one tracker's results for one dataset format."""

    def __init__(self, root: Path, dataset_format: str) -> None:
        self.root = Path(root)
        self.got10k_style = dataset_format in GOT10K_LAYOUT_FORMATS

    def boxes_path(self, seq: str) -> Path:
        return self.root / seq / f"{seq}_001.txt" if self.got10k_style else self.root / f"{seq}.txt"

    def _side_path(self, seq: str, suffix: str) -> Path:
        folder = self.root / seq if self.got10k_style else self.root
        return folder / f"{seq}_{suffix}.txt"

    def times_path(self, seq: str) -> Path:
        return self._side_path(seq, "time")

    def blocks_path(self, seq: str) -> Path:
        return self._side_path(seq, "blocks")

    def state_path(self, seq: str) -> Path:
        return self._side_path(seq, "state")

    def write(self, result: SequenceResult) -> None:
        path = self.boxes_path(result.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savetxt(path, result.boxes, fmt="%.4f", delimiter=",")
        np.savetxt(self.times_path(result.name), result.times, fmt="%.8f")
        if result.executed is not None:
            rows = ["".join("1" if v else "0" for v in row) for row in result.executed]
            self.blocks_path(result.name).write_text("\n".join(rows) + "\n")
        if result.scores is not None or result.states is not None or result.raw_scores is not None:
            n = len(result.boxes)
            scores = result.scores if result.scores is not None else np.full(n, np.nan)
            states = result.states if result.states is not None else np.full(n, "")
            raw = result.raw_scores if result.raw_scores is not None else np.full(n, np.nan)
            lines = [f"{score:.6f},{state or NO_STATE},{raw_score:.6f}"
                     for score, state, raw_score in zip(scores, states, raw, strict=True)]
            self.state_path(result.name).write_text("\n".join(lines) + "\n")

    def read(self, seq: str, num_frames: int) -> SequenceResult:
        path = self.boxes_path(seq)
        if not path.is_file():
            raise ResultsError(f"no results for sequence {seq!r}: {path} is missing")
        text = path.read_text().replace("\t", ",").replace(" ", ",")
        try:
            boxes = np.array(
                [[float(v) for v in line.split(",") if v] for line in text.splitlines() if line.strip()], np.float64
            ).reshape(-1, 4)
        except ValueError as exc:
            raise ResultsError(f"{path}: not x,y,w,h rows of numbers ({exc})") from exc
        if len(boxes) != num_frames:
            raise ResultsError(f"{path}: {len(boxes)} boxes for a sequence of {num_frames} frames")
        times_path = self.times_path(seq)
        times = np.full(num_frames, np.nan)
        if times_path.is_file():
            try:
                times = np.loadtxt(times_path, ndmin=1)
            except ValueError as exc:
                raise ResultsError(f"{times_path}: not one number per line ({exc})") from exc
            if times.shape != (num_frames,):
                raise ResultsError(f"{times_path}: {times.size} times for a sequence of {num_frames} frames")
        executed = None
        blocks_path = self.blocks_path(seq)
        if blocks_path.is_file():
            lines = [ln.strip() for ln in blocks_path.read_text().splitlines() if ln.strip()]
            if len(lines) != num_frames or len({len(ln) for ln in lines}) != 1 or set("".join(lines)) - {"0", "1"}:
                raise ResultsError(f"{blocks_path}: expected {num_frames} lines of equally many 0/1 digits")
            executed = np.array([[c == "1" for c in ln] for ln in lines], dtype=bool)
        scores, states, raw_scores = None, None, None
        if self.state_path(seq).is_file():
            scores, states, raw_scores = _read_states(self.state_path(seq), num_frames)
        return SequenceResult(name=seq, boxes=boxes, times=times, executed=executed, scores=scores, states=states,
                              raw_scores=raw_scores)


def _read_states(path: Path, num_frames: int
                 ) -> tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]:
    """``<seq>_state.txt`` (lines ``score,state[,raw score]``; results written before the raw score
    have two columns) -> (scores, states, raw scores), each None when no frame has one."""
    rows = [line.strip().split(",") for line in path.read_text().splitlines() if line.strip()]
    lengths = {len(row) for row in rows}
    if len(lengths) > 1 or not lengths <= {2, 3}:
        raise ResultsError(f"{path}: expected lines of score,state or score,state,raw_score")
    try:
        scores = np.array([float(row[0]) for row in rows], dtype=np.float64)
        raw = np.array([float(row[2]) if len(row) == 3 else np.nan for row in rows], dtype=np.float64)
    except ValueError as exc:
        raise ResultsError(f"{path}: expected lines of score,state[,raw_score] ({exc})") from exc
    if len(rows) != num_frames:
        raise ResultsError(f"{path}: {len(rows)} lines for a sequence of {num_frames} frames")
    states = np.array(["" if row[1] == NO_STATE else row[1] for row in rows])
    return ((scores if np.isfinite(scores).any() else None), (states if (states != "").any() else None),
            (raw if np.isfinite(raw).any() else None))
