"""Tracking labels for real video that has none: keep what two independent trackers agree on.

For an unlabelled video (a static-camera clip such as OpenCV's ``vtest.avi``), ``label_video``:
1. proposes targets: moving blobs of a background subtractor (MOG2) at regular start frames;
   (a blob whose box overlaps a stretch already kept on that frame is the same target again and
   is skipped);
2. tracks each one forward with ABTrack and OpenCV's CSRT (different features and search: their
   errors rarely coincide) and keeps the frames up to the first one where they disagree
   (IoU < ``agree_iou``) or CSRT reports a failure; ABTrack's own LOST state is not consulted:
   its confidence is what such data should later teach, and on this footage the two often agree
   while it doubts;
3. cuts the stretch where its box stops holding moving pixels (two trackers that both stay on
   an empty background would agree), then tracks it backward with CSRT, from its last frame to
   its first, and keeps it only when that pass never reports a failure and ends on the proposal
   again (IoU >= ``backward_iou``);
4. writes each kept stretch as a GOT-10k sequence whose label is the mean of the two forward boxes.
The labels are only as good as that agreement: they favour the stretches that both trackers find
easy, so a set made this way measures relative progress on real footage, not absolute accuracy
(docs/data.md, "Self-labelled real video").
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from abtrack_ros.evaluation.peers import OpenCVPeer
from abtrack_ros.tracking import geometry as geo
from abtrack_ros.tracking.tracker import STATE_LOST, Tracker

FRAME_JPEG_QUALITY = 95
# The background model needs this many frames before its foreground means anything.
BACKGROUND_WARMUP_FRAMES = 30
# A proposal whose box overlaps a kept stretch's box on its start frame this much is that target again.
SAME_TARGET_IOU = 0.5
# MOG2 marks shadows 127 and foreground 255: only the foreground counts.
FOREGROUND_VALUE = 255
# Background subtraction runs at this scale of the frame (a quarter of the pixels). The masks of
# every frame are kept, about 110 KB a frame for 768 x 576 (90 MB for an 800-frame clip), beside
# the JPEG-encoded frames (about 150 KB each): clips of a few minutes, not hours.
MASK_SCALE = 0.5
SPLITS = ("train", "val")


@dataclass(frozen=True)
class SelfLabelSettings:
    """How targets are proposed and when two trackers count as agreeing."""

    start_every: int = 30  # frames between start frames of proposals
    segment_frames: int = 60  # longest stretch tracked from one start frame (the start included)
    min_frames: int = 20  # shortest stretch kept
    max_per_start: int = 4  # proposals per start frame (the largest blobs)
    min_side: int = 12  # smallest proposal side, pixels
    max_area_fraction: float = 0.1  # largest proposal area, as a share of the frame
    # ABTrack vs CSRT on every kept frame. On vtest.avi the two sit on the same pedestrian at IoU
    # 0.45-0.7 (their boxes differ in width and height), so 0.6 kept 1 of 24 proposals.
    agree_iou: float = 0.45
    backward_iou: float = 0.5  # CSRT run backward vs the proposal, on the start frame
    min_foreground: float = 0.1  # share of moving pixels in the label box, on every kept frame

    def __post_init__(self) -> None:
        checks = {
            "start_every": self.start_every >= 1,
            "segment_frames": self.segment_frames >= 2,
            "min_frames": 2 <= self.min_frames <= self.segment_frames,
            "max_per_start": self.max_per_start >= 1,
            "min_side": self.min_side >= 1,
            "max_area_fraction": 0 < self.max_area_fraction <= 1,
            "agree_iou": 0 < self.agree_iou <= 1,
            "backward_iou": 0 < self.backward_iou <= 1,
            "min_foreground": 0 <= self.min_foreground <= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid self-label settings: {', '.join(bad)} ({self})")


@dataclass
class LabelledStretch:
    """Frames ``start .. start + len(boxes) - 1`` of a video, with one agreed box each."""

    start: int
    boxes: np.ndarray  # N x 4 xywh


# ----------------------------------------------------------------- pure parts
def motion_proposals(foreground: np.ndarray, max_count: int, min_side: int,
                     max_area_fraction: float) -> list[np.ndarray]:
    """Boxes ``[x, y, w, h]`` of the largest blobs of a binary foreground mask (largest first):
    each side at least ``min_side``, the area at most ``max_area_fraction`` of the mask."""
    mask = (np.asarray(foreground) > 0).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    mask = cv2.morphologyEx(cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel), cv2.MORPH_CLOSE, kernel, iterations=2)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    max_area = max_area_fraction * mask.shape[0] * mask.shape[1]
    boxes = [
        stats[i, :4].astype(np.float64)
        for i in range(1, count)
        if stats[i, 2] >= min_side and stats[i, 3] >= min_side and stats[i, 2] * stats[i, 3] <= max_area
    ]
    boxes.sort(key=lambda b: -b[2] * b[3])
    return boxes[:max_count]


# ----------------------------------------------------------------- video access
class EncodedVideo:
    """All frames of a video file, kept JPEG-encoded (a 768 x 576 clip of 800 frames takes
    about 50 MB instead of 1 GB), decoded on demand to RGB."""

    def __init__(self, path: Path) -> None:
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise ValueError(f"cannot open video {path}")
        self.path = Path(path)
        self.encoded: list[bytes] = []
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                self.encoded.append(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, FRAME_JPEG_QUALITY])[1].tobytes())
        finally:
            capture.release()
        if not self.encoded:
            raise ValueError(f"video {path} has no readable frame")

    def __len__(self) -> int:
        return len(self.encoded)

    def rgb(self, index: int) -> np.ndarray:
        bgr = cv2.imdecode(np.frombuffer(self.encoded[index], np.uint8), cv2.IMREAD_COLOR)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def foreground_masks(video: EncodedVideo, last: int) -> list[np.ndarray]:
    """The MOG2 foreground (1 = moving, shadows excluded) of frames ``0 .. last - 1`` at
    MASK_SCALE, the background model learnt over every frame up to each one."""
    subtractor = cv2.createBackgroundSubtractorMOG2(history=2 * BACKGROUND_WARMUP_FRAMES, detectShadows=True)
    masks = []
    for index in range(last):
        bgr = cv2.cvtColor(video.rgb(index), cv2.COLOR_RGB2BGR)
        small = cv2.resize(bgr, None, fx=MASK_SCALE, fy=MASK_SCALE, interpolation=cv2.INTER_AREA)
        masks.append((subtractor.apply(small) == FOREGROUND_VALUE).astype(np.uint8))
    return masks


def foreground_share(mask: np.ndarray, box: np.ndarray, scale: float = MASK_SCALE) -> float:
    """Share of the pixels of ``box`` (full-frame pixels) that are foreground in a mask at ``scale``."""
    x0, y0 = int(np.floor(box[0] * scale)), int(np.floor(box[1] * scale))
    x1, y1 = int(np.ceil((box[0] + box[2]) * scale)), int(np.ceil((box[1] + box[3]) * scale))
    window = mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)]
    return float(window.mean()) if window.size else 0.0


# ----------------------------------------------------------------- labelling
def label_stretch(video: EncodedVideo, masks: list[np.ndarray], start: int, end: int, box: np.ndarray,
                  tracker: Tracker, settings: SelfLabelSettings) -> Optional[LabelledStretch]:
    """Track ``box`` from frame ``start`` up to ``end`` (exclusive) with ABTrack and CSRT; the
    agreed stretch when it is long enough, holds moving pixels and passes the backward check,
    else None."""
    first = video.rgb(start)
    tracker.initialize(first, box)
    csrt = OpenCVPeer("csrt")
    csrt.initialize(first, box)
    ours, theirs = [np.asarray(box, float)], [np.asarray(box, float)]
    for index in range(start + 1, end):
        frame = video.rgb(index)
        result = tracker.track(frame)
        peer_box, _ = csrt.update(frame)
        if csrt.confidence()[1] == STATE_LOST:  # CSRT gave up: its repeated box agrees with nothing
            break
        if not geo.iou_xywh(result.box, peer_box) >= settings.agree_iou:  # the first disagreement (or NaN) ends it
            break
        ours.append(result.box)
        theirs.append(peer_box)
    height, width = first.shape[:2]
    boxes = np.array([geo.clip_box((a + b) / 2.0, width, height) for a, b in zip(ours, theirs)])
    moving = [foreground_share(masks[start + k], b) >= settings.min_foreground for k, b in enumerate(boxes)]
    if not all(moving):
        boxes = boxes[: moving.index(False)]
    if len(boxes) < settings.min_frames:
        return None
    backward = OpenCVPeer("csrt")
    backward.initialize(video.rgb(start + len(boxes) - 1), boxes[-1])
    for index in range(start + len(boxes) - 2, start - 1, -1):
        back_box, _ = backward.update(video.rgb(index))
        if backward.confidence()[1] == STATE_LOST:
            return None
    if geo.iou_xywh(back_box, box) < settings.backward_iou:
        return None
    return LabelledStretch(start, boxes)


def label_video(video: EncodedVideo, tracker: Tracker, settings: SelfLabelSettings, first: int = 0,
                last: Optional[int] = None, progress: Optional[Callable[[str], None]] = None,
                masks: Optional[list[np.ndarray]] = None) -> list[LabelledStretch]:
    """Agreed stretches of frames ``first .. last - 1`` (default: to the end); none crosses ``last``.
    ``masks``: ``foreground_masks`` of at least frames ``0 .. last - 1`` (computed when None)."""
    last = len(video) if last is None else min(last, len(video))
    starts = list(range(max(first, BACKGROUND_WARMUP_FRAMES), last - settings.min_frames + 1, settings.start_every))
    if not starts:
        return []
    masks = foreground_masks(video, last) if masks is None else masks
    stretches: list[LabelledStretch] = []
    for start in starts:
        proposals = [
            b / MASK_SCALE
            for b in motion_proposals(masks[start], settings.max_per_start, max(1, round(settings.min_side * MASK_SCALE)),
                                      settings.max_area_fraction)
        ]
        kept_here = [s.boxes[start - s.start] for s in stretches if s.start <= start < s.start + len(s.boxes)]
        proposals = [b for b in proposals
                     if not any(geo.iou_xywh(b, k) > SAME_TARGET_IOU for k in kept_here)]
        for box in proposals:
            stretch = label_stretch(video, masks, start, min(start + settings.segment_frames, last), box, tracker,
                                    settings)
            if stretch is not None:
                stretches.append(stretch)
        if progress is not None:
            progress(f"{video.path.name}: frame {start}, {len(proposals)} proposals, {len(stretches)} stretches kept")
    return stretches


def write_sequences(video: EncodedVideo, stretches: list[LabelledStretch], folder: Path, prefix: str) -> list[str]:
    """Each stretch as a GOT-10k sequence ``folder/<prefix>_<n>`` (frames as JPEG, groundtruth.txt,
    absence.label all visible); returns the names. The frames keep the video's pixels."""
    names = []
    for number, stretch in enumerate(stretches, start=1):
        name = f"{prefix}_{number:04d}"
        seq_dir = folder / name
        seq_dir.mkdir(parents=True)
        for offset in range(len(stretch.boxes)):
            (seq_dir / f"{offset + 1:08d}.jpg").write_bytes(video.encoded[stretch.start + offset])
        np.savetxt(seq_dir / "groundtruth.txt", stretch.boxes, fmt="%.2f", delimiter=",")
        (seq_dir / "absence.label").write_text("0\n" * len(stretch.boxes))
        names.append(name)
    return names


