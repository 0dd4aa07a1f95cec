"""A normal camera's frames over real DDS: 640x480 at 30 Hz from a separate camera process with the
shipped settings reach the node and get tracked; frames lost before the node are counted."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time

import numpy as np
import pytest

os.environ["ROS_DOMAIN_ID"] = str(random.randint(231, 232))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("abtrack_ros.msg")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402

from abtrack_ros.config import ABTrackConfig, ModelConfig  # noqa: E402
from abtrack_ros.model import build_model, save_checkpoint  # noqa: E402
from abtrack_ros.ros.client import BackgroundSpinner, ReplayCamera, TrackerClient  # noqa: E402
from abtrack_ros.ros.frames import stamp_to_ns  # noqa: E402
from abtrack_ros.ros.synthetic_camera import FramePainter, square_box  # noqa: E402

NS = "/abt_vga"
WIDTH, HEIGHT, RATE_HZ, FRAMES = 640, 480, 30.0, 90
START_TIMEOUT_S = 90.0
BURST = 60
BURST_TRIES = 3


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    cfg = ABTrackConfig(model=ModelConfig(depth=4, n_enf=1, template_size=64, search_size=128, head_channels=16,
                                          bdm=True))
    checkpoint = tmp_path_factory.mktemp("vga") / "tiny.pt"
    save_checkpoint(checkpoint, build_model(cfg.model), cfg)
    proc = subprocess.Popen([sys.executable, "-m", "abtrack_ros.ros.node", "--ros-args", "-r", f"__ns:={NS}",
                             "-p", f"checkpoint:={checkpoint}", "-p", "lost_score:=0.0",
                             "-p", "diagnostics_period:=0.3"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rclpy.init()
    client = TrackerClient(NS, name="vga_client")
    diagnostics: list = []
    client.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 50)
    spinner = BackgroundSpinner(client)
    try:
        assert client.wait_for_services(START_TIMEOUT_S), "node did not start"
        yield client, diagnostics
    finally:
        spinner.close()
        rclpy.shutdown()
        proc.send_signal(subprocess.signal.SIGINT)
        assert proc.wait(20) == 0


def test_640x480_at_30hz_from_a_camera_process_is_tracked(node):
    client, _ = node
    camera = subprocess.Popen([sys.executable, "-m", "abtrack_ros.ros.synthetic_camera", "--topic", f"{NS}/image",
                               "--width", str(WIDTH), "--height", str(HEIGHT), "--rate", str(RATE_HZ),
                               "--frames", str(FRAMES)], stdout=subprocess.PIPE, text=True)
    try:
        assert client.wait_for(lambda d, s: len(s) > 0, 15.0), "no 640x480 frame reached the node"
        first = client.snapshot()[1][-1].msg
        k = int(first.header.frame_id)
        response = client.init_target(square_box(k, WIDTH, HEIGHT), stamp_to_ns(first.header.stamp))
        assert response.success, response.message
        out, _ = camera.communicate(timeout=60)
    finally:
        if camera.poll() is None:
            camera.kill()
    assert f"published {FRAMES} frames" in out
    time.sleep(1.0)
    statuses = [s.msg for s in client.snapshot()[1]]
    after_init = [s for s in statuses if int(s.header.frame_id) > k]
    # With the shipped profile and the single-threaded executor every frame arrives and is
    # processed here. Without the profile 94-99 % are lost; with rclpy's busy multi-threaded
    # executor 26-86 of 90 were processed (docs/ros.md): both fail these bounds.
    print(f"processed {len(after_init)} of {FRAMES - 1 - k}, lost {statuses[-1].frames_lost_in_transport}")
    assert len(after_init) >= 0.9 * (FRAMES - 1 - k), (len(after_init), k)
    assert statuses[-1].frames_lost_in_transport <= 0.05 * FRAMES
    tracked = [s for s in after_init if s.state_name in ("TRACKING", "LOST")]
    assert tracked
    detections = [d.msg for d in client.snapshot()[0]]
    assert detections and all(0 <= d.bbox.center.position.x <= WIDTH for d in detections)


def test_frames_lost_before_the_node_are_counted_and_warned(node):
    """A burst faster than the node takes frames (subscription depth 1): the samples overwritten
    in the reader never reach the callback, and the publisher's sequence numbers show the gaps."""
    client, diagnostics = node
    camera = ReplayCamera(topic=f"{NS}/image", name="burst_camera")
    spinner = BackgroundSpinner(camera)
    try:
        assert camera.wait_for_subscriber(10.0)
        time.sleep(1.0)  # let the reader match before the burst
        frame = FramePainter(WIDTH, HEIGHT).frame(0)

        def lost_so_far() -> int:
            statuses = client.snapshot()[1]
            return max((x.msg.frames_lost_in_transport for x in statuses), default=0)

        stamp = camera.publish_frame(frame)
        assert client.wait_for(lambda d, s: any(stamp_to_ns(x.msg.header.stamp) == stamp for x in s), 10.0)
        before, published = lost_so_far(), 0
        for _ in range(BURST_TRIES):  # a burst the executor happens to keep up with shows no gap
            for _ in range(BURST):
                camera.publish_frame(frame)
            published += BURST
            if client.wait_for(lambda d, s: lost_so_far() > before, 5.0):
                break
        lost = lost_so_far() - before
        assert 0 < lost < published
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            values = [{kv.key: kv.value for kv in st.values} for a in list(diagnostics) for st in a.status
                      if NS in st.name]
            if any(int(v["frames_lost_in_transport"]) > 0 for v in values):
                break
            time.sleep(0.1)
        else:
            pytest.fail("diagnostics never reported the lost frames")
        warned = [st.message for a in list(diagnostics) for st in a.status if NS in st.name]
        assert any("lost before the node" in m for m in warned), warned[-3:]
    finally:
        spinner.close()
