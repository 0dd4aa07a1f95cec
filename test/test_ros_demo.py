"""`abtrack demo` end to end (its own process: node process + camera + client over DDS)."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import cv2
import numpy as np
import pytest

from abtrack_ros.cli import main as cli_main
from abtrack_ros.config import ABTrackConfig, ModelConfig
from abtrack_ros.model import build_model, save_checkpoint

pytest.importorskip("vision_msgs.msg")
pytest.importorskip("abtrack_ros.msg")

FRAMES = 16


def demo_env() -> dict:
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(random.randint(101, 200)), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOCALHOST_ONLY="1")
    return env


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "small.pt"
    cfg = ABTrackConfig(model=ModelConfig(template_size=32, search_size=64, head_channels=32, bdm=True))
    save_checkpoint(path, build_model(cfg.model), cfg)
    return path


def test_demo_synthetic_end_to_end(tmp_path, checkpoint):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "abtrack_ros.cli", "demo", "--num-frames", str(FRAMES), "--rate", "15",
         "--checkpoint", str(checkpoint), "--device", "cpu", "--out", str(out)],
        capture_output=True, text=True, timeout=240, env=demo_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("frame ")]
    assert lines and "IoU" in lines[-1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_published"] == FRAMES
    assert 0 < summary["frames_processed"] <= FRAMES
    assert summary["frames_processed"] + summary["frames_dropped"] <= FRAMES + 1  # +1: the init frame
    counts = summary["frame_accounting"]
    assert counts["camera_messages"] >= FRAMES and counts["statuses_received"] >= summary["frames_processed"]
    assert counts["node_received"] == counts["camera_messages"] - counts["lost_before_node"] > 0
    assert summary["model"] == f"checkpoint {checkpoint}"
    assert summary["latency_ms"]["p50"] > 0 and summary["latency_ms"]["p99"] >= summary["latency_ms"]["p50"]
    assert 3 <= summary["mean_blocks_executed"] <= 12 and summary["blocks_total"] == 12
    assert 0.0 <= summary["mean_iou"] <= 1.0
    plot = cv2.imread(summary["outputs"]["plot"])
    assert plot is not None and plot.shape[0] > 100
    video = cv2.VideoCapture(summary["outputs"]["video"])
    count = 0
    while video.read()[0]:
        count += 1
    assert count == summary["frames_processed"]
    assert "tracking on cpu" in (out / "node.log").read_text()


def test_demo_from_frames_folder_without_ground_truth(tmp_path, checkpoint):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(6):
        image = np.full((96, 128, 3), 30, np.uint8)
        image[30:60, 40 + 2 * i:70 + 2 * i] = (0, 200, 250)
        cv2.imwrite(str(frames / f"{i:04d}.png"), image)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "abtrack_ros.cli", "demo", "--frames", str(frames), "--box", "40,30,30,30",
         "--rate", "10", "--checkpoint", str(checkpoint), "--device", "cpu", "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=240, env=demo_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not [line for line in proc.stdout.splitlines() if line.startswith("frame ")]  # --quiet
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_published"] == 6 and summary["mean_iou"] is None
    assert "n/a (no ground truth)" in proc.stdout


@pytest.mark.parametrize("argv, code", [
    (["demo", "--video", "clip.mp4"], 2),  # an external source needs --box
    (["demo", "--frames", "/nonexistent", "--box", "1,2,3,4"], 1),
])
def test_demo_argument_errors(argv, code, capsys):
    assert cli_main(argv) == code
    assert "abtrack demo:" in capsys.readouterr().out


def test_demo_rejects_a_bad_box():
    with pytest.raises(SystemExit):
        cli_main(["demo", "--frames", ".", "--box", "1,2,0,4"])
