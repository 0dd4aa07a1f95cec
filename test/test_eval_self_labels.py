"""Self-labelled real video: proposals, agreement, the moving-pixels cut, and the whole pipeline on a
generated static-camera clip (real video file, real default model, real CSRT)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from abtrack_ros.cli import main
from abtrack_ros.data import open_dataset
from abtrack_ros.evaluation.metrics import frame_ious
from abtrack_ros.evaluation.peers import PeerUnavailableError, OpenCVPeer
from abtrack_ros.evaluation.self_labels import (
    EncodedVideo,
    SelfLabelSettings,
    build_self_labelled_set,
    foreground_masks,
    foreground_share,
    label_stretch,
    label_video,
    motion_proposals,
)
from abtrack_ros.tracking import Tracker

try:
    OpenCVPeer("csrt")
    HAVE_CSRT = True
except PeerUnavailableError:
    HAVE_CSRT = False
needs_csrt = pytest.mark.skipif(not HAVE_CSRT, reason="this OpenCV build has no CSRT")

WIDTH, HEIGHT, SIDE = 240, 180, 36


def test_motion_proposals_largest_first_within_limits() -> None:
    mask = np.zeros((100, 200), np.uint8)
    mask[10:40, 10:30] = 1  # 20 x 30
    mask[50:90, 100:150] = 1  # 50 x 40: largest
    mask[5:9, 180:184] = 1  # 4 x 4: below min_side
    boxes = motion_proposals(mask, max_count=5, min_side=8, max_area_fraction=0.5)
    assert [b.tolist() for b in boxes] == [[100, 50, 50, 40], [10, 10, 20, 30]]
    assert len(motion_proposals(mask, max_count=1, min_side=8, max_area_fraction=0.5)) == 1
    # a blob larger than the allowed share of the frame is no target
    assert [b.tolist() for b in motion_proposals(mask, 5, 8, max_area_fraction=0.05)] == [[10, 10, 20, 30]]
    assert motion_proposals(np.zeros((50, 50), np.uint8), 3, 4, 0.5) == []


def test_foreground_share_of_a_box() -> None:
    mask = np.zeros((50, 60), np.uint8)
    mask[10:20, 10:20] = 1
    assert foreground_share(mask, np.array([20, 20, 20, 20]), scale=0.5) == pytest.approx(1.0)
    assert foreground_share(mask, np.array([20, 20, 40, 20]), scale=0.5) == pytest.approx(0.5)
    assert foreground_share(mask, np.array([200, 200, 10, 10]), scale=0.5) == 0.0


@pytest.mark.parametrize("field, value", [("agree_iou", 0.0), ("min_frames", 1), ("start_every", 0),
                                          ("min_foreground", 1.5)])
def test_settings_refuse_bad_values(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        SelfLabelSettings(**{field: value})


def _square_positions(frames: int) -> np.ndarray:
    """Top-left corners of a square moving smoothly across the frame and back (no stop)."""
    t = np.arange(frames)
    x = 20 + (WIDTH - SIDE - 40) * (0.5 - 0.5 * np.cos(2 * np.pi * t / 120))
    y = 60 + 30 * np.sin(2 * np.pi * t / 90)
    return np.stack([x, y], axis=1).round().astype(int)


def _write_clip(path: Path, frames: int) -> np.ndarray:
    """A static textured background with a textured square moving over it; returns the square's
    true boxes."""
    rng = np.random.default_rng(5)
    background = cv2.GaussianBlur(rng.integers(0, 255, (HEIGHT, WIDTH, 3)).astype(np.uint8), (0, 0), 3)
    patch = rng.integers(0, 255, (SIDE, SIDE, 3)).astype(np.uint8)
    patch[::6] = (20, 220, 240)  # stripes: something for both trackers to hold on to
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (WIDTH, HEIGHT))
    boxes = np.zeros((frames, 4))
    for t, (x, y) in enumerate(_square_positions(frames)):
        frame = background.copy()
        frame[y : y + SIDE, x : x + SIDE] = patch
        boxes[t] = (x, y, SIDE, SIDE)
        writer.write(frame)
    writer.release()
    return boxes


@needs_csrt
def test_clip_labels_follow_the_moving_square(tmp_path: Path) -> None:
    video_path = tmp_path / "clip.avi"
    truth = _write_clip(video_path, 90)
    out = tmp_path / "labelled"
    settings = SelfLabelSettings(start_every=20, segment_frames=30, min_frames=10)
    meta = build_self_labelled_set([video_path], out, Tracker.from_checkpoint(None), settings, val_from=0.6)

    assert meta["sequences"]["train"] >= 1 and meta["videos"][0]["val_from_frame"] == 54
    train = open_dataset(f"got10k:{out}", "train")
    assert len(train) == meta["sequences"]["train"]
    for seq in train:
        assert 10 <= len(seq.frames) <= 30 and seq.visible.all()
    # the same labelling, frame by frame: train stretches end before the boundary, val ones start at it
    video, tracker = EncodedVideo(video_path), Tracker.from_checkpoint(None)
    for first, last in ((0, 54), (54, 90)):
        stretches = label_video(video, tracker, settings, first, last)
        for stretch in stretches:
            assert first <= stretch.start and stretch.start + len(stretch.boxes) <= last
            assert np.median(frame_ious(stretch.boxes, truth[stretch.start : stretch.start + len(stretch.boxes)])) >= 0.6
        if first == 0:
            assert [len(st.boxes) for st in stretches] == [len(seq.frames) for seq in train]
    assert (out / "meta.json").is_file() and (out / "val" / "list.txt").is_file()
    # the same clip twice (as from two folders): both kept, under different names
    twice = build_self_labelled_set([video_path, video_path], tmp_path / "twice", Tracker.from_checkpoint(None),
                                    settings, val_from=0.6)
    assert [v["prefix"] for v in twice["videos"]] == ["clip", "clip_2"]
    assert len(open_dataset(f"got10k:{tmp_path / 'twice'}", "train")) == 2 * meta["sequences"]["train"]


@needs_csrt
def test_stretch_ends_where_its_box_stops_moving(tmp_path: Path) -> None:
    """Two trackers left on an empty spot agree there: a stretch ends at the first frame whose
    label box holds no moving pixels (here the foreground is wiped from frame 50 on)."""
    video_path = tmp_path / "clip.avi"
    truth = _write_clip(video_path, 80)
    video = EncodedVideo(video_path)
    masks = foreground_masks(video, len(video))
    settings = SelfLabelSettings(segment_frames=40, min_frames=5)
    tracker = Tracker.from_checkpoint(None)
    whole = label_stretch(video, masks, 30, 70, truth[30], tracker, settings)
    assert whole is not None and len(whole.boxes) == 40
    assert np.median(frame_ious(whole.boxes, truth[30:70])) >= 0.6
    for mask in masks[50:]:
        mask[:] = 0
    cut = label_stretch(video, masks, 30, 70, truth[30], tracker, settings)
    assert cut is not None and len(cut.boxes) == 20
    np.testing.assert_allclose(cut.boxes, whole.boxes[:20])


def test_static_clip_and_cli_errors(tmp_path: Path) -> None:
    video_path = tmp_path / "static.avi"
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (WIDTH, HEIGHT))
    for _ in range(60):
        writer.write(np.full((HEIGHT, WIDTH, 3), 90, np.uint8))
    writer.release()
    assert label_video(EncodedVideo(video_path), Tracker.from_checkpoint(None), SelfLabelSettings(min_frames=10)) == []
    assert main(["selflabel", "--video", str(tmp_path / "missing.avi"), "--out", str(tmp_path / "o")]) == 2
    assert main(["selflabel", "--video", str(video_path), "--out", str(tmp_path / "o"),
                 "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert main(["selflabel", "--video", str(video_path), "--out", str(video_path)]) == 2  # a file
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert main(["selflabel", "--video", str(video_path), "--out", str(tmp_path / "full")]) == 2
