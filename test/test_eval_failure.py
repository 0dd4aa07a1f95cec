"""Failure and re-acquisition metrics: pure functions on hand-made arrays, the score/state results
files, and `abtrack eval` on a tiny synthetic set with absence events and a random-weights model."""
import dataclasses
import json

import numpy as np
import pytest

from abtrack_ros.cli import main
from abtrack_ros.evaluation.failure import (
    FailureCounts,
    confidence_auroc,
    detection_delays,
    false_reacquisitions,
    reacquisitions,
    sequence_failures,
    true_runs,
    truly_lost,
)
from abtrack_ros.evaluation.results import ResultsError, ResultsLayout, SequenceResult

T, L, N = "TRACKING", "LOST", ""
# Ten tracking steps: a failure (steps 2-4, the target absent on 3-4) flagged one step late, a
# one-step failure (7) never flagged, a re-acquisition at 6 that is right, then drifts at 7.
IOUS = np.array([0.8, 0.7, 0.05, 0.0, 0.0, 0.6, 0.3, 0.05, 0.8, 0.9])
PRESENT = np.array([1, 1, 1, 0, 0, 1, 1, 1, 1, 1], bool)
STATES = np.array([T, T, T, L, L, L, T, T, T, T], dtype=object)


def test_auroc_perfect_inverted_constant_and_ties():
    assert confidence_auroc([0.8, 0.9, 0.7], [0.1, 0.2]) == 1.0
    assert confidence_auroc([0.1, 0.2], [0.8, 0.9, 0.7]) == 0.0
    assert confidence_auroc([0.5, 0.5], [0.5, 0.5, 0.5]) == 0.5
    # 0.5 beats 0.1, ties 0.5, loses to 0.95; 0.9 beats two: (1 + 0.5 + 2) / 6
    assert confidence_auroc([0.5, 0.9], [0.1, 0.5, 0.95]) == pytest.approx(3.5 / 6)
    assert np.isnan(confidence_auroc([], [0.1])) and np.isnan(confidence_auroc([0.3], []))


def test_auroc_leaves_out_in_between_and_unscored_steps():
    ious = np.array([0.9, 0.8, 0.3, 0.05, 0.0])
    present = np.array([1, 1, 1, 1, 0], bool)
    perfect = FailureCounts.compute(ious, present, np.array([0.9, 0.8, 0.01, 0.2, 0.1]), None)
    assert perfect.summary()["confidence_auroc"] == 1.0  # the IoU-0.3 step's low score does not count
    assert (perfect.success_frames, perfect.lost_frames) == (2, 2)
    inverted = FailureCounts.compute(ious, present, np.array([0.1, 0.2, 0.5, 0.9, 0.8]), None)
    assert inverted.summary()["confidence_auroc"] == 0.0
    partial = FailureCounts.compute(ious, present, np.array([0.9, np.nan, 0.5, 0.2, 0.95]), None)
    assert partial.summary()["confidence_auroc"] == 0.5  # the NaN score is left out
    assert perfect.summary()["raw_score_auroc"] is None  # no raw score given
    # the raw peak score is scored the same way, apart from the confidence
    both = FailureCounts.compute(ious, present, np.array([0.9, 0.8, 0.01, 0.2, 0.1]), None,
                                 np.array([0.6, 0.1, 0.5, 0.7, np.nan]))
    assert both.summary()["confidence_auroc"] == 1.0 and both.summary()["raw_score_auroc"] == 0.0
    pooled = FailureCounts.pool([both, perfect]).summary()
    assert pooled["raw_score_auroc"] == 0.0 and pooled["confidence_auroc"] == 1.0


def test_truly_lost_and_runs():
    np.testing.assert_array_equal(truly_lost(IOUS, PRESENT), [0, 0, 1, 1, 1, 0, 0, 1, 0, 0])
    assert truly_lost([0.9, np.nan], [False, True]).tolist() == [True, True]  # absent; missing IoU
    assert true_runs(np.array([1, 1, 0, 1, 0, 0, 1], bool)) == [(0, 2), (3, 4), (6, 7)]
    assert true_runs(np.zeros(3, bool)) == []


def test_hand_made_states_give_known_precision_recall_and_delay():
    counts = FailureCounts.compute(IOUS, PRESENT, None, STATES)
    summary = counts.summary()
    # LOST on 3, 4, 5: 3 and 4 truly lost; truly lost 2, 3, 4, 7
    assert summary["lost_precision"] == pytest.approx(2 / 3)
    assert summary["lost_recall"] == pytest.approx(2 / 4)
    assert (summary["failures"], summary["failures_missed"], summary["detection_delay_median"]) == (2, 1, 1.0)
    assert (summary["absence_events"], summary["reacquired"], summary["reacquired_share"]) == (1, 1, 1.0)
    reacq = (summary["reacquisitions"], summary["false_reacquisitions"], summary["false_reacquisition_frames"])
    assert reacq == (1, 0, 1)
    assert summary["confidence_auroc"] is None  # no score given
    assert detection_delays(np.array([1, 1, 1, 0, 1, 1], bool), np.array([0, 0, 1, 1, 1, 0], bool)) == ([2, 0], 0)