def build_self_labelled_set(videos: list[Path], out_dir: Path, tracker: Tracker, settings: SelfLabelSettings,
                            val_from: float = 0.7, progress: Optional[Callable[[str], None]] = None) -> dict:
    """Self-labelled sequences of every video in ``out_dir/train`` (the first ``val_from`` of
    each video's frames) and ``out_dir/val`` (the rest; no stretch crosses the boundary), with
    list.txt files and a ``meta.json`` that records how they were made. Returns that record."""
    if not 0.0 < val_from <= 1.0:
        raise ValueError(f"val_from must be in (0, 1], got {val_from}")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(f"{out_dir} exists and is not an empty folder: refusing to write into it")
    # Written beside it and renamed at the end: a run that fails half-way leaves no half dataset.
    work_dir = out_dir.with_name(out_dir.name + ".partial")
    if work_dir.exists():
        shutil.rmtree(work_dir)
    names: dict[str, list[str]] = {split: [] for split in SPLITS}
    sources: list[dict] = []
    for path in videos:
        video = EncodedVideo(Path(path))
        boundary = int(round(val_from * len(video)))
        name = Path(path).stem.lower().replace(" ", "_")
        stem, number = name, 1
        while any(source["prefix"] == stem for source in sources):  # the same file name in two folders
            number += 1
            stem = f"{name}_{number}"
        masks = foreground_masks(video, len(video))
        for split, (first, last) in zip(SPLITS, ((0, boundary), (boundary, len(video)))):
            stretches = label_video(video, tracker, settings, first, last, progress, masks)
            names[split] += write_sequences(video, stretches, work_dir / split, f"{stem}_{split}")
        sources.append({"video": str(path), "prefix": stem, "frames": len(video), "val_from_frame": boundary})
    meta = {"generator": "abtrack selflabel", "tracker": tracker.weights_description, "peer": "csrt",
            "settings": asdict(settings), "videos": sources,
            "sequences": {split: len(names[split]) for split in SPLITS}}
    for split in SPLITS:
        (work_dir / split).mkdir(parents=True, exist_ok=True)
        (work_dir / split / "list.txt").write_text("".join(f"{n}\n" for n in names[split]))
    (work_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    if out_dir.exists():
        out_dir.rmdir()  # empty, checked above
    work_dir.rename(out_dir)
    return meta
