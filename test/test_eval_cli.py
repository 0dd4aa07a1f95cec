"""`abtrack eval` end to end: a tiny synthetic dataset (with peers), and a hand-written GOT-10k
folder with an absent frame."""
import json
import math

import cv2
import numpy as np
import pytest

from abtrack_ros.cli import main

NUM_FRAMES, HEIGHT, WIDTH = 4, 96, 128
REQUIRED_KEYS = ("auc", "precision", "norm_precision", "ao", "sr50", "sr75", "fps")


def write_got10k_dataset(root, num_sequences=2):
    """Sequences of a red square moving over noise; the last frame of seq 1 is marked absent."""
    rng = np.random.default_rng(1)
    names = []
    for s in range(num_sequences):
        name = f"GOT-10k_Val_{s + 1:06d}"
        folder = root / name
        folder.mkdir(parents=True)
        background = rng.integers(0, 90, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
        boxes = []
        for i in range(NUM_FRAMES):
            frame = background.copy()
            x, y = 30 + 5 * i + 10 * s, 35 + 2 * i
            frame[y : y + 18, x : x + 22] = (40, 50, 230)  # BGR red
            cv2.imwrite(str(folder / f"{i + 1:08d}.jpg"), frame)
            boxes.append(f"{x},{y},22,18")
        (folder / "groundtruth.txt").write_text("\n".join(boxes) + "\n")
        absent = ["0"] * NUM_FRAMES
        if s == 1:
            absent[-1] = "1"
        (folder / "absence.label").write_text("\n".join(absent) + "\n")
        names.append(name)
    (root / "list.txt").write_text("\n".join(names) + "\n")
    return names


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from abtrack_ros.data import generate_synthetic

    root = tmp_path_factory.mktemp("data")
    folders = generate_synthetic(root, 2, NUM_FRAMES, seed=3, size=(160, 128), split="val", real_images="off")
    out = tmp_path_factory.mktemp("eval")
    spec = f"synthetic:{root / 'val'}"
    code = main(["eval", "--dataset", spec, "--peers", "csrt,kcf", "--threads", "1", "--out", str(out)])
    assert code == 0
    return spec, out, [f.name for f in folders]


def test_outputs_and_keys(evaluated):
    _spec, out, names = evaluated
    doc = json.loads((out / "metrics.json").read_text())
    assert set(doc["trackers"]) == {"abtrack", "csrt", "kcf"}
    for tracker, entry in doc["trackers"].items():
        for key in REQUIRED_KEYS:
            assert key in entry["overall"], (tracker, key)
        assert set(entry["sequences"]) == set(names)
        for seq_entry in entry["sequences"].values():
            assert all(key in seq_entry for key in REQUIRED_KEYS)
    ours = doc["trackers"]["abtrack"]
    assert 3 <= ours["overall"]["blocks_executed_mean"] <= 12
    assert doc["dataset"].startswith("synthetic:") and doc["sequences"] == 2
    for png in ("success.png", "precision.png", f"sequences/{names[0]}_blocks_iou.png"):
        assert (out / png).stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "| abtrack |" in report and "| kcf |" in report
    # GOT-10k result layout (synthetic uses it too)
    assert len(np.loadtxt(out / "results" / "csrt" / names[0] / f"{names[0]}_time.txt")) == NUM_FRAMES


def test_scoring_existing_results_reproduces_numbers(evaluated, tmp_path):
    spec, out, _names = evaluated
    rescored = tmp_path / "rescored"
    assert main(["eval", "--dataset", spec, "--results", str(out / "results"), "--out", str(rescored)]) == 0
    first = json.loads((out / "metrics.json").read_text())["trackers"]
    second = json.loads((rescored / "metrics.json").read_text())["trackers"]
    assert set(first) == set(second)
    for tracker in first:
        for key, value in first[tracker]["overall"].items():
            other = second[tracker]["overall"][key]
            assert (value is None and other is None) or math.isclose(value, other, rel_tol=1e-12), (tracker, key)


def test_got10k_layout_with_absent_frame(tmp_path):
    root = tmp_path / "got10k"
    names = write_got10k_dataset(root)
    out = tmp_path / "out"
    args = ["eval", "--dataset", f"got10k:{root}", "--peers", "csrt", "--plot-sequence", names[1], "--out", str(out)]
    assert main(args) == 0
    doc = json.loads((out / "metrics.json").read_text())["trackers"]
    # sequence 2 has its last frame absent: 2 scored frames instead of 3
    assert doc["abtrack"]["sequences"][names[0]]["frames_scored"] == NUM_FRAMES - 1
    assert doc["abtrack"]["sequences"][names[1]]["frames_scored"] == NUM_FRAMES - 2
    # CSRT follows this easy, high-contrast square closely
    assert doc["csrt"]["overall"]["ao"] > 0.5
    assert [p.name for p in (out / "sequences").iterdir()] == [f"{names[1]}_blocks_iou.png"]
    boxes = np.loadtxt(out / "results" / "abtrack" / names[0] / f"{names[0]}_001.txt", delimiter=",")
    assert boxes.shape == (NUM_FRAMES, 4)


def test_bad_arguments_give_clear_errors(evaluated, tmp_path, capsys):
    spec, _out, _names = evaluated
    assert main(["eval", "--dataset", spec, "--peers", "nosuch", "--out", str(tmp_path)]) == 2
    assert "unknown peer tracker" in capsys.readouterr().err
    assert main(["eval", "--dataset", f"got10k:{tmp_path / 'missing'}", "--out", str(tmp_path)]) == 2
    assert main(["eval", "--dataset", spec, "--results", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "no tracker result folders" in capsys.readouterr().err


def test_tracker_set_overrides_tracker_keys(tmp_path, capsys):
    """--tracker-set: YAML scalars for tracker keys, applied to the run; unknown keys and malformed
    items are clear errors (exit 2)."""
    from abtrack_ros.tracking.runtime import parse_tracker_settings

    assert parse_tracker_settings(["found_score=0.6", " lost_frames =2", "hann_window=false"]) == {
        "found_score": 0.6, "lost_frames": 2, "hann_window": False}
    for bad in (["found_score"], ["=0.5"], ["confidence={bias: 1}"]):
        with pytest.raises(ValueError, match="--tracker-set"):
            parse_tracker_settings(bad)
    root = tmp_path / "got10k"
    write_got10k_dataset(root, num_sequences=1)
    spec = f"got10k:{root}"
    # lost_score 1: no confidence reaches it, so every step after the init frame is LOST.
    out = tmp_path / "lost"
    assert main(["eval", "--dataset", spec, "--plot-sequence", "none", "--no-difficulty-pass",
                 "--tracker-set", "lost_score=1", "--tracker-set", "found_score=1", "--out", str(out)]) == 0
    name = (root / "list.txt").read_text().split()[0]
    rows = (out / "results" / "abtrack" / name / f"{name}_state.txt").read_text().split()
    assert [row.split(",")[1] for row in rows] == ["-"] + ["LOST"] * (NUM_FRAMES - 1)
    assert main(["eval", "--dataset", spec, "--tracker-set", "nosuch=1", "--out", str(tmp_path / "x")]) == 2
    assert "unknown config key 'tracker.nosuch'" in capsys.readouterr().err
