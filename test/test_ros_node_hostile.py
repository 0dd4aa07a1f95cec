"""Hostile and odd inputs against a live tracker node over real DDS (issue: the node on a real robot).

Each test sends exactly one kind of input that once killed or silenced the node, then checks
that the node still tracks the next good frames. One node process serves the module; the last
tests fuzz it and stop it with signals.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

os.environ["ROS_DOMAIN_ID"] = str(random.randint(101, 200))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("abtrack_ros.msg")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from vision_msgs.msg import Detection2D  # noqa: E402

from abtrack_ros.config import ABTrackConfig, ModelConfig  # noqa: E402
from abtrack_ros.model import build_model, save_checkpoint  # noqa: E402
from abtrack_ros.ros.client import BackgroundSpinner, ReplayCamera, TrackerClient, ns_to_stamp  # noqa: E402
from abtrack_ros.ros.frames import stamp_to_ns  # noqa: E402
from abtrack_ros.srv import InitTarget  # noqa: E402

NS = "/abt_hostile"
H, W = 120, 160
TARGET = [60.0, 40.0, 24.0, 24.0]
START_TIMEOUT_S = 90.0
ANSWER_TIMEOUT_S = 3.0
BUFFER_MBYTES = 1
BURST_REQUESTS = 50


def frame_with_square(x: int, y: int, size: int = 24, h: int = H, w: int = W) -> np.ndarray:
    frame = np.full((h, w, 3), 40, dtype=np.uint8)
    frame[y:y + size, x:x + size] = (250, 200, 30)
    return frame


def node_command(*ros_args: str) -> list[str]:
    return [sys.executable, "-m", "abtrack_ros.ros.node", "--ros-args", *ros_args]


def tiny_checkpoint(path) -> str:
    cfg = ABTrackConfig(model=ModelConfig(depth=4, n_enf=1, template_size=64, search_size=128,
                                          head_channels=16, bdm=True))
    save_checkpoint(path, build_model(cfg.model), cfg)
    return str(path)


class Live:
    """The node process and this process's camera, client and helper node."""

    def __init__(self, proc, client: TrackerClient, camera: ReplayCamera, helper) -> None:
        self.proc, self.client, self.camera, self.helper = proc, client, camera, helper
        self.diagnostics: list = []
        helper.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 50)

    def status_for(self, stamp_ns: int, timeout_s: float = ANSWER_TIMEOUT_S):
        """The node's status for the image with this stamp, or None."""
        def find(_d, statuses):
            return next((s.msg for s in statuses if stamp_to_ns(s.msg.header.stamp) == stamp_ns), None)

        self.client.wait_for(lambda d, s: find(d, s) is not None, timeout_s)
        return find(*self.client.snapshot())

    def publish_answered(self, frame: np.ndarray, stamp_ns=None, attempts: int = 5):
        """Publish until the node answers the frame with a status (best effort may lose one)."""
        for attempt in range(attempts):
            stamp = self.camera.publish_frame(frame, None if stamp_ns is None else stamp_ns + attempt)
            status = self.status_for(stamp)
            if status is not None:
                return stamp, status
        pytest.fail(f"the node answered none of {attempts} frames")

    def init(self, box=TARGET, frame=None):
        stamp, _ = self.publish_answered(frame_with_square(60, 40) if frame is None else frame)
        return self.client.init_target(box, stamp)

    def assert_tracks(self, frames: int = 3) -> list:
        """The node is alive and publishes detections for the next good frames; their boxes."""
        assert self.proc.poll() is None, "the node process died"
        response = self.init()
        assert response.success, response.message
        boxes = []
        for _ in range(frames):
            stamp, status = self.publish_answered(frame_with_square(60, 40))
            assert status.state_name in ("TRACKING", "LOST"), status
            dets = [d.msg for d in self.client.snapshot()[0] if stamp_to_ns(d.msg.header.stamp) == stamp]
            assert dets, "a tracked frame without a detection"
            boxes.append((dets[0].bbox.size_x, dets[0].bbox.size_y))
        return boxes

    def latest_diagnostic_values(self, predicate, timeout_s: float = 5.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for array in reversed(list(self.diagnostics)):
                for status in array.status:
                    values = {kv.key: kv.value for kv in status.values}
                    if NS in status.name and predicate(status, values):
                        return status, values
            time.sleep(0.05)
        return None


@pytest.fixture(scope="module")
def ros():
    rclpy.init()
    yield
    rclpy.shutdown()


@pytest.fixture(scope="module")
def live(ros, tmp_path_factory):
    checkpoint = tiny_checkpoint(tmp_path_factory.mktemp("hostile") / "tiny.pt")
    proc = subprocess.Popen(
        # lost_score 0: random weights have a low confidence; TRACKING keeps detections flowing.
        node_command("-r", f"__ns:={NS}", "-p", f"checkpoint:={checkpoint}", "-p", "lost_score:=0.0",
                     "-p", "threads:=1", "-p", "diagnostics_period:=0.3", "-p", f"frame_buffer_mbytes:={BUFFER_MBYTES}"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = TrackerClient(NS, name="hostile_client")
    camera = ReplayCamera(topic=f"{NS}/image", frame_id="cam", name="hostile_camera")
    helper = rclpy.create_node("hostile_helper")
    spinner = BackgroundSpinner(client, camera, helper)
    try:
        assert client.wait_for_services(START_TIMEOUT_S), "node did not start"
        assert camera.wait_for_subscriber(10.0)
        yield Live(proc, client, camera, helper)
    finally:
        spinner.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_diagnostics_before_the_first_frame_say_so(live):
    found = live.latest_diagnostic_values(lambda s, v: "no image received yet" in s.message)
    assert found is not None
    _status, values = found
    assert values["latency_p50_ms"] == "n/a" and values["frames_received"] == "0"
    assert float(values["resident_memory_mb"]) > 10 and values["torch_threads"] == "1"


@pytest.mark.parametrize("box", [
    [-1e200, -1e200, 1e201, 1e201],  # area overflows to infinity: once a ZeroDivisionError
    [0.0, 0.0, 1e155, 1e155],
    [10.0, 10.0, 1e9, 1e9],
])
def test_huge_boxes_are_clipped_to_the_image(live, box):
    response = live.init(box)
    assert response.success, response.message
    stamp, status = live.publish_answered(frame_with_square(60, 40))
    dets = [d.msg for d in live.client.snapshot()[0] if stamp_to_ns(d.msg.header.stamp) == stamp]
    assert dets and dets[0].bbox.size_x <= W and dets[0].bbox.size_y <= H
    live.assert_tracks()


@pytest.mark.parametrize("box, reason", [
    ([10.0, 10.0, 1e-6, 1e-6], "at least 3 x 3"),
    ([W - 1.0, 10.0, 20.0, 20.0], "at least 3 x 3"),  # one pixel column inside the image
    ([1e308, 0.0, 1e308, 10.0], "infinite"),
])
def test_tiny_and_overflowing_boxes_are_refused(live, box, reason):
    response = live.init(box)
    assert not response.success and reason in response.message
    live.assert_tracks()


def test_huge_detection_on_init_detection_does_not_kill_the_node(live):
    stamp, _ = live.publish_answered(frame_with_square(60, 40))
    for size in (1e201, float("inf"), -5.0):
        det = Detection2D()
        det.header.stamp = ns_to_stamp(stamp)
        det.bbox.size_x = det.bbox.size_y = size
        live.client.init_detection_pub.publish(det)
    time.sleep(0.5)
    live.assert_tracks()


def test_negative_stamp_is_rejected_and_the_worker_goes_on(live):
    live.init()
    stamp, status = live.publish_answered(frame_with_square(60, 40), stamp_ns=-5_000_000_000)
    assert stamp < 0 and "negative" in status.last_error and status.frames_rejected >= 1
    live.assert_tracks()


def test_clock_jump_back_drops_the_target_and_is_reported(live):
    assert live.init().success
    live.publish_answered(frame_with_square(60, 40))
    back = live.camera.get_clock().now().nanoseconds - 30_000_000_000  # a bag loop: 30 s back
    _, status = live.publish_answered(frame_with_square(60, 40), stamp_ns=back)
    assert status.state_name == "IDLE" and "jumped back" in status.last_error
    found = live.latest_diagnostic_values(lambda s, v: int(v["clock_jumps"]) >= 1)
    assert found is not None
    # Tracking resumes after a new init on the replayed clock.
    stamp, _ = live.publish_answered(frame_with_square(60, 40), stamp_ns=back + 1_000_000)
    assert live.client.init_target(TARGET, stamp).success
    _, status = live.publish_answered(frame_with_square(60, 40), stamp_ns=back + 50_000_000)
    assert status.state_name in ("TRACKING", "LOST") and status.last_error == ""


def test_frame_of_another_size_is_reported_and_changes_nothing(live):
    assert live.init().success
    before = live.assert_tracks(frames=1)[0]
    _, status = live.publish_answered(np.zeros((1, 1, 3), np.uint8))
    assert "initialised on a 160x120 image" in status.last_error and status.state_name in ("TRACKING", "LOST")
    stamp, status = live.publish_answered(frame_with_square(60, 40))
    det = next(d.msg for d in live.client.snapshot()[0] if stamp_to_ns(d.msg.header.stamp) == stamp)
    assert det.bbox.size_x > 3 and det.bbox.size_y > 3, (before, det.bbox)  # not collapsed to 1x1


def test_a_burst_of_init_requests_is_answered_in_full(live):
    stamp, _ = live.publish_answered(frame_with_square(60, 40))
    # The client's own response queue must hold the burst too.
    qos = QoSProfile(depth=BURST_REQUESTS * 2, reliability=ReliabilityPolicy.RELIABLE)
    client = live.helper.create_client(InitTarget, f"{NS}/init_target", qos_profile=qos)
    try:
        assert client.wait_for_service(timeout_sec=10.0)
        request = InitTarget.Request(stamp=ns_to_stamp(stamp), x=60.0, y=40.0, width=24.0, height=24.0)
        futures = [client.call_async(request) for _ in range(BURST_REQUESTS)]
        deadline = time.monotonic() + 30.0
        while not all(f.done() for f in futures) and time.monotonic() < deadline:
            time.sleep(0.05)
        answered = [f.result() for f in futures if f.done()]
        assert len(answered) == BURST_REQUESTS and all(r.success for r in answered)
    finally:
        live.helper.destroy_client(client)
    live.assert_tracks()


def test_large_frames_stay_within_the_buffer_bound(live):
    big = frame_with_square(600, 400, size=80, h=900, w=1200)  # 3.2 MB each, bound 1 MiB
    for _ in range(4):
        live.publish_answered(big)
    found = live.latest_diagnostic_values(lambda s, v: int(v["frames_received"]) > 0)
    assert found is not None
    _status, values = found
    assert float(values["frame_buffer_mb"]) <= 3.2, values["frame_buffer_mb"]  # only the newest frame
    live.assert_tracks()


def test_diagnostics_after_the_input_stops(live):
    live.assert_tracks(frames=5)
    time.sleep(2.6)  # longer than the rate window and the stale-input limit
    found = live.latest_diagnostic_values(lambda s, v: "no image for" in s.message, timeout_s=3.0)
    assert found is not None
    _status, values = found
    assert float(values["input_rate_hz"]) == 0.0
    assert "no image received yet" not in found[0].message


def random_image(rng: np.random.Generator, stamp_ns: int) -> Image:
    """A message with random geometry, encoding and data: most are malformed."""
    msg = Image()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.height, msg.width = (int(v) for v in rng.choice([0, 1, 2, 7, 64, 120, 479, 10_000], size=2))
    msg.encoding = str(rng.choice(["rgb8", "bgr8", "mono8", "mono16", "bgra8", "16UC1", "32FC1", "yuv422",
                                   "", "bayer_rggb8", "\x00\xff"]))
    msg.is_bigendian = int(rng.integers(0, 2))
    msg.step = int(rng.choice([0, 1, msg.width, msg.width * 3, msg.width * 4, 2**31 - 1]))
    size = int(min(msg.step * msg.height, 200_000)) if rng.random() < 0.7 else int(rng.integers(0, 5000))
    msg.data = rng.integers(0, 256, size=size, dtype=np.uint8).tobytes()
    return msg


def test_fuzz_random_images_and_requests(live):
    """Hundreds of random images, boxes and stamps: the node stays up and answers throughout."""
    rng = np.random.default_rng(20261202)
    pub = live.helper.create_publisher(Image, f"{NS}/image", qos_profile_sensor_data)
    det_pub = live.client.init_detection_pub
    values = [0.0, -1.0, 1.0, 3.0, 50.0, 1e-9, 1e9, 1e308, -1e308, float("nan"), float("inf"), -float("inf")]
    now = live.camera.get_clock().now().nanoseconds
    stamps = [0, -1, now, now - 10**12, 2**62, -(2**62), 1]
    try:
        for i in range(300):
            kind = rng.integers(0, 4)
            if kind <= 1:
                pub.publish(random_image(rng, int(rng.choice(stamps))))
            elif kind == 2:
                live.camera.publish_frame(frame_with_square(int(rng.integers(0, W - 24)), 40))
                box = [float(rng.choice(values)) for _ in range(4)]
                request = InitTarget.Request(stamp=ns_to_stamp(int(rng.choice([0, now]))), x=box[0], y=box[1],
                                             width=box[2], height=box[3])
                live.client._init.call_async(request)
            else:
                det = Detection2D()
                det.header.stamp = ns_to_stamp(int(rng.choice(stamps)))
                det.bbox.center.position.x, det.bbox.center.position.y = (float(rng.choice(values)) for _ in range(2))
                det.bbox.size_x, det.bbox.size_y = (float(rng.choice(values)) for _ in range(2))
                det_pub.publish(det)
            time.sleep(0.005)
        assert live.proc.poll() is None, "the node died under fuzzing"
        found = live.latest_diagnostic_values(lambda s, v: int(v["frames_rejected"]) > 0)
        assert found is not None and int(found[1]["worker_errors"]) == 0, found
    finally:
        live.helper.destroy_publisher(pub)
    live.assert_tracks()


def stream_until(camera: ReplayCamera, stop: threading.Event, period_s: float = 0.01) -> None:
    while not stop.is_set():
        camera.publish_frame(frame_with_square(60, 40))
        time.sleep(period_s)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGINT])
def test_shutdown_while_tracking_is_clean(ros, tmp_path, sig):
    """A signal while frames stream and the worker publishes: exit code 0, no traceback."""
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt")
    ns = f"/abt_stop_{sig.name.lower()}"
    proc = subprocess.Popen(node_command("-r", f"__ns:={ns}", "-p", f"checkpoint:={checkpoint}",
                                         "-p", "lost_score:=0.0", "-p", "threads:=1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = TrackerClient(ns, name="stop_client")
    camera = ReplayCamera(topic=f"{ns}/image", name="stop_camera")
    spinner = BackgroundSpinner(client, camera)
    stop = threading.Event()
    streamer = threading.Thread(target=stream_until, args=(camera, stop), daemon=True)
    try:
        assert client.wait_for_services(START_TIMEOUT_S)
        assert camera.wait_for_subscriber(10.0)
        camera.publish_frame(frame_with_square(60, 40))
        time.sleep(0.3)
        streamer.start()
        assert client.init_target(TARGET, 0).success
        assert client.wait_for(lambda d, s: len(d) > 3, 10.0), "no detections before the signal"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "Traceback" not in err + out, err
    finally:
        stop.set()
        if streamer.is_alive():
            streamer.join(timeout=2.0)
        if proc.poll() is None:
            proc.kill()
        spinner.close()