def test_no_states_gives_null_state_metrics_but_truth_counts():
    summary = FailureCounts.compute(IOUS, PRESENT, np.linspace(1, 0, 10), None).summary()
    for key in ("lost_precision", "lost_recall", "failures_missed", "detection_delay_median", "reacquisitions"):
        assert summary[key] is None, key
    assert summary["failures"] == 2 and summary["absence_events"] == 1
    assert summary["confidence_auroc"] is not None


def test_reacquisition_window_and_unreturned_absence():
    present = np.array([1] + [0] * 3 + [1] * 40, bool)
    ious = np.zeros(44)
    ious[4 + 29] = 0.6  # the 30th frame from the return (the return itself is the first)
    assert reacquisitions(present, ious) == (1, 1)
    ious[4 + 29], ious[4 + 30] = 0.0, 0.9
    assert reacquisitions(present, ious) == (1, 0)
    assert reacquisitions(np.array([1, 1, 0, 0], bool), np.ones(4)) == (0, 0)  # never back: no event
    assert reacquisitions(np.array([1, 0, 1], bool), np.array([1.0, 1.0, 0.49])) == (1, 0)


def test_false_reacquisitions_count_claims_and_steps_after_lost():
    lost = np.array([0, 1, 1, 1, 1, 0, 1, 1], bool)
    states = np.array([T, T, L, T, T, L, T, N], dtype=object)
    # claims at 3 (truly lost: false; run 3-4 both lost) and 6 (truly lost; run 6 only)
    assert false_reacquisitions(states, lost) == (2, 2, 3)
    assert false_reacquisitions(np.array([T, T, T], dtype=object), np.ones(3, bool)) == (0, 0, 0)
    assert false_reacquisitions(np.array([L, N, T], dtype=object), np.ones(3, bool)) == (0, 0, 0)


def test_pooled_counts_and_sequence_steps():
    pooled = FailureCounts.pool([FailureCounts.compute(IOUS, PRESENT, None, STATES)] * 2).summary()
    assert pooled["failures"] == 4 and pooled["lost_precision"] == pytest.approx(2 / 3)
    assert pooled["detection_delay_median"] == 1.0
    gt = np.array([[np.nan] * 4, [10, 10, 20, 20], [10, 10, 20, 20], [-1, -1, -1, -1], [10, 10, 20, 20]])
    visible = np.array([0, 1, 1, 0, 1], bool)
    boxes = np.array([[np.nan] * 4, [10, 10, 20, 20], [50, 50, 20, 20], [10, 10, 20, 20], [10, 10, 20, 20]])
    result = SequenceResult("s", boxes, np.zeros(5), scores=np.array([np.nan, np.nan, 0.2, 0.3, 0.9]),
                            states=np.array(["", "", L, L, T], dtype=object))
    summary = sequence_failures(result, gt, visible).summary()  # steps 2, 3, 4 (the init frame is 1)
    assert (summary["lost_frames"], summary["success_frames"], summary["confidence_auroc"]) == (2, 1, 1.0)
    assert (summary["lost_precision"], summary["lost_recall"], summary["reacquired"]) == (1.0, 1.0, 1)
    assert sequence_failures(result, np.vstack([gt[:2], np.full((3, 4), np.nan)]), visible) is None


