"""The synthetic generator: reproducibility, labels against pixels, difficulty, CLI, real images."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from abtrack_ros.cli import main
from abtrack_ros.data import (
    DIFFICULTIES,
    Difficulty,
    find_real_images,
    find_sample_videos,
    generate_synthetic,
    load_frame,
    open_dataset,
)
from abtrack_ros.data.image_sources import location_free_name, looks_like_photo
from abtrack_ros.data.synthetic import cover_level, smooth_walk
from abtrack_ros.data.textures import SHAPES, make_outline, outline_mask, procedural_texture

SIZE = (128, 96)
MAGENTA = (255, 0, 255)
# Only the target, in one flat colour, on a static procedural background: pixels tell where it is.
CLEAN = dataclasses.replace(
    DIFFICULTIES["easy"], max_distractors=0, occlusion_prob=0.0, blur_prob=0.0, noise_std=0.0,
    illumination=0.0, camera_speed=0.0, max_speed=0.1,
)


def magenta_mask(frame: np.ndarray) -> np.ndarray:
    return np.abs(frame.astype(int) - MAGENTA).max(axis=2) < 60


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        generate_synthetic(tmp_path / name, 2, 6, seed, "hard", size=SIZE, real_images="off")
    a, b, c = (tree_bytes(tmp_path / n) for n in "abc")
    assert len(a) == 2 * (6 + 3) + 2  # frames + 3 label files per sequence, list.txt, meta.json
    assert a == b
    assert a["train/synth_train_00001/00000001.jpg"] != c["train/synth_train_00001/00000001.jpg"]


def test_written_layout_reads_back_with_boxes_inside_frame(tmp_path: Path) -> None:
    generate_synthetic(tmp_path, 3, 20, 1, "hard", size=SIZE, real_images="off")
    seqs = open_dataset(f"synthetic:{tmp_path}", split="train")
    assert [s.name for s in seqs] == ["synth_train_00001", "synth_train_00002", "synth_train_00003"]
    for seq in seqs:
        assert len(seq) == 20 and seq.dataset == "synthetic"
        assert load_frame(seq.frames[0]).shape == (SIZE[1], SIZE[0], 3)
        x, y, w, h = seq.boxes.T
        assert (x >= 0).all() and (y >= 0).all() and (w > 0).all() and (h > 0).all()
        assert (x + w <= SIZE[0]).all() and (y + h <= SIZE[1]).all()
    meta = json.loads((tmp_path / "train" / "meta.json").read_text())
    assert meta["seed"] == 1 and meta["difficulty"] == "hard" and meta["image_source"] == "procedural"


def test_boxes_match_where_the_target_was_drawn(tmp_path: Path) -> None:
    generate_synthetic(tmp_path, 3, 8, 3, CLEAN, size=SIZE, real_images="off", target_rgb=MAGENTA)
    for seq in open_dataset(f"synthetic:{tmp_path}", split="train"):
        for frame_path, (x, y, w, h) in zip(seq.frames, seq.boxes.astype(int), strict=True):
            mask = magenta_mask(load_frame(frame_path))
            inside = mask[y : y + h, x : x + w]
            assert inside.mean() > 0.4  # ellipses and blobs fill only part of their box
            ys, xs = np.nonzero(mask)
            assert abs(xs.min() - x) <= 1 and abs(xs.max() + 1 - (x + w)) <= 1
            assert abs(ys.min() - y) <= 1 and abs(ys.max() + 1 - (y + h)) <= 1


def test_occlusion_labels_follow_the_visible_target(tmp_path: Path) -> None:
    knobs = dataclasses.replace(CLEAN, occlusion_prob=1.0, scale_change=0.0, aspect_change=0.0, max_speed=0.02)
    generate_synthetic(tmp_path, 2, 24, 5, knobs, size=SIZE, real_images="off", target_rgb=MAGENTA)
    seqs = open_dataset(f"synthetic:{tmp_path}", split="train")
    for seq in seqs:
        folder = seq.frames[0].parent
        cover = np.loadtxt(folder / "cover.label", dtype=int)
        absence = np.loadtxt(folder / "absence.label", dtype=int)
        assert (cover < 8).any()  # the occluder crossed the target
        np.testing.assert_array_equal(absence, cover == 0)
        np.testing.assert_array_equal(seq.visible, cover > 0)
        counts = np.array([magenta_mask(load_frame(p))[int(y) : int(y + h), int(x) : int(x + w)].sum()
                           for p, (x, y, w, h) in zip(seq.frames, seq.boxes, strict=True)])
        full = counts[cover == 8].max()
        measured = [cover_level(min(1.0, c / full)) for c in counts]
        assert np.abs(np.array(measured) - cover).max() <= 1


def test_difficulty_changes_measured_statistics(tmp_path: Path) -> None:
    stats = {}
    for level in ("easy", "hard"):
        generate_synthetic(tmp_path / level, 4, 24, 11, level, size=SIZE, real_images="off")
        seqs = open_dataset(f"synthetic:{tmp_path / level}", split="train")
        speed = np.mean([np.mean(np.hypot(*np.diff(s.boxes[:, :2] + s.boxes[:, 2:] / 2, axis=0).T) / s.boxes[1:, 2:].mean(1))
                         for s in seqs])
        hidden = np.mean([np.mean(np.loadtxt(s.frames[0].parent / "cover.label") < 8) for s in seqs])
        meta = json.loads((tmp_path / level / "train" / "meta.json").read_text())
        distractors = np.mean([m["distractors"] for m in meta["sequences"]])
        grain = np.mean([np.abs(cv2.Laplacian(load_frame(s.frames[5]), cv2.CV_32F)).mean() for s in seqs])
        stats[level] = (speed, hidden, distractors, grain)
    easy, hard = stats["easy"], stats["hard"]
    assert hard[0] > 1.5 * easy[0]  # faster relative motion
    assert easy[1] == 0 and hard[1] > 0  # occlusion only when asked for
    assert easy[2] == 0 and hard[2] > 0
    assert hard[3] > easy[3]  # more noise


def test_cover_level_bins() -> None:
    assert [cover_level(r) for r in (0.0, 0.01, 0.15, 0.5, 0.99, 1.0)] == [0, 1, 2, 4, 7, 8]


@pytest.mark.parametrize("kind", SHAPES)
def test_outlines_span_their_whole_box(kind: str) -> None:
    rng = np.random.default_rng(1)
    for width, height in ((8, 8), (9, 31), (40, 17)):
        mask = outline_mask(make_outline(kind, rng), width, height)
        assert mask.shape == (height, width)
        assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()
    with pytest.raises(ValueError, match="unknown shape"):
        make_outline("star", rng)


def test_smooth_walk_stays_within_bounds_and_speed_limit() -> None:
    rng = np.random.default_rng(0)
    n = 200
    lo, hi = np.zeros((n, 2)), np.full((n, 2), 10.0)
    path = smooth_walk(rng, lo, hi, np.full(n, 2.0), 0.8)
    assert (path >= 0).all() and (path <= 10).all()
    assert np.hypot(*np.diff(path, axis=0).T).max() <= 2.0 + 1e-9


def test_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown difficulty"):
        generate_synthetic(tmp_path, 1, 2, 0, "extreme", size=SIZE, real_images="off")
    with pytest.raises(ValueError, match="invalid difficulty knobs: occlusion_prob"):
        Difficulty(occlusion_prob=1.5)
    with pytest.raises(ValueError, match="real_images"):
        generate_synthetic(tmp_path, 1, 2, 0, size=SIZE, real_images="always")
    generate_synthetic(tmp_path, 1, 2, 0, size=SIZE, real_images="off")
    with pytest.raises(ValueError, match="overwrite"):
        generate_synthetic(tmp_path, 1, 2, 0, size=SIZE, real_images="off")
    generate_synthetic(tmp_path, 1, 3, 0, size=SIZE, real_images="off", overwrite=True)
    assert len(open_dataset(f"synthetic:{tmp_path}", split="train")[0]) == 3
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a synthetic dataset"):
        generate_synthetic(tmp_path, 1, 2, 0, size=SIZE, split="val", real_images="off", overwrite=True)


def test_cli_writes_a_readable_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["synth", "--out", str(tmp_path), "--sequences", "2", "--frames", "3", "--seed", "4",
                 "--difficulty", "easy", "--size", "96x80", "--split", "val", "--real-images", "off"])
    assert code == 0 and "wrote 2 sequences" in capsys.readouterr().out
    seqs = open_dataset(f"synthetic:{tmp_path}", split="val")
    assert len(seqs) == 2 and load_frame(seqs[0].frames[0]).shape == (80, 96, 3)
    assert main(["synth", "--out", str(tmp_path), "--split", "val", "--real-images", "off"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(tmp_path), "--size", "big"])


def test_real_images_found_and_used(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(photos / "scene.png"), procedural_texture(rng, 320, 240))
    cv2.imwrite(str(photos / "grey.png"), np.repeat(procedural_texture(rng, 320, 240)[..., :1], 3, axis=2))
    logo = np.full((240, 320, 3), 255, np.uint8)
    cv2.circle(logo, (160, 120), 50, (0, 0, 255), -1)
    cv2.imwrite(str(photos / "logo.png"), logo)
    cv2.imwrite(str(photos / "icon.png"), procedural_texture(rng, 32, 32))
    assert [p.name for p in find_real_images([photos])] == ["scene.png"]
    assert not looks_like_photo(logo)

    generate_synthetic(tmp_path / "real", 1, 2, 0, size=SIZE, image_dirs=[photos])
    meta = json.loads((tmp_path / "real" / "train" / "meta.json").read_text())
    assert meta["image_source"] == "real" and meta["real_images"] == [str((photos / "scene.png").resolve())]
    (seq,) = open_dataset(f"synthetic:{tmp_path / 'real'}", split="train")
    assert load_frame(seq.frames[1]).shape == (SIZE[1], SIZE[0], 3)
    generate_synthetic(tmp_path / "none", 1, 2, 0, size=SIZE, image_dirs=[tmp_path / "empty"])
    assert json.loads((tmp_path / "none" / "train" / "meta.json").read_text())["image_source"] == "procedural"


def test_photo_order_does_not_depend_on_where_packages_are_installed(tmp_path: Path) -> None:
    # The same package samples installed under a path that sorts before and after the system
    # folder: the photos come in the same order, system first (the seed -> sequence mapping holds).
    rng = np.random.default_rng(1)
    system = tmp_path / "m_system"
    system.mkdir()
    cv2.imwrite(str(system / "wall.png"), procedural_texture(rng, 320, 240))
    sample = procedural_texture(rng, 320, 240)
    orders = []
    for prefix in ("a_checkout", "z_checkout"):
        package = tmp_path / prefix / ".venv" / "site-packages" / "samplepkg" / "data"
        package.mkdir(parents=True)
        cv2.imwrite(str(package / "photo.png"), sample)
        orders.append([location_free_name(p) for p in find_real_images([package, system])])
    assert orders[0] == orders[1] == [str((system / "wall.png").resolve()), "samplepkg/data/photo.png"]


def test_sample_videos_found_by_extension(tmp_path: Path) -> None:
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for _ in range(12):
        writer.write(procedural_texture(rng, 64, 48))
    writer.release()
    (tmp_path / "notes.txt").write_bytes(b"x" * 20000)
    assert find_sample_videos([tmp_path]) == [(tmp_path / "clip.avi").resolve()]


def test_crowd_look_alikes_cross_the_target() -> None:
    """The crowd preset: many near-identical copies, and crossing ones pass within half a target
    size of the target's centre at some frame (ordinary distractors wander anywhere)."""
    from abtrack_ros.data.synthetic import SequenceRenderer, _appearance_source

    source, _ = _appearance_source("off", None)
    knobs = DIFFICULTIES["crowd"]
    closest = []
    for index in range(4):
        rng, event_rng = np.random.default_rng([7, index]), np.random.default_rng([7, index, 1])
        renderer = SequenceRenderer(rng, knobs, source, 60, 320, 240, None, event_rng)
        target = renderer.target.boxes
        centre, size = target[:, :2] + target[:, 2:] / 2, np.sqrt(target[:, 2] * target[:, 3])
        for sprite in renderer.distractors:
            gap = np.linalg.norm(sprite.boxes[:, :2] + sprite.boxes[:, 2:] / 2 - centre, axis=1) / size
            closest.append(float(gap.min()))
    assert len(closest) >= 4 * knobs.max_distractors // 2  # crowds, not one or two
    assert sum(gap < 0.5 for gap in closest) >= 0.4 * len(closest)  # most of them pass right by


def test_small_preset_sizes_on_a_uav_frame(tmp_path: Path) -> None:
    seqs = generate_synthetic(tmp_path, 3, 20, 1, "small", size=(640, 360), split="val", real_images="off")
    boxes = np.concatenate([np.loadtxt(s / "groundtruth.txt", delimiter=",") for s in seqs])
    side = np.sqrt(boxes[:, 2] * boxes[:, 3])
    assert 0.03 * 360 * 0.7 <= side.min() and side.max() <= 0.11 * 360 * 1.3  # about 11-40 px


def test_crossing_knob_is_checked() -> None:
    with pytest.raises(ValueError, match="distractor_crossing_prob"):
        Difficulty(distractor_crossing_prob=1.5)
