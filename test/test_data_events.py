"""Absence events of the synthetic generator: labels against pixels, what the GOT-10k-layout reader
makes of them, and that sequences without events keep their frames."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from abtrack_ros.cli import main
from abtrack_ros.data import DIFFICULTIES, generate_synthetic, load_frame, open_dataset
from abtrack_ros.data.synthetic import (
    EVENT_TRANSIT_FRAMES,
    EVENT_WARMUP_FRAMES,
    Difficulty,
    plan_events,
    resolve_difficulty,
)

SIZE = (128, 96)
MAGENTA = (255, 0, 255)
# One flat-coloured target on a still, clean background, both events in every sequence.
EVENTS = dataclasses.replace(
    DIFFICULTIES["easy"], blur_prob=0.0, noise_std=0.0, illumination=0.0, camera_speed=0.0,
    out_of_view_prob=1.0, full_occlusion_prob=1.0, event_min_frames=6, event_max_frames=10,
)


def magenta_mask(frame: np.ndarray) -> np.ndarray:
    return np.abs(frame.astype(int) - MAGENTA).max(axis=2) < 60


def test_absence_labels_match_pixels_and_reader_visibility(tmp_path: Path) -> None:
    generate_synthetic(tmp_path, 2, 60, 4, EVENTS, size=SIZE, real_images="off", target_rgb=MAGENTA)
    meta = json.loads((tmp_path / "train" / "meta.json").read_text())
    for seq, info in zip(open_dataset(f"synthetic:{tmp_path}", split="train"), meta["sequences"], strict=True):
        folder = seq.frames[0].parent
        absence = np.loadtxt(folder / "absence.label", dtype=int)
        cover = np.loadtxt(folder / "cover.label", dtype=int)
        assert sorted(e["kind"] for e in info["events"]) == ["full_occlusion", "out_of_view"]
        for event in info["events"]:  # absent all through the planned absence
            assert absence[event["start"] : event["end"]].all(), event
        np.testing.assert_array_equal(absence, cover == 0)
        np.testing.assert_array_equal(seq.visible, absence == 0)  # what the reader makes of the labels
        assert info["absent_frames"] == absence.sum() and absence[:EVENT_WARMUP_FRAMES].sum() == 0
        masks = [magenta_mask(load_frame(p)) for p in seq.frames]
        pixels = np.array([m.sum() for m in masks])
        assert (pixels[absence == 1] == 0).all()  # out of view or hidden behind the occluder
        assert (pixels[cover >= 2] > 0).all()
        for t in np.flatnonzero(pixels):  # what shows of the target lies in its (cut) box
            x, y, w, h = seq.boxes[t].astype(int)
            ys, xs = np.nonzero(masks[t])
            assert xs.min() >= x - 1 and xs.max() < x + w + 1 and ys.min() >= y - 1 and ys.max() < y + h + 1
        out_of_view = next(e for e in info["events"] if e["kind"] == "out_of_view")
        # GOT-10k writes -1 boxes for a target outside the image; a box cut by the border is its visible part
        np.testing.assert_array_equal(seq.boxes[out_of_view["start"]], [-1, -1, -1, -1])
        x, y, w, h = seq.boxes[seq.visible].T
        assert (x >= 0).all() and (y >= 0).all() and (x + w <= SIZE[0]).all() and (y + h <= SIZE[1]).all()
        occlusion = next(e for e in info["events"] if e["kind"] == "full_occlusion")
        assert (seq.boxes[occlusion["start"] : occlusion["end"], 2:] > 0).all()  # hidden, but its box is known


def test_events_leave_the_rest_of_the_sequence_unchanged(tmp_path: Path) -> None:
    # Events draw from a random stream of their own: outside an out-of-view event (and the frame
    # on either side, whose motion blur follows the target) frames and boxes stay byte-identical.
    leaving = dataclasses.replace(DIFFICULTIES["medium"], out_of_view_prob=1.0)
    generate_synthetic(tmp_path / "plain", 1, 60, 9, "medium", size=SIZE, real_images="off")
    generate_synthetic(tmp_path / "events", 1, 60, 9, leaving, size=SIZE, real_images="off")
    plain, events = (tmp_path / name / "train" / "synth_train_00001" for name in ("plain", "events"))
    (event,) = json.loads((tmp_path / "events" / "train" / "meta.json").read_text())["sequences"][0]["events"]
    first, last = event["start"] - EVENT_TRANSIT_FRAMES, event["end"] + EVENT_TRANSIT_FRAMES - 1
    same = [t for t in range(60) if t < first - 1 or t > last + 1]
    changed = [t for t in range(60) if t not in same]
    frame_bytes = {name: [(folder / f"{t + 1:08d}.jpg").read_bytes() for t in range(60)]
                   for name, folder in (("plain", plain), ("events", events))}
    assert all(frame_bytes["plain"][t] == frame_bytes["events"][t] for t in same)
    assert sum(frame_bytes["plain"][t] != frame_bytes["events"][t] for t in changed) >= event["end"] - event["start"]
    rows = {name: (folder / "groundtruth.txt").read_text().splitlines()
            for name, folder in (("plain", plain), ("events", events))}
    assert all(rows["plain"][t] == rows["events"][t] for t in range(60) if t < first or t > last)


def test_plan_events_fits_the_sequence() -> None:
    rng = np.random.default_rng(0)
    for num_frames, expected in ((21, 0), (22, 1), (38, 1), (39, 2), (300, 2)):
        events = plan_events(rng, EVENTS, num_frames)
        assert len(events) == expected, num_frames
        spans = sorted((e.start - EVENT_TRANSIT_FRAMES, e.end + EVENT_TRANSIT_FRAMES) for e in events)
        assert all(e.start < e.end for e in events)
        assert all(lo >= EVENT_WARMUP_FRAMES and hi <= num_frames for lo, hi in spans)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # one after the other
    assert plan_events(rng, DIFFICULTIES["hard"], 300) == []


def test_event_difficulty_names_knobs_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    label, knobs = resolve_difficulty("hard+events")
    assert label == "hard+events" and knobs.out_of_view_prob > 0 and knobs.full_occlusion_prob > 0
    assert dataclasses.replace(knobs, out_of_view_prob=0.0, full_occlusion_prob=0.0) == DIFFICULTIES["hard"]
    with pytest.raises(ValueError, match="invalid difficulty knobs: out_of_view_prob"):
        Difficulty(out_of_view_prob=2.0)
    with pytest.raises(ValueError, match="event_min_frames"):
        Difficulty(event_min_frames=10, event_max_frames=5)
    with pytest.raises(ValueError, match="optionally with \\+events"):
        resolve_difficulty("easy+storms")
    code = main(["synth", "--out", str(tmp_path), "--sequences", "2", "--frames", "60", "--seed", "1",
                 "--difficulty", "easy", "--events", "--size", "96x80", "--real-images", "off"])
    assert code == 0 and "wrote 2 sequences" in capsys.readouterr().out
    meta = json.loads((tmp_path / "train" / "meta.json").read_text())
    assert meta["difficulty"] == "easy+events" and meta["knobs"]["out_of_view_prob"] == 0.5
