"""Adaptivity metrics of `abtrack eval`: the pure functions on hand-made inputs, and the CLI end to
end on a tiny random-weights model whose BDMs do make per-frame decisions."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from abtrack_ros.cli import main
from abtrack_ros.evaluation.adaptivity import (
    adaptivity_summary,
    average_ranks,
    entropy_bits,
    evaluate_adaptivity,
    frame_difficulty,
    measure_adaptivity,
    parse_thresholds,
    pattern_shares,
    reached_block_counts,
    report_lines,
    run_pass,
    spearman,
    static_patterns,
    step_mask,
)
from abtrack_ros.evaluation.metrics import frame_ious, valid_gt_mask
from abtrack_ros.evaluation.results import SequenceResult
from abtrack_ros.config import TrackerConfig
from abtrack_ros.tracking.tracker import STATE_TRACKING, TrackResult

BOX = [10.0, 10.0, 20.0, 20.0]


def rows(*patterns: str) -> np.ndarray:
    return np.array([[c == "1" for c in p] for p in patterns], dtype=bool)


# ----------------------------------------------------------------- pure metrics
def test_constant_pattern_has_no_spread():
    entry = adaptivity_summary(rows(*["11011"] * 10))
    assert entry["patterns"] == 1 and entry["patterns_at_least_5pct"] == 1
    assert entry["top_pattern"] == "11011" and entry["top_pattern_share"] == 1.0
    assert entry["pattern_entropy_bits"] == 0.0 and not math.copysign(1, entry["pattern_entropy_bits"]) < 0
    assert entry["blocks_std"] == 0.0 and entry["blocks_mean"] == 4.0 and entry["frames"] == 10


def test_alternating_five_and_seven_blocks():
    five, seven = "11111000", "11111110"
    entry = adaptivity_summary(rows(*[five, seven] * 6))
    assert entry["patterns"] == 2 and entry["patterns_at_least_5pct"] == 2
    assert pattern_shares(rows(*[five, seven] * 6)) == {five: 0.5, seven: 0.5}
    assert entry["pattern_entropy_bits"] == pytest.approx(1.0)  # bits: log base 2
    assert entry["blocks_std"] == pytest.approx(1.0)  # population std of 5, 7, 5, 7, ...
    assert entry["blocks_mean"] == pytest.approx(6.0)


def test_patterns_in_use_count_from_five_percent():
    assert adaptivity_summary(rows(*["111"] * 19, "101"))["patterns_at_least_5pct"] == 2  # 1/20 = 5 %
    assert adaptivity_summary(rows(*["111"] * 20, "101"))["patterns_at_least_5pct"] == 1  # 1/21 < 5 %
    assert entropy_bits([0.25] * 4) == pytest.approx(2.0)
    assert math.isnan(entropy_bits([]))


def test_average_ranks_share_ties():
    np.testing.assert_allclose(average_ranks(np.array([10, 20, 20, 30])), [1, 2.5, 2.5, 4])
    np.testing.assert_allclose(average_ranks(np.array([3.0, 1.0, 3.0, 3.0])), [3, 1, 3, 3])


def test_spearman_hand_computed():
    # ranks y = 1, 2, 3.5, 5, 3.5; centred: sum(rx*ry) = 8, sum(rx^2) = 10, sum(ry^2) = 9.5
    assert spearman(np.arange(1, 6), np.array([5, 6, 7, 8, 7])) == pytest.approx(8 / math.sqrt(95))
    assert spearman(np.arange(5), np.arange(5) ** 3) == pytest.approx(1.0)
    assert spearman(np.arange(5), -np.arange(5)) == pytest.approx(-1.0)
    assert math.isnan(spearman(np.ones(4), np.arange(4)))  # a constant side: undefined
    assert math.isnan(spearman(np.array([1.0]), np.array([2.0])))
    with pytest.raises(ValueError):
        spearman(np.arange(3), np.arange(4))


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(4)
    x = rng.integers(3, 9, size=60).astype(float)  # block counts: many ties
    y = np.round(rng.random(60), 1)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_difficulty_leaves_out_frames_without_ground_truth():
    executed = rows("11111", "11100", "11111", "11100")
    # counts 5, 3, 5, 3; the third frame has no ground truth and is excluded
    entry = adaptivity_summary(executed, np.array([0.9, 0.1, np.nan, 0.2]))
    assert entry["difficulty_frames"] == 3
    # counts 5, 3, 3 -> ranks 3, 1.5, 1.5; difficulty 0.9, 0.1, 0.2 -> ranks 3, 1, 2
    assert entry["difficulty_spearman"] == pytest.approx(1.5 / math.sqrt(1.5 * 2.0))
    assert "difficulty_spearman" not in adaptivity_summary(executed)


def test_steps_and_difficulty_masks():
    boxes = np.array([[np.nan] * 4, BOX, BOX, BOX])
    np.testing.assert_array_equal(step_mask(boxes), [False, False, True, True])
    gt = np.array([[np.nan] * 4, BOX, BOX, [12.0, 10.0, 20.0, 20.0]])
    visible = np.array([True, True, False, True])
    difficulty = frame_difficulty(boxes, gt, visible)
    # frame 0: no gt; frame 1: init frame; frame 2: invisible; frame 3: IoU 360/440
    assert np.isnan(difficulty[:3]).all()
    assert difficulty[3] == pytest.approx(1 - 360 / 440)


class FakeSequence:
    def __init__(self, name: str, num_frames: int) -> None:
        self.name = name
        self.boxes = np.tile(BOX, (num_frames, 1))
        self.visible = np.ones(num_frames, dtype=bool)


def test_measure_adaptivity_pools_steps_and_reports_sequence_range():
    sequences = [FakeSequence("a", 3), FakeSequence("b", 3)]
    boxes = np.tile(BOX, (3, 1))
    results = {  # the init row (all False) is not a step
        "a": SequenceResult("a", boxes, np.zeros(3), rows("000", "111", "111")),
        "b": SequenceResult("b", boxes, np.zeros(3), rows("000", "101", "111")),
    }
    section = measure_adaptivity(results, sequences)
    assert section["frames"] == 4 and section["patterns"] == 2 and section["top_pattern_share"] == 0.75
    assert section["blocks_mean"] == pytest.approx(2.75)
    assert (section["sequence_blocks_mean_min"], section["sequence_blocks_mean_max"]) == (2.5, 3.0)
    assert section["sequences"]["b"]["patterns"] == 2 and "difficulty_frames" not in section


def test_static_patterns_all_or_seeded_sample():
    patterns, total = static_patterns(6, 2, 4, 30, np.random.default_rng(0))
    assert total == 6 and len(set(patterns)) == 6  # C(4, 2), all of them
    assert all(sum(p) == 4 and p[:2] == (True, True) for p in patterns)
    sample, total = static_patterns(6, 2, 4, 4, np.random.default_rng(1))
    assert total == 6 and len(set(sample)) == 4 and set(sample) <= set(patterns)
    assert static_patterns(6, 2, 4, 4, np.random.default_rng(1))[0] == sample  # seeded: reproducible
    with pytest.raises(ValueError):
        static_patterns(6, 2, 1, 30, np.random.default_rng(0))  # fewer than the enforced blocks


def test_reached_counts_and_threshold_parsing():
    assert reached_block_counts([2.4, 2.5, 3.49, float("nan"), 7.7], n_enf=3, num_blocks=7) == [3, 7]
    assert reached_block_counts([4.5, 5.49, 6.0], n_enf=2, num_blocks=8) == [5, 6]
    assert parse_thresholds("0.5, 0.3,0.5") == [0.3, 0.5]
    for bad in ("", "1.5", "a,0.3"):
        with pytest.raises(ValueError):
            parse_thresholds(bad)


class FakeModel:
    num_blocks, n_enf = 4, 1

    def __init__(self) -> None:
        self.bdm_enabled, self.bypass_threshold, self.forced_pattern = True, 0.5, None

    def set_forced_pattern(self, pattern) -> None:
        self.forced_pattern = pattern


class FakeTracker:
    """Frame i (the frames are their own index) runs i % 4 optional blocks with BDMs on (none at
    a bypass threshold under 0.5), all without; the box is exact with BDMs on, and stays at the
    init box with BDMs off."""

    def __init__(self) -> None:
        self.model, self.box, self.cfg = FakeModel(), None, TrackerConfig()

    def initialize(self, frame, box) -> None:
        self.box = np.asarray(box, dtype=float)

    def track(self, frame):
        i, model = int(frame[0, 0, 0]), self.model
        optional = i % 4 if model.bypass_threshold >= 0.5 else 0
        executed = [True] + [j < optional for j in range(3)] if model.bdm_enabled else [True] * 4
        executed = model.forced_pattern or executed
        box = MovingSequence.box(i) if model.bdm_enabled else self.box
        return TrackResult(box=box, score=1.0, state=STATE_TRACKING, executed=executed, bypass_probs=[0.0] * 4)


class MovingSequence:
    """Frame i holds the number i; the target moves 2 px right per frame."""

    def __init__(self, name: str, num_frames: int) -> None:
        self.name, self.frames = name, [Path(str(i)) for i in range(num_frames)]
        self.boxes = np.array([self.box(i) for i in range(num_frames)])
        self.visible = np.ones(num_frames, dtype=bool)

    @staticmethod
    def box(i: int) -> np.ndarray:
        return np.array([10.0 + 2 * i, 10.0, 20.0, 20.0])


def test_difficulty_pass_and_sweep_drive_the_model_switches():
    tracker, sequences = FakeTracker(), [MovingSequence("m", 7)]
    load_frame = lambda path: np.full((2, 2, 3), int(path.name), dtype=np.uint8)  # noqa: E731
    results = run_pass(tracker, sequences, load_frame)
    section = evaluate_adaptivity(tracker, sequences, results, load_frame, sweep_thresholds=[0.4, 0.6])
    counts = np.array([1 + i % 4 for i in range(1, 7)])
    difficulty = 1.0 - frame_ious(np.tile(MovingSequence.box(0), (6, 1)), sequences[0].boxes[1:])
    # from the pass with BDMs off (with them on, every IoU is 1: a constant, so no rho at all)
    assert section["difficulty_spearman"] == pytest.approx(spearman(counts, difficulty))
    assert section["patterns"] == 4 and section["bypass_threshold"] == 0.5
    sweep = section["bypass_sweep"]
    assert [p["blocks_executed_mean"] for p in sweep["adaptive"]] == [1.0, 2.5]
    assert [s["blocks"] for s in sweep["static"]] == [1, 3]  # 2.5 rounds half up
    assert [[r["pattern"] for r in s["runs"]] for s in sweep["static"]] == [["1000"], ["1110", "1101", "1011"]]
    model = tracker.model  # every switch is back as it was
    assert (model.bdm_enabled, model.bypass_threshold, model.forced_pattern) == (True, 0.5, None)
    assert json.loads(json.dumps(section, allow_nan=False)) == section  # JSON-ready: no NaN
    # the confidence-driven depth rule is part of what was measured: named in the section and table
    tracker.cfg.full_depth_below = 0.6
    section = evaluate_adaptivity(tracker, sequences, results, load_frame, difficulty_pass=False)
    assert section["full_depth_below"] == 0.6
    assert "every block after a step with confidence below 0.60" in report_lines(section)[1]


# ----------------------------------------------------------------- `abtrack eval` end to end
DEPTH, N_ENF, FRAMES = 4, 1, 8
SWEEP = [0.3, 0.5, 0.7, 0.9]


@pytest.fixture(scope="module")
def adaptive_eval(tmp_path_factory):
    """A tiny model whose BDMs read the bypass token (random weights, no bias), so the gates vary
    per frame, and whose head always predicts a square of side sqrt(w*h) at the search centre (a
    tracker that stays put: its IoU falls as the target moves, so the difficulty varies); one
    evaluation with the sweep and one with --no-bdm on two synthetic sequences."""
    from abtrack_ros.config import ABTrackConfig, ModelConfig
    from abtrack_ros.data import generate_synthetic
    from abtrack_ros.model import build_model, save_checkpoint

    torch.manual_seed(0)
    cfg = ABTrackConfig(model=ModelConfig(template_size=32, search_size=64, depth=DEPTH, n_enf=N_ENF, bdm=True,
                                          head_channels=16))
    model = build_model(cfg.model)
    head = model.head
    # 4 x 4 map: the Hann window picks cell (1, 1); an offset of 1 cell puts the box at the centre;
    # size 0.25 of the search crop (side 4 sqrt(w*h)) is sqrt(w*h).
    last_layers = ((head.score[-1], 0.0), (head.offset[-1], 1.0), (head.size[-1], math.log(0.25 / 0.75)))
    with torch.no_grad():
        for decision in model.backbone.decisions:
            decision.linear.weight.normal_(0.0, 0.1)
            decision.linear.bias.zero_()
        for layer, bias in last_layers:
            layer.weight.zero_()
            layer.bias.fill_(bias)
    root = tmp_path_factory.mktemp("adaptivity")
    checkpoint = root / "tiny.pt"
    save_checkpoint(checkpoint, model, cfg)
    generate_synthetic(root / "data", 2, FRAMES, seed=5, size=(160, 128), split="val", real_images="off")
    spec = f"synthetic:{root / 'data' / 'val'}"
    common = ["eval", "--dataset", spec, "--checkpoint", str(checkpoint), "--backend", "torch", "--threads", "1",
              "--plot-sequence", "none"]
    out, out_no_bdm = root / "eval", root / "eval_no_bdm"
    assert main(common + ["--bypass-sweep", "--sweep-thresholds", ",".join(map(str, SWEEP)), "--sweep-patterns", "2",
                          "--out", str(out)]) == 0
    assert main(common + ["--no-bdm", "--out", str(out_no_bdm)]) == 0
    return spec, common, out, out_no_bdm


def test_eval_writes_adaptivity_section_and_table(adaptive_eval):
    _spec, _common, out, _ = adaptive_eval
    doc = json.loads((out / "metrics.json").read_text())
    section, overall = doc["adaptivity"], doc["trackers"]["abtrack"]["overall"]
    assert section["tracker"] == "abtrack" and section["bypass_threshold"] == 0.5
    assert section["full_depth_below"] == 0.0
    assert section["frames"] == 2 * (FRAMES - 1)  # every frame after the init frame is a step
    assert 2 <= section["patterns"] <= section["frames"]  # this model's gates do vary
    assert 1 <= section["patterns_at_least_5pct"] <= section["patterns"]
    assert 0 < section["top_pattern_share"] < 1 and len(section["top_pattern"]) == DEPTH
    assert 0 < section["pattern_entropy_bits"] <= math.log2(section["patterns"]) + 1e-12
    assert section["blocks_std"] > 0
    assert section["blocks_mean"] == pytest.approx(overall["blocks_executed_mean"])
    assert section["sequence_blocks_mean_min"] <= section["blocks_mean"] <= section["sequence_blocks_mean_max"]
    assert N_ENF <= section["sequence_blocks_mean_min"] and section["sequence_blocks_mean_max"] <= DEPTH
    assert section["difficulty_frames"] == overall["frames_scored"]
    assert -1 <= section["difficulty_spearman"] <= 1
    assert set(section["sequences"]) == set(doc["trackers"]["abtrack"]["sequences"])
    report = (out / "report.md").read_text()
    assert "## Adaptivity (abtrack, bypass threshold 0.50)" in report
    assert f"| distinct patterns | {section['patterns']} |" in report
    assert "### Bypass threshold sweep" in report


def test_difficulty_is_one_minus_iou_without_bypass(adaptive_eval):
    """The reported rho equals the one computed from the results of a separate --no-bdm run."""
    spec, _common, out, out_no_bdm = adaptive_eval
    from abtrack_ros.data import open_dataset

    doc = json.loads((out / "metrics.json").read_text())
    assert "adaptivity" not in json.loads((out_no_bdm / "metrics.json").read_text())  # BDMs off: nothing to measure
    counts, difficulty = [], []
    for seq in open_dataset(spec):
        folder = f"{seq.name}/{seq.name}"
        blocks = (out / "results" / "abtrack" / f"{folder}_blocks.txt").read_text().split()
        boxes = np.loadtxt(out_no_bdm / "results" / "abtrack" / f"{folder}_001.txt", delimiter=",")
        scored = valid_gt_mask(seq.boxes, seq.visible)
        counts += [row.count("1") for row in np.array(blocks)[scored]]
        difficulty += list(1.0 - frame_ious(boxes, seq.boxes)[scored])
    assert doc["adaptivity"]["difficulty_spearman"] == pytest.approx(spearman(np.array(counts), np.array(difficulty)))
    # The bypass-off AUC of the section is the --no-bdm run's, the bypass-on one this run's.
    no_bdm_auc = json.loads((out_no_bdm / "metrics.json").read_text())["trackers"]["abtrack"]["overall"]["auc"]
    assert doc["adaptivity"]["auc_bypass_off"] == pytest.approx(no_bdm_auc)
    assert doc["adaptivity"]["auc_bypass_on"] == pytest.approx(doc["trackers"]["abtrack"]["overall"]["auc"])
    assert "| success AUC: bypass on / off (same model) |" in (out / "report.md").read_text()


def test_bypass_sweep_numbers_and_plot(adaptive_eval):
    _spec, _common, out, _ = adaptive_eval
    doc = json.loads((out / "metrics.json").read_text())
    sweep, overall = doc["adaptivity"]["bypass_sweep"], doc["trackers"]["abtrack"]["overall"]
    adaptive = sweep["adaptive"]
    assert [p["threshold"] for p in adaptive] == SWEEP
    blocks = [p["blocks_executed_mean"] for p in adaptive]
    assert blocks == sorted(blocks) and blocks[0] < blocks[-1]  # a higher threshold bypasses less
    at_default = adaptive[SWEEP.index(0.5)]  # the model's own threshold reproduces the main run
    assert at_default["auc"] == pytest.approx(overall["auc"])
    assert at_default["blocks_executed_mean"] == pytest.approx(overall["blocks_executed_mean"])
    assert [s["blocks"] for s in sweep["static"]] == reached_block_counts(blocks, N_ENF, DEPTH)
    for static in sweep["static"]:
        assert static["patterns_total"] == math.comb(DEPTH - N_ENF, static["blocks"] - N_ENF)
        assert static["patterns_run"] == min(static["patterns_total"], 2) == len(static["runs"])
        for run in static["runs"]:
            assert run["pattern"].count("1") == static["blocks"] and run["pattern"].startswith("1" * N_ENF)
            assert 0 <= run["auc"] <= 1
        assert static["auc_min"] <= static["auc_mean"] <= static["auc_max"]
    assert sweep["plot"] == "bypass_sweep.png" and (out / "bypass_sweep.png").stat().st_size > 1000
    assert "![bypass_sweep](bypass_sweep.png)" in (out / "report.md").read_text()


def test_skipping_the_difficulty_pass_and_bad_sweep_options(adaptive_eval, tmp_path, capsys):
    _spec, common, _out, _ = adaptive_eval
    assert main(common + ["--no-difficulty-pass", "--out", str(tmp_path / "quick")]) == 0
    section = json.loads((tmp_path / "quick" / "metrics.json").read_text())["adaptivity"]
    assert "difficulty_spearman" not in section and "bypass_sweep" not in section and section["patterns"] >= 2
    assert not (tmp_path / "quick" / "bypass_sweep.png").exists()
    assert main(common + ["--bypass-sweep", "--no-bdm", "--out", str(tmp_path / "x")]) == 2
    assert "needs a model with BDMs on" in capsys.readouterr().err
    assert main(common + ["--bypass-sweep", "--sweep-thresholds", "0.3,2", "--out", str(tmp_path / "x")]) == 2


def test_bypass_threshold_option_matches_the_sweep_point(adaptive_eval, tmp_path, capsys):
    """`--bypass-threshold T` runs the model at T: the same AUC and depth as the sweep's point T."""
    _spec, common, out, _ = adaptive_eval
    threshold = SWEEP[0]
    assert main(common + ["--no-difficulty-pass", "--bypass-threshold", str(threshold),
                          "--out", str(tmp_path / "at")]) == 0
    doc = json.loads((tmp_path / "at" / "metrics.json").read_text())
    point = json.loads((out / "metrics.json").read_text())["adaptivity"]["bypass_sweep"]["adaptive"][0]
    assert doc["adaptivity"]["bypass_threshold"] == threshold
    assert doc["trackers"]["abtrack"]["overall"]["auc"] == pytest.approx(point["auc"])
    assert doc["adaptivity"]["blocks_mean"] == pytest.approx(point["blocks_executed_mean"])
    for bad in (["--bypass-threshold", "1.5"], ["--bypass-threshold", "0.3", "--no-bdm"]):
        with pytest.raises(SystemExit) as refused:  # argparse refuses it before any model is loaded
            main(common + bad + ["--out", str(tmp_path / "bad")])
        assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "must be a number in 0..1, got '1.5'" in err and "not allowed with argument" in err
