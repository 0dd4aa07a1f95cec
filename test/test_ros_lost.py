"""LOST and re-acquisition over real DDS: the shipped default model in a node process, fed a
generated sequence whose target leaves the view and comes back, one frame at a time.

What a control loop relies on (docs/ros.md, "What a control loop gets"): while the target is out
of view the node says LOST and publishes no detection; when it is back, the node says TRACKING
with the reason "re-acquired" on a box that is on the target, and detections flow again.
"""
from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys

import cv2
import numpy as np
import pytest

os.environ["ROS_DOMAIN_ID"] = str(random.randint(1, 100))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("abtrack_ros.msg")

from abtrack_ros.data.synthetic import generate_synthetic, resolve_difficulty  # noqa: E402
from abtrack_ros.model import default_checkpoint_path  # noqa: E402
from abtrack_ros.ros.client import BackgroundSpinner, ReplayCamera, TrackerClient  # noqa: E402
from abtrack_ros.ros.frames import stamp_to_ns  # noqa: E402
from abtrack_ros.ros.messages import detection_box_xywh  # noqa: E402
from abtrack_ros.tracking.geometry import iou_xywh  # noqa: E402

NS = "/abt_lost"
# One easy 320 x 240 sequence of procedural textures (no photographs needed) with one
# out-of-view event, on which the shipped model loses the target while it is away and finds it
# again after its return (checked offline with the same model when the seed was chosen). The
# default model re-acquires only part of such events (38 % on its held-out set, model card): the
# fifth release does on seeds 3, 6, 8 and 9 of 2-11, not on seed 1, the fourth release's choice.
SEED, FRAMES = 3, 60
START_TIMEOUT_S = 90.0
ATTEMPTS = 5  # a best-effort image can be lost on a busy machine: it is sent again


def event_sequence(folder) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """(RGB frames, ground-truth boxes, absent flags) of the test sequence."""
    _, knobs = resolve_difficulty("easy")
    knobs = dataclasses.replace(knobs, out_of_view_prob=1.0, full_occlusion_prob=0.0)
    (seq,) = generate_synthetic(folder, 1, FRAMES, SEED, knobs, size=(320, 240), split="val", real_images="off")
    frames = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(seq.glob("*.jpg"))]
    truth = np.loadtxt(seq / "groundtruth.txt", delimiter=",")
    absent = np.loadtxt(seq / "absence.label").astype(bool)
    return frames, truth, absent


def publish_answered(client: TrackerClient, camera: ReplayCamera, frame: np.ndarray):
    """Publish ``frame`` until the node answers it with a status; (stamp, status)."""
    for _ in range(ATTEMPTS):
        stamp = camera.publish_frame(frame)
        if client.wait_for(lambda d, s: any(stamp_to_ns(x.msg.header.stamp) == stamp for x in s), 3.0):
            return stamp, next(x.msg for x in client.snapshot()[1] if stamp_to_ns(x.msg.header.stamp) == stamp)
    pytest.fail(f"the node answered none of {ATTEMPTS} images")


@pytest.mark.skipif(default_checkpoint_path() is None, reason="the package's default model is not installed")
def test_lost_while_out_of_view_then_reacquired(tmp_path):
    frames, truth, absent = event_sequence(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "abtrack_ros.ros.node", "--ros-args", "-r", f"__ns:={NS}",
                             "-p", "threads:=1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rclpy.init()
    client = TrackerClient(NS, name="lost_client")
    camera = ReplayCamera(topic=f"{NS}/image", name="lost_camera")
    spinner = BackgroundSpinner(client, camera)
    try:
        assert client.wait_for_services(START_TIMEOUT_S), "node did not start"
        assert camera.wait_for_subscriber(10.0)
        stamp0, _ = publish_answered(client, camera, frames[0])
        assert client.init_target(list(truth[0]), stamp0).success
        steps = [publish_answered(client, camera, frame) for frame in frames[1:]]
        detections = {stamp_to_ns(d.msg.header.stamp): d.msg for d in client.snapshot()[0]}
    finally:
        spinner.close()
        for node in (client, camera):
            node.destroy_node()
        rclpy.shutdown()
        proc.terminate()
        proc.wait(10)

    states = [status.state_name for _, status in steps]
    truly_absent = absent[1:]
    first_away, back = int(np.argmax(truly_absent)), len(truly_absent) - int(np.argmax(truly_absent[::-1]))
    assert states[:first_away - 3] == ["TRACKING"] * (first_away - 3)  # followed before it leaves
    assert all(states[i] == "LOST" for i in range(first_away, back)), states  # LOST while away
    for (stamp, status) in steps:
        if status.state_name == "LOST":
            assert stamp not in detections  # no box that looks valid while LOST
            assert status.frames_lost >= 1 and len(status.box) == 4
        else:  # TRACKING: a detection carrying the status's confidence and box
            det = detections[stamp]
            assert det.results[0].hypothesis.class_id == "target"
            assert det.results[0].hypothesis.score == pytest.approx(status.score, rel=1e-5)
            assert np.allclose(detection_box_xywh(det), list(status.box), atol=1e-3)
    lost_reasons = {status.state_reason for _, status in steps if status.state_name == "LOST"}
    assert lost_reasons <= {"low confidence", "competing peak", "searching", "confirming"}
    reacquired = [i for i, (_, status) in enumerate(steps) if status.state_reason == "re-acquired"]
    assert reacquired and reacquired[0] >= back, states  # found again, only after it came back
    i = reacquired[0]
    assert iou_xywh(np.array(steps[i][1].box), truth[i + 1]) >= 0.5  # on the target
    assert all(state == "TRACKING" for state in states[i:]), states  # and kept
