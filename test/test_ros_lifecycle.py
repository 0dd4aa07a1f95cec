"""The managed (lifecycle) tracker node over real DDS: its transitions driven through the
lifecycle_msgs services, as `ros2 lifecycle set` or a launch file's ChangeState events do."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ["ROS_DOMAIN_ID"] = str(random.randint(201, 230))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("abtrack_ros.msg")
lifecycle_srv = pytest.importorskip("lifecycle_msgs.srv")

from lifecycle_msgs.msg import State, Transition  # noqa: E402

from abtrack_ros.config import ABTrackConfig, ModelConfig  # noqa: E402
from abtrack_ros.model import build_model, save_checkpoint  # noqa: E402
from abtrack_ros.ros.client import BackgroundSpinner, ReplayCamera, TrackerClient  # noqa: E402
from abtrack_ros.ros.frames import stamp_to_ns  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NS = "/abt_managed"
NODE = f"{NS}/tracker_node"
START_TIMEOUT_S = 90.0


def frame_with_square(x: int = 60, y: int = 40) -> np.ndarray:
    frame = np.full((120, 160, 3), 40, dtype=np.uint8)
    frame[y:y + 24, x:x + 24] = (250, 200, 30)
    return frame


def call(client, request, timeout_s: float = 60.0):
    future = client.call_async(request)
    deadline = time.monotonic() + timeout_s
    while not future.done():
        assert time.monotonic() < deadline, f"no answer from {client.srv_name}"
        time.sleep(0.02)
    return future.result()


def test_lifecycle_transitions_gate_the_tracker(tmp_path):
    cfg = ABTrackConfig(model=ModelConfig(depth=4, n_enf=1, template_size=64, search_size=128, head_channels=16,
                                          bdm=True))
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, build_model(cfg.model), cfg)
    proc = subprocess.Popen([sys.executable, str(REPO / "bin" / "tracker_lifecycle_node"), "--ros-args",
                             "-r", f"__ns:={NS}", "-p", f"checkpoint:={checkpoint}", "-p", "lost_score:=0.0",
                             "-p", "threads:=1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rclpy.init()
    helper = rclpy.create_node("lifecycle_driver")
    client = TrackerClient(NS, name="lifecycle_client")
    camera = ReplayCamera(topic=f"{NS}/image", name="lifecycle_camera")
    spinner = BackgroundSpinner(helper, client, camera)
    get_state = helper.create_client(lifecycle_srv.GetState, f"{NODE}/get_state")
    change_state = helper.create_client(lifecycle_srv.ChangeState, f"{NODE}/change_state")

    def state() -> int:
        return call(get_state, lifecycle_srv.GetState.Request()).current_state.id

    def transition(transition_id: int) -> bool:
        request = lifecycle_srv.ChangeState.Request()
        request.transition.id = transition_id
        return call(change_state, request).success

    def tracks() -> bool:
        """Whether a published frame comes back as a status within a few tries."""
        for _ in range(5):
            stamp = camera.publish_frame(frame_with_square())
            if client.wait_for(lambda d, s: any(stamp_to_ns(x.msg.header.stamp) == stamp for x in s), 2.0):
                return True
        return False

    try:
        assert get_state.wait_for_service(timeout_sec=START_TIMEOUT_S), "the lifecycle node did not start"
        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        assert not client.wait_for_services(1.0)  # no tracker services before activation
        assert transition(Transition.TRANSITION_CONFIGURE) and state() == State.PRIMARY_STATE_INACTIVE
        assert not client.wait_for_services(1.0)  # configured = model loaded, nothing open yet
        assert transition(Transition.TRANSITION_ACTIVATE) and state() == State.PRIMARY_STATE_ACTIVE
        assert client.wait_for_services(10.0) and camera.wait_for_subscriber(10.0)
        assert tracks()
        response = client.init_target([60.0, 40.0, 24.0, 24.0], 0)
        assert response.success, response.message
        assert tracks() and client.wait_for(lambda d, s: len(d) > 0, 5.0)  # detections flow

        assert transition(Transition.TRANSITION_DEACTIVATE) and state() == State.PRIMARY_STATE_INACTIVE
        client.clear()
        assert not tracks()  # deactivated: no processing, no status
        assert transition(Transition.TRANSITION_ACTIVATE)
        assert camera.wait_for_subscriber(10.0) and tracks()  # the target survives a pause
        assert any(s.msg.state_name in ("TRACKING", "LOST") for s in client.snapshot()[1])

        assert transition(Transition.TRANSITION_DEACTIVATE)
        assert transition(Transition.TRANSITION_CLEANUP) and state() == State.PRIMARY_STATE_UNCONFIGURED
        assert transition(Transition.TRANSITION_CONFIGURE)  # the model loads again after a cleanup
        assert transition(Transition.TRANSITION_INACTIVE_SHUTDOWN) and state() == State.PRIMARY_STATE_FINALIZED
    finally:
        spinner.close()
        rclpy.shutdown()
        proc.send_signal(subprocess.signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0 and "Traceback" not in err, err