def test_score_and_state_files_round_trip_and_old_folders(tmp_path):
    layout = ResultsLayout(tmp_path, "got10k")
    boxes = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [5, 6, 7, 8]], float)
    scores, states = np.array([np.nan, 0.75, 0.125]), np.array(["", T, L], dtype=object)
    raw = np.array([np.nan, 0.5, 0.25])
    layout.write(SequenceResult("seq", boxes, np.zeros(3), scores=scores, states=states, raw_scores=raw))
    assert layout.state_path("seq").read_text() == "nan,-,nan\n0.750000,TRACKING,0.500000\n0.125000,LOST,0.250000\n"
    back = layout.read("seq", 3)
    np.testing.assert_array_equal(back.scores, scores)
    np.testing.assert_array_equal(back.raw_scores, raw)
    assert back.states.tolist() == ["", T, L]
    layout.state_path("seq").write_text("nan,-\n0.750000,TRACKING\n0.125000,LOST\n")  # before the raw column
    two_columns = layout.read("seq", 3)
    np.testing.assert_array_equal(two_columns.scores, scores)
    assert two_columns.raw_scores is None and two_columns.states.tolist() == ["", T, L]
    layout.write(SequenceResult("peer", boxes, np.zeros(3), states=states))  # a state, no score
    assert layout.read("peer", 3).scores is None and layout.read("peer", 3).states.tolist() == ["", T, L]
    layout.state_path("seq").unlink()  # a folder written before the state files existed
    old = layout.read("seq", 3)
    assert old.scores is None and old.states is None
    layout.state_path("seq").write_text("0.5,TRACKING\n")
    with pytest.raises(ResultsError, match="1 lines for a sequence of 3"):
        layout.read("seq", 3)
    layout.state_path("seq").write_text("0.5\nhigh,LOST\nnan,-\n")
    with pytest.raises(ResultsError, match="score,state"):
        layout.read("seq", 3)
    layout.state_path("seq").write_text("0.5,TRACKING,0.4\n0.5,LOST\nnan,-,nan\n")  # mixed widths
    with pytest.raises(ResultsError, match="score,state"):
        layout.read("seq", 3)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    import torch

    from abtrack_ros.config import ABTrackConfig, ModelConfig
    from abtrack_ros.data import DIFFICULTIES, generate_synthetic
    from abtrack_ros.model import build_model, save_checkpoint

    root = tmp_path_factory.mktemp("data")
    knobs = dataclasses.replace(DIFFICULTIES["easy"], out_of_view_prob=1.0, full_occlusion_prob=1.0,
                                event_min_frames=4, event_max_frames=6)
    generate_synthetic(root, 2, 48, seed=2, difficulty=knobs, size=(96, 80), split="val", real_images="off")
    torch.manual_seed(0)
    cfg = ModelConfig(template_size=32, search_size=64, depth=2, n_enf=1, bdm=True, head_channels=32)
    checkpoint = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(checkpoint, build_model(cfg), ABTrackConfig(model=cfg))
    out = tmp_path_factory.mktemp("eval")
    spec = f"synthetic:{root / 'val'}"
    args = ["eval", "--dataset", spec, "--checkpoint", str(checkpoint), "--peers", "csrt", "--threads", "1",
            "--plot-sequence", "none", "--out", str(out)]
    assert main(args) == 0
    return spec, out


def test_eval_reports_failure_sections(evaluated):
    _spec, out = evaluated
    section = json.loads((out / "metrics.json").read_text())["failure"]
    assert (section["fail_iou"], section["success_iou"], section["reacquire_window"]) == (0.1, 0.5, 30)
    assert set(section["trackers"]) == {"abtrack", "csrt"}
    for name, entry in section["trackers"].items():
        assert set(entry["sequences"]) == {"synth_val_00001", "synth_val_00002"}
        overall = entry["overall"]
        assert overall["absence_events"] >= 4, name  # every sequence has an out-of-view and a full occlusion
        assert overall["lost_frames"] >= 2 * 2 * 4 and overall["lost_recall"] is not None, name
    assert section["trackers"]["csrt"]["overall"]["confidence_auroc"] is None  # OpenCV: a success flag, no score
    failure_part = (out / "report.md").read_text().split("## Failure and re-acquisition")[1]
    assert "\n| abtrack | " in failure_part and "\n| csrt | n/a | n/a | " in failure_part
    assert section["trackers"]["csrt"]["overall"]["raw_score_auroc"] is None
    states = (out / "results" / "abtrack" / "synth_val_00001" / "synth_val_00001_state.txt").read_text().split()
    assert len(states) == 48 and states[0] == "nan,-,nan" and {s.split(",")[1] for s in states[1:]} <= {T, L}
    assert all(0.0 <= float(s.split(",")[2]) <= 1.0 for s in states[1:])  # the raw peak score


def test_rescoring_reproduces_failure_section_and_old_results_still_score(evaluated, tmp_path):
    spec, out = evaluated
    first = json.loads((out / "metrics.json").read_text())["failure"]
    assert main(["eval", "--dataset", spec, "--results", str(out / "results"), "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["failure"] == first
    # results written before the raw score (two columns) score the same, without the raw AUROC
    for state_file in (out / "results").rglob("*_state.txt"):
        rows = state_file.read_text().split()
        state_file.write_text("\n".join(",".join(row.split(",")[:2]) for row in rows) + "\n")
    assert main(["eval", "--dataset", spec, "--results", str(out / "results"), "--out", str(tmp_path / "c")]) == 0
    two_columns = json.loads((tmp_path / "c" / "metrics.json").read_text())["failure"]["trackers"]["abtrack"]["overall"]
    expected = dict(first["trackers"]["abtrack"]["overall"], raw_score_auroc=None)
    assert two_columns == expected
    for state_file in (out / "results").rglob("*_state.txt"):
        state_file.unlink()
    assert main(["eval", "--dataset", spec, "--results", str(out / "results"), "--out", str(tmp_path / "b")]) == 0
    old = json.loads((tmp_path / "b" / "metrics.json").read_text())["failure"]["trackers"]["abtrack"]["overall"]
    assert old["lost_precision"] is None and old["confidence_auroc"] is None
    assert old["failures"] == first["trackers"]["abtrack"]["overall"]["failures"]
