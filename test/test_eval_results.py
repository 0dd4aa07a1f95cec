"""Results files (both layouts) and the OPE runner's init-frame handling."""
import cv2
import numpy as np
import pytest

from abtrack_ros.data import Sequence, load_frame
from abtrack_ros.evaluation.ope import run_sequence, score_tracker
from abtrack_ros.evaluation.peers import OpenCVPeer
from abtrack_ros.evaluation.results import ResultsError, ResultsLayout, SequenceResult


@pytest.mark.parametrize("fmt, relative", [("got10k", "seq/seq_001.txt"), ("lasot", "seq.txt")])
def test_results_round_trip(tmp_path, fmt, relative):
    layout = ResultsLayout(tmp_path, fmt)
    boxes = np.array([[1, 2, 3, 4], [np.nan] * 4, [5.5, 6.25, 7, 8]])
    executed = np.array([[0, 0, 0], [1, 1, 0], [1, 0, 1]], bool)
    layout.write(SequenceResult("seq", boxes, np.array([0.1, 0.0, 0.02]), executed))
    assert (tmp_path / relative).is_file()
    back = layout.read("seq", 3)
    np.testing.assert_array_equal(back.boxes, boxes)
    np.testing.assert_allclose(back.times, [0.1, 0.0, 0.02])
    np.testing.assert_array_equal(back.executed, executed)
    with pytest.raises(ResultsError, match="3 boxes for a sequence of 4"):
        layout.read("seq", 4)
    with pytest.raises(ResultsError, match="missing"):
        layout.read("other", 3)


def test_results_side_files_must_match_the_sequence(tmp_path):
    layout = ResultsLayout(tmp_path, "got10k")
    boxes = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], float)
    layout.write(SequenceResult("seq", boxes, np.array([0.1, 0.2]), np.array([[0, 1], [1, 1]], bool)))
    layout.times_path("seq").write_text("0.1\n")
    with pytest.raises(ResultsError, match="1 times for a sequence of 2"):
        layout.read("seq", 2)
    layout.times_path("seq").write_text("0.1\nfast\n")
    with pytest.raises(ResultsError, match="not one number per line"):
        layout.read("seq", 2)
    layout.times_path("seq").write_text("0.1\n0.2\n")
    for blocks in ("01\n", "01\n1\n", "01\n12\n"):
        layout.blocks_path("seq").write_text(blocks)
        with pytest.raises(ResultsError, match="expected 2 lines of equally many 0/1 digits"):
            layout.read("seq", 2)
    layout.blocks_path("seq").write_text("01\n11\n")
    np.testing.assert_array_equal(layout.read("seq", 2).executed, [[False, True], [True, True]])


def test_runner_initialises_on_first_valid_frame(tmp_path):
    frames, gt = [], []
    for i in range(4):
        frame = np.full((60, 80, 3), 20, np.uint8)
        frame[20:36, 10 + 4 * i : 30 + 4 * i] = 220
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), frame)
        frames.append(path)
        gt.append([10 + 4 * i, 20, 20, 16])
    gt = np.array(gt, float)
    gt[0] = np.nan  # no box on frame 0: the tracker starts on frame 1
    seq = Sequence("s", frames, gt, np.isfinite(gt).all(axis=1), "got10k")
    result = run_sequence(OpenCVPeer("kcf"), seq, load_frame)
    assert np.isnan(result.boxes[0]).all() and result.times[0] == 0.0
    np.testing.assert_array_equal(result.boxes[1], gt[1])
    assert (result.times[1:] > 0).all() and result.executed is None
    scores = score_tracker("kcf", {"s": result}, [seq])
    entry = scores.per_sequence["s"]
    assert entry["frames_scored"] == 2  # frames 2 and 3 (frame 1 is the init frame)
    assert entry["ao"] > 0.5 and entry["fps"] > 0


def test_runner_rejects_sequence_without_box(tmp_path):
    seq = Sequence("empty", [tmp_path / "0.png"], np.full((1, 4), np.nan), np.zeros(1, bool), "got10k")
    with pytest.raises(ValueError, match="no frame with a valid box"):
        run_sequence(OpenCVPeer("kcf"), seq, load_frame)
