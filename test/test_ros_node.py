"""The tracker node over real DDS: node processes started like `ros2 run`, a client in this process.

One node process (default QoS, the shipped config file) is shared by most tests; a second one with
qos_reliability=reliable checks QoS-mismatch reporting and an init before any image.
"""
from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

os.environ["ROS_DOMAIN_ID"] = str(random.randint(1, 100))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOCALHOST_ONLY"] = "1"

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("vision_msgs.msg")
pytest.importorskip("abtrack_ros.msg")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.event_handler import PublisherEventCallbacks  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
import cv2  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from vision_msgs.msg import Detection2D  # noqa: E402

from abtrack_ros.config import ABTrackConfig, ModelConfig, TrackerConfig  # noqa: E402
from abtrack_ros.model import build_model, save_checkpoint  # noqa: E402
from abtrack_ros.ros.client import BackgroundSpinner, ReplayCamera, TrackerClient, ns_to_stamp  # noqa: E402
from abtrack_ros.ros.frames import stamp_to_ns  # noqa: E402
from abtrack_ros.ros.image_conversion import rgb_to_image_msg  # noqa: E402
from abtrack_ros.ros.messages import detection_box_xywh  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NS = "/abt_test"
NS_RELIABLE = "/abt_reliable"
H, W = 120, 160
TARGET = [60.0, 40.0, 24.0, 24.0]
START_TIMEOUT_S = 90.0
N_ENF = 3
RIG_LOST_SCORE = 0.0
# Thresholds stored in the rig's checkpoint, unlike any parameter's: the node takes them where a
# parameter is -1 (found_score and bypass_threshold in the shipped config file).
MODEL_LOST_SCORE, MODEL_FOUND_SCORE, MODEL_BYPASS_THRESHOLD = 0.31, 0.62, 0.55


def frame_with_square(x: int, y: int, size: int = 24) -> np.ndarray:
    frame = np.full((H, W, 3), 40, dtype=np.uint8)
    frame[y:y + size, x:x + size] = (250, 200, 30)
    return frame


def node_command(*ros_args: str) -> list[str]:
    return [sys.executable, "-m", "abtrack_ros.ros.node", "--ros-args", *ros_args]


def wait_future(future, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while not future.done():
        if time.monotonic() > deadline:
            raise TimeoutError("no answer")
        time.sleep(0.01)
    return future.result()


@dataclass
class Rig:
    client: TrackerClient
    camera: ReplayCamera
    params: AsyncParameterClient
    reliable_client: TrackerClient
    early_init: object  # init_target response before any image was published
    helper: object  # plain node for ad-hoc publishers/subscriptions

    def stream(self, frames: list[np.ndarray], rate_hz: float = 20.0) -> list[int]:
        """Publish ``frames`` at ``rate_hz``; their stamps. The last stamp is one the node has
        answered: a lost last frame (best effort, busy machine) is published again."""
        stamps = []
        for frame in frames:
            stamps.append(self.camera.publish_frame(frame))
            time.sleep(1.0 / rate_hz)
        if not answered(self.client, stamps[-1]):
            stamps.append(publish_until_answered(self, lambda: self.camera.publish_frame(frames[-1])))
        return stamps

    def set_params(self, **values) -> list:
        future = self.params.set_parameters([Parameter(k, value=v) for k, v in values.items()])
        return wait_future(future).results


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ros_node")
    checkpoint = tmp / "random_init.pt"
    # Random weights, default crop sizes: slower than a 60 Hz camera on a CPU, so frames get dropped.
    cfg = ABTrackConfig(model=ModelConfig(template_size=128, search_size=256, head_channels=32, bdm=True,
                                          n_enf=N_ENF, bypass_threshold=MODEL_BYPASS_THRESHOLD),
                        tracker=TrackerConfig(lost_score=MODEL_LOST_SCORE, found_score=MODEL_FOUND_SCORE))
    save_checkpoint(checkpoint, build_model(cfg.model), cfg)
    # The shipped config file, edited, proves its /** wildcard reaches a namespaced node.
    shipped = yaml.safe_load((REPO / "config" / "tracker.yaml").read_text())
    (key,) = shipped
    shipped[key]["ros__parameters"].update(frame_buffer_length=8, diagnostics_period=0.3)
    params_file = tmp / "tracker.yaml"
    params_file.write_text(yaml.safe_dump(shipped))
    # Random weights have a low confidence: lost_score 0 keeps the target TRACKING (detections flow)
    # unless a test raises it.
    procs = [
        subprocess.Popen(node_command("-r", f"__ns:={NS}", "--params-file", str(params_file),
                                      "-p", f"checkpoint:={checkpoint}", "-p", "threads:=1",
                                      "-p", f"lost_score:={RIG_LOST_SCORE}"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen(node_command("-r", f"__ns:={NS_RELIABLE}", "-p", f"checkpoint:={checkpoint}",
                                      "-p", "qos_reliability:=reliable", "-p", "use_compressed:=true",
                                      # an integer for a double parameter at start-up (rclpy's type
                                      # check would refuse it; the node makes it -1.0, the model's own)
                                      "-p", "threads:=1", "-p", "lost_score:=-1",
                                      "-p", "diagnostics_period:=0.3"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    rclpy.init()
    client = TrackerClient(NS)
    camera = ReplayCamera(topic=f"{NS}/image", frame_id="cam_optical")
    reliable_client = TrackerClient(NS_RELIABLE, name="abtrack_client_reliable")
    helper = rclpy.create_node("abtrack_test_helper")
    params = AsyncParameterClient(helper, f"{NS}/tracker_node")
    spinner = BackgroundSpinner(client, camera, reliable_client, helper)
    try:
        assert reliable_client.wait_for_services(START_TIMEOUT_S), "reliable node did not start"
        early = reliable_client.init_target(TARGET)
        assert client.wait_for_services(START_TIMEOUT_S), "node did not start"
        assert params.wait_for_services(10.0)
        assert camera.wait_for_subscriber(10.0)
        yield Rig(client, camera, params, reliable_client, early, helper)
    finally:
        spinner.close()
        rclpy.shutdown()
        for proc in procs:
            proc.send_signal(subprocess.signal.SIGINT)
        for proc in procs:
            try:
                assert proc.wait(15) == 0
            except subprocess.TimeoutExpired:
                proc.kill()
                raise


PUBLISH_ATTEMPTS = 5
MISSING_FRAME_ANSWERS = ("no image received yet", "no buffered image")


def init_on(rig: Rig, frame: np.ndarray, box=TARGET):
    """Publish ``frame`` and init on its stamp. A best-effort image can be lost (for example
    before the node's reader has matched the camera), so a frame the node says it never got is
    published again; any other answer is returned at once."""
    for _ in range(PUBLISH_ATTEMPTS):
        stamp = rig.camera.publish_frame(frame)
        time.sleep(0.3)
        response = rig.client.init_target(box, stamp)
        if response.success or not response.message.startswith(MISSING_FRAME_ANSWERS):
            break
    return stamp, response


def test_init_then_detections_copy_image_headers(rig):
    rig.client.clear()
    stamp0, response = init_on(rig, frame_with_square(60, 40))
    assert response.success, response.message
    assert stamp_to_ns(response.image_stamp) == stamp0
    assert response.state == 1
    stamps = rig.stream([frame_with_square(60 + i, 40) for i in range(6)], rate_hz=10)
    # The status of a frame is published right after its detection: wait for a streamed frame
    # with both (not for one particular frame: a best-effort image can be lost on a busy machine).
    def answered_both(detections, statuses) -> set:
        return ({stamp_to_ns(x.msg.header.stamp) for x in detections}
                & {stamp_to_ns(x.msg.header.stamp) for x in statuses} & set(stamps))

    assert rig.client.wait_for(lambda d, s: bool(answered_both(d, s)), 10)
    detections, statuses = rig.client.snapshot()
    both = answered_both(detections, statuses)
    published = set(stamps) | {stamp0}
    assert detections and all(stamp_to_ns(d.msg.header.stamp) in published for d in detections)
    assert all(d.msg.header.frame_id == "cam_optical" for d in detections)
    ids = {d.msg.id for d in detections}
    assert len(ids) == 1 and ids != {""}
    det = next(d.msg for d in reversed(detections) if stamp_to_ns(d.msg.header.stamp) in both)
    assert det.results[0].hypothesis.class_id == "target"
    assert 0.0 <= det.results[0].hypothesis.score <= 1.0
    x, y, w, h = detection_box_xywh(det)
    assert w > 0 and h > 0 and 0 <= x <= W and 0 <= y <= H
    tracked = [s.msg for s in statuses if s.msg.state_name in ("TRACKING", "LOST")]
    assert tracked
    status = tracked[-1]
    assert status.blocks_total == 12 and len(status.executed_blocks) == 12
    assert len(status.bypass_probabilities) == 12
    assert status.blocks_executed == sum(status.executed_blocks) >= N_ENF
    assert status.model_ms > 0 and status.total_ms >= status.model_ms and status.image_age_ms > 0
    assert status.frames_processed > 0 and status.last_error == ""
    same_frame = next(s.msg for s in statuses if s.msg.header.stamp == det.header.stamp)
    assert math.isclose(same_frame.score, det.results[0].hypothesis.score, rel_tol=1e-5)
    assert same_frame.state_name == "TRACKING" and same_frame.state_reason == "confident"
    assert np.allclose(list(same_frame.box), detection_box_xywh(det), atol=1e-3)
    # A new init gives a new target id.
    rig.client.clear()
    _, response = init_on(rig, frame_with_square(30, 30))
    assert response.success
    new_stamps = set(rig.stream([frame_with_square(30, 30)] * 3, rate_hz=10))
    # A frame the worker held when the new init landed may still come out with the old id:
    # judge the detections of the frames sent after the init.
    assert rig.client.wait_for(lambda d, s: any(stamp_to_ns(x.msg.header.stamp) in new_stamps for x in d), 10)
    after = [x.msg for x in rig.client.snapshot()[0] if stamp_to_ns(x.msg.header.stamp) in new_stamps]
    assert after and all(det.id not in ids for det in after)


def test_init_on_older_buffered_frame_and_eviction(rig):
    stamps = rig.stream([frame_with_square(20 + 5 * i, 30) for i in range(4)], rate_hz=20)
    time.sleep(0.2)
    response = rig.client.init_target([20.0, 30.0, 24.0, 24.0], stamps[0])
    assert response.success, response.message
    assert stamp_to_ns(response.image_stamp) == stamps[0]  # the older frame, not the newest
    latest = rig.client.init_target(TARGET, 0)
    assert latest.success and stamp_to_ns(latest.image_stamp) == stamps[-1]
    missing = rig.client.init_target(TARGET, stamps[0] - 1)
    assert not missing.success and "no buffered image" in missing.message
    # frame_buffer_length is 8; best-effort DDS may drop some frames on a loaded machine: send plenty.
    rig.stream([frame_with_square(60, 40)] * 24, rate_hz=15)
    time.sleep(0.2)
    evicted = rig.client.init_target(TARGET, stamps[0])
    assert not evicted.success and "frame_buffer_length" in evicted.message


def test_reset_and_reset_while_idle(rig):
    _, response = init_on(rig, frame_with_square(60, 40))
    assert response.success
    reset = rig.client.reset()
    assert reset.success
    again = rig.client.reset()
    assert not again.success and again.message == "already idle"
    rig.client.clear()
    stamps = rig.stream([frame_with_square(60, 40)] * 3, rate_hz=10)
    detections, statuses = rig.client.snapshot()
    assert not detections
    assert statuses[-1].msg.state_name == "IDLE" and statuses[-1].msg.state == 0
    assert statuses[-1].msg.blocks_executed == 0


def test_init_from_detection_topic(rig):
    rig.client.reset()
    stamp = rig.camera.publish_frame(frame_with_square(60, 40))
    time.sleep(0.3)
    det = Detection2D()
    det.header.stamp = ns_to_stamp(stamp)
    det.bbox.center.position.x, det.bbox.center.position.y = 72.0, 52.0
    det.bbox.size_x = det.bbox.size_y = 24.0
    rig.client.clear()
    rig.client.init_detection_pub.publish(det)
    time.sleep(0.5)
    stamps = rig.stream([frame_with_square(60, 40)] * 3, rate_hz=10)
    assert rig.client.wait_for(lambda d, s: any(stamp_to_ns(x.msg.header.stamp) == stamps[-1] for x in d), 10)


@pytest.mark.parametrize("box, reason", [
    ([math.nan, 10.0, 20.0, 20.0], "NaN or infinite"),
    ([10.0, 10.0, math.inf, 20.0], "NaN or infinite"),
    ([10.0, 10.0, 0.0, 20.0], "positive"),
    ([10.0, 10.0, 20.0, -5.0], "positive"),
    ([W + 10.0, 10.0, 20.0, 20.0], "outside"),
])
def test_bad_boxes_are_refused(rig, box, reason):
    rig.camera.publish_frame(frame_with_square(60, 40))
    time.sleep(0.2)
    response = rig.client.init_target(box, 0)
    assert not response.success and reason in response.message


def test_init_before_any_image_is_refused(rig):
    assert not rig.early_init.success
    assert "no image received yet" in rig.early_init.message


def bad_image(kind: str) -> Image:
    msg = rgb_to_image_msg(frame_with_square(60, 40))
    if kind == "encoding":
        msg.encoding = "yuv422_weird"
    elif kind == "short":
        msg.data = bytes(msg.data)[: msg.step * (msg.height - 1)]
    elif kind == "zero":
        msg.height, msg.width, msg.step, msg.data = 0, 0, 0, b""
    elif kind == "step":
        msg.step = msg.width * 3 - 1
    return msg


def answered(client: TrackerClient, stamp_ns: int, timeout_s: float = 2.0) -> bool:
    """Whether a status for the image with this stamp arrives within ``timeout_s``."""
    return client.wait_for(lambda d, s: any(stamp_to_ns(x.msg.header.stamp) == stamp_ns for x in s), timeout_s)


def publish_until_answered(rig: Rig, publish) -> int:
    """Call ``publish()`` (it returns the stamp it sent) until the node answers that stamp with a
    status; best-effort samples from a just-created publisher can be lost before the node's
    reader has matched it. Returns the answered stamp."""
    for _ in range(PUBLISH_ATTEMPTS):
        stamp = publish()
        if answered(rig.client, stamp):
            return stamp
    pytest.fail(f"the node answered none of {PUBLISH_ATTEMPTS} images")


@pytest.mark.parametrize("kind, reason", [
    ("encoding", "unsupported image encoding"),
    ("short", "bytes, step*height needs"),
    ("zero", "empty image"),
    ("step", "smaller than width*bytes_per_pixel"),
])
def test_malformed_images_are_rejected_and_reported(rig, kind, reason):
    pub = rig.helper.create_publisher(Image, f"{NS}/image", qos_profile_sensor_data)

    def publish_bad() -> int:
        msg = bad_image(kind)
        msg.header.stamp = ns_to_stamp(rig.helper.get_clock().now().nanoseconds)
        pub.publish(msg)
        return stamp_to_ns(msg.header.stamp)

    try:
        rig.client.clear()
        bad = publish_until_answered(rig, publish_bad)
        status = next(x.msg for x in rig.client.snapshot()[1] if stamp_to_ns(x.msg.header.stamp) == bad)
        assert reason in status.last_error and status.frames_rejected >= 1
    finally:
        rig.helper.destroy_publisher(pub)
    # The node keeps working on the next good frame.
    good = publish_until_answered(rig, lambda: rig.camera.publish_frame(frame_with_square(60, 40)))
    status = next(x.msg for x in rig.client.snapshot()[1] if stamp_to_ns(x.msg.header.stamp) == good)
    assert status.last_error == ""


def latest_diagnostic(store: list, name_part: str, predicate, timeout_s: float = 5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for array in reversed(list(store)):
            for status in array.status:
                if name_part in status.name and predicate(status):
                    return status
        time.sleep(0.05)
    return None


def test_diagnostics_levels_and_values(rig):
    store: list = []
    sub = rig.helper.create_subscription(DiagnosticArray, "/diagnostics", store.append, 10)
    pub = rig.helper.create_publisher(Image, f"{NS}/image", qos_profile_sensor_data)
    try:
        _, response = init_on(rig, frame_with_square(60, 40))
        rig.stream([frame_with_square(60, 40)] * 8, rate_hz=15)
        ok = latest_diagnostic(store, NS, lambda s: s.level == DiagnosticStatus.OK)
        assert ok is not None, [s.message for a in store for s in a.status]
        values = {kv.key: kv.value for kv in ok.values}
        for key in ("input_rate_hz", "processing_rate_hz", "latency_p50_ms", "latency_p90_ms",
                    "latency_p99_ms", "mean_bypass_rate", "frames_dropped", "frames_rejected",
                    "state", "device", "backend"):
            assert key in values
        assert float(values["latency_p50_ms"]) > 0 and values["device"] == "cpu"
        for _ in range(6):  # only bad frames for over a diagnostics period -> ERROR
            pub.publish(bad_image("encoding"))
            time.sleep(0.1)
        assert latest_diagnostic(store, NS, lambda s: s.level == DiagnosticStatus.ERROR) is not None
        stale = latest_diagnostic(store, NS, lambda s: s.level == DiagnosticStatus.WARN
                                  and "no image for" in s.message, timeout_s=6.0)
        assert stale is not None
    finally:
        rig.helper.destroy_subscription(sub)
        rig.helper.destroy_publisher(pub)


def _stream_fast(rig: Rig) -> tuple[list, np.ndarray, float]:
    """120 frames at 60 Hz: (their statuses, image ages, median node time in ms)."""
    rig.client.clear()
    stamps = set(rig.stream([frame_with_square(60, 40)] * 120, rate_hz=60))
    statuses = [s.msg for s in rig.client.snapshot()[1] if stamp_to_ns(s.msg.header.stamp) in stamps]
    assert len(statuses) < len(stamps)
    ages = np.array([s.image_age_ms for s in statuses])
    return statuses, ages, float(np.median([s.total_ms for s in statuses]))


def test_fast_camera_keeps_latency_flat_and_counts_drops(rig):
    _, response = init_on(rig, frame_with_square(60, 40))
    assert response.success
    # A queue would make the age grow by ~(model time - frame period) per frame, in every run.
    # This 2-core VM sometimes stalls every process for ~1 s (seen in the demo and here), which
    # can spoil one run's last third: so a second run decides, and a real queue fails both.
    for _ in range(2):
        statuses, ages, model_ms = _stream_fast(rig)
        assert statuses[-1].frames_dropped > statuses[0].frames_dropped  # the camera outran the model
        third = max(len(ages) // 3, 1)
        if np.median(ages[-third:]) < np.median(ages[:third]) + 3 * model_ms + 50.0:
            break
    else:
        pytest.fail(f"image age grew in two runs (last: {ages.round(1).tolist()}, model {model_ms:.1f} ms)")


def test_parameter_validation_rejects_with_reason(rig):
    results = rig.set_params(bypass_threshold=1.5)
    assert not results[0].successful and "bypass_threshold" in results[0].reason
    results = rig.set_params(lost_score=-0.1)
    assert not results[0].successful
    results = rig.set_params(qos_depth=5)  # read only: needs a restart
    assert not results[0].successful and "read-only" in results[0].reason.lower()
    results = rig.set_params(bypass_threshold="high")
    assert not results[0].successful


def test_runtime_bypass_threshold_and_lost_score(rig):
    def last_tracked_status(frames: int = 3):
        stamps = rig.stream([frame_with_square(60, 40)] * frames, rate_hz=10)
        return next(x.msg for x in reversed(rig.client.snapshot()[1])
                    if stamp_to_ns(x.msg.header.stamp) == stamps[-1])

    def detections_of(status) -> list:
        return [d.msg for d in rig.client.snapshot()[0] if d.msg.header.stamp == status.header.stamp]

    _, response = init_on(rig, frame_with_square(60, 40))
    assert response.success
    try:
        assert all(r.successful for r in rig.set_params(bypass_threshold=0.0))
        status = last_tracked_status()  # every p_i > 0, so every bypassable block is skipped
        assert status.blocks_executed == N_ENF, status.executed_blocks
        assert all(r.successful for r in rig.set_params(bypass_threshold=1.0))
        assert last_tracked_status().blocks_executed == 12
        assert all(r.successful for r in rig.set_params(lost_score=1.0))
        lost = last_tracked_status()
        assert lost.state_name == "LOST" and lost.state_reason in ("low confidence", "competing peak", "searching")
        assert lost.frames_lost >= 1 and len(lost.box) == 4 and 0.0 <= lost.raw_score <= 1.0
        assert detections_of(lost) == []  # no box that looks valid while LOST (the default)
        assert all(r.successful for r in rig.set_params(publish_lost_detection=True))
        flagged = last_tracked_status()
        (det,) = detections_of(flagged)
        assert flagged.state_name == "LOST" and det.results[0].hypothesis.class_id == "target_lost"
        assert math.isclose(det.results[0].hypothesis.score, flagged.score, rel_tol=1e-5)
        assert all(r.successful for r in rig.set_params(publish_lost_detection=False))
        # Leaving LOST takes found_score over found_frames; a new target starts TRACKING and,
        # with lost_score 0, no confidence is low enough to lose it.
        assert all(r.successful for r in rig.set_params(lost_score=0.0))
        assert init_on(rig, frame_with_square(60, 40))[1].success
        assert last_tracked_status().state_name == "TRACKING"
    finally:
        rig.set_params(bypass_threshold=-1.0, lost_score=RIG_LOST_SCORE, publish_lost_detection=False)


def test_thresholds_default_to_the_models_own(rig):
    """-1 (the shipped config file's value) = the checkpoint's threshold; a parameter set to a
    value wins, and setting it back to -1 returns to the model's."""
    store: list = []
    sub = rig.helper.create_subscription(DiagnosticArray, "/diagnostics", store.append, 10)

    def thresholds_shown(ns: str = NS, **expected: float):
        def matches(status) -> bool:
            values = {kv.key: kv.value for kv in status.values}
            return all(values.get(name) == f"{value:.3f}" for name, value in expected.items())
        status = latest_diagnostic(store, ns, matches)
        shown = [{kv.key: kv.value for kv in s.values if kv.key.endswith(("_score", "_threshold"))}
                 for a in store[-3:] for s in a.status if ns in s.name]
        assert status is not None, (expected, shown)

    try:
        thresholds_shown(bypass_threshold=MODEL_BYPASS_THRESHOLD, lost_score=RIG_LOST_SCORE,
                         found_score=MODEL_FOUND_SCORE)
        # started without the config file and with lost_score:=-1 (an integer): all the model's
        thresholds_shown(NS_RELIABLE, bypass_threshold=MODEL_BYPASS_THRESHOLD, lost_score=MODEL_LOST_SCORE,
                         found_score=MODEL_FOUND_SCORE)
        assert all(r.successful for r in rig.set_params(lost_score=-1.0, found_score=0.8))
        thresholds_shown(lost_score=MODEL_LOST_SCORE, found_score=0.8)
        refused = rig.set_params(lost_score=-0.5)[0]
        assert not refused.successful and "the model's own" in refused.reason
        thresholds_shown(lost_score=MODEL_LOST_SCORE)
    finally:
        rig.set_params(lost_score=RIG_LOST_SCORE, found_score=-1.0)
        rig.helper.destroy_subscription(sub)


def test_debug_image_only_when_enabled_and_subscribed(rig):
    received: list = []
    sub = rig.helper.create_subscription(Image, f"{NS}/debug_image", received.append, 10)
    try:
        init_on(rig, frame_with_square(60, 40))
        rig.stream([frame_with_square(60, 40)] * 4, rate_hz=10)
        time.sleep(0.5)
        assert not received  # parameter off
        assert all(r.successful for r in rig.set_params(debug_image=True))
        time.sleep(0.3)
        stamps = rig.stream([frame_with_square(60, 40)] * 4, rate_hz=10)
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert received and received[-1].encoding == "rgb8"
        assert (received[-1].height, received[-1].width) == (H, W)
        assert stamp_to_ns(received[-1].header.stamp) in set(stamps)
    finally:
        rig.set_params(debug_image=False)
        rig.helper.destroy_subscription(sub)


def test_qos_mismatch_is_reported(rig):
    store: list = []
    events: list = []
    sub = rig.helper.create_subscription(DiagnosticArray, "/diagnostics", store.append, 10)
    # A best-effort publisher against the node's RELIABLE image subscription.
    pub = rig.helper.create_publisher(
        CompressedImage, f"{NS_RELIABLE}/image/compressed", QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT),
        event_callbacks=PublisherEventCallbacks(incompatible_qos=events.append))
    try:
        status = latest_diagnostic(
            store, NS_RELIABLE, lambda s: int({kv.key: kv.value for kv in s.values}["incompatible_qos_events"]) > 0,
            timeout_s=10.0)
        assert status is not None
        assert events and events[-1].total_count >= 1
    finally:
        rig.helper.destroy_publisher(pub)
        rig.helper.destroy_subscription(sub)


def test_compressed_images_on_the_reliable_node(rig):
    pub = rig.helper.create_publisher(CompressedImage, f"{NS_RELIABLE}/image/compressed",
                                      QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    try:
        deadline = time.monotonic() + 10
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        frame = frame_with_square(60, 40)
        msgs = []
        for data in (cv2.imencode(".png", frame[:, :, ::-1])[1].tobytes(), b"not an image"):
            msg = CompressedImage(format="png")
            msg.header.stamp = ns_to_stamp(rig.helper.get_clock().now().nanoseconds)
            msg.header.frame_id = "compressed_cam"
            msg.data = data
            pub.publish(msg)
            msgs.append(stamp_to_ns(msg.header.stamp))
            time.sleep(0.3)
        assert rig.reliable_client.wait_for(
            lambda d, s: {stamp_to_ns(x.msg.header.stamp) for x in s} >= set(msgs), 10)
        by_stamp = {stamp_to_ns(x.msg.header.stamp): x.msg for x in rig.reliable_client.snapshot()[1]}
        good, bad = by_stamp[msgs[0]], by_stamp[msgs[1]]
        assert good.last_error == "" and good.header.frame_id == "compressed_cam"
        assert "cannot decode compressed image" in bad.last_error and bad.frames_rejected == 1
        response = rig.reliable_client.init_target(TARGET, msgs[0])
        assert response.success, response.message
    finally:
        rig.helper.destroy_publisher(pub)


def test_abtrack_node_command_passes_ros_args():
    proc = subprocess.run([sys.executable, "-m", "abtrack_ros.cli", "node", "--ros-args", "-p", "device:=tpu"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "device 'tpu' is not valid" in proc.stderr + proc.stdout


@pytest.mark.parametrize("ros_args, expected", [
    (["-p", "checkpoint:=/nonexistent/model.pt"], "checkpoint not found"),
    (["-p", "qos_reliability:=sometimes"], "qos_reliability must be one of"),
    (["-p", "device:=tpu"], "device 'tpu' is not valid"),
    (["-p", "TAMPERED"], "cannot load the tracker model"),
])
def test_node_start_fails_clearly(tmp_path, ros_args, expected):
    if ros_args == ["-p", "TAMPERED"]:
        bad = tmp_path / "tampered.pt"
        bad.write_bytes(b"not a checkpoint" * 100)
        ros_args = ["-p", f"checkpoint:={bad}"]
    proc = subprocess.run(node_command(*ros_args), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert expected in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
