"""Pure parts of the ROS side: parameters, config file, launch file, frame hand-over, statistics,
diagnostics verdict, drawing and the demo summary. No DDS here."""
from __future__ import annotations

import ast
import math
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from abtrack_ros.ros import params
from abtrack_ros.ros.drawing import TRACKING_COLOUR, draw_result
from abtrack_ros.ros.frames import FrameRecord, FrameStore, TransportLossCounter, sequence_gap, stamp_gap
from abtrack_ros.ros.stats import (
    LEVEL_ERROR,
    LEVEL_OK,
    LEVEL_WARN,
    HealthInputs,
    RateMeter,
    ResultWindow,
    health_verdict,
    percentiles,
    resident_memory_bytes,
)

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- parameters
@pytest.mark.parametrize("name, value", [
    ("device", "cuda:1"), ("device", "auto"), ("bypass_threshold", 0.0), ("bypass_threshold", 1),
    ("qos_reliability", "reliable"), ("qos_depth", 100), ("threads", 0), ("checkpoint", "/x.pt"),
    ("use_sim_time", True), ("lost_score", -1.0), ("bypass_threshold", -1),
])
def test_valid_parameter_values(name, value):
    assert params.validate(name, value) is None


@pytest.mark.parametrize("name, value, reason", [
    ("device", "gpu", "not valid"), ("device", "cuda:", "not valid"),
    ("bypass_threshold", 1.01, "<= 1.0"), ("lost_score", -0.5, "or -1.0 (the model's own)"),
    ("found_score", -1.5, ">= 0.0"),
    ("bypass_threshold", math.nan, "finite"), ("qos_reliability", "often", "one of best_effort, reliable"),
    ("qos_depth", 0, ">= 1"), ("frame_buffer_length", 2.5, "integer"), ("half", "yes", "bool"),
    ("diagnostics_period", 0.0, ">= 0.1"),
])
def test_invalid_parameter_values_have_reasons(name, value, reason):
    message = params.validate(name, value)
    assert message is not None and reason in message and name in message


def test_auto_threads_leave_half_of_the_cores():
    assert [params.auto_threads(n) for n in (None, 1, 2, 3, 8)] == [1, 1, 1, 1, 4]


def test_integers_for_double_parameters_become_doubles():
    assert params.coerce_integer_for_double("bypass_threshold", 1) == 1.0
    assert type(params.coerce_integer_for_double("bypass_threshold", 1)) is float
    assert params.coerce_integer_for_double("bypass_threshold", True) is True  # not a number: rclpy refuses it
    assert type(params.coerce_integer_for_double("qos_depth", 3)) is int
    assert params.coerce_integer_for_double("use_sim_time", 1) == 1  # not ours


def test_runtime_parameters_are_the_documented_ones():
    runtime = {s.name for s in params.PARAMETERS if not s.read_only}
    assert runtime == {"bypass_enabled", "bypass_threshold", "lost_score", "found_score",
                       "publish_lost_detection", "debug_image"}


def test_descriptors_carry_ranges():
    desc = params.ros_descriptor(params.SPECS["bypass_threshold"])
    assert desc.floating_point_range[0].to_value == 1.0 and not desc.read_only
    assert desc.floating_point_range[0].from_value == params.FROM_MODEL  # the model's own
    desc = params.ros_descriptor(params.SPECS["qos_depth"])
    assert desc.integer_range[0].from_value == 1 and desc.read_only


# ---------------------------------------------------------------- config and launch files
def test_config_yaml_lists_every_parameter_with_defaults():
    text = (REPO / "config" / "tracker.yaml").read_text()
    data = yaml.safe_load(text)
    (key,) = data
    assert key.startswith("/**")  # namespaced nodes pick it up
    values = data[key]["ros__parameters"]
    assert set(values) == {s.name for s in params.PARAMETERS}
    for spec in params.PARAMETERS:
        assert values[spec.name] == spec.default and type(values[spec.name]) is type(spec.default), spec.name
        assert params.validate(spec.name, values[spec.name]) is None
        assert f"    {spec.name}:" in text


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == name]


def test_launch_file_structure():
    tree = ast.parse((REPO / "launch" / "tracker.launch.py").read_text())
    declared = {c.args[0].value for c in _calls(tree, "DeclareLaunchArgument")}
    assert declared == {"image_topic", "namespace", "params_file", "checkpoint", "device", "backend", "use_sim_time",
                        "use_compressed", "lifecycle"}
    for call in _calls(tree, "DeclareLaunchArgument"):
        keywords = {k.arg for k in call.keywords}
        assert {"default_value", "description"} <= keywords
    (node,) = _calls(tree, "Node")
    keywords = {k.arg: k.value for k in node.keywords}
    assert keywords["package"].value == "abtrack_ros" and keywords["executable"].value == "tracker_node"
    assert keywords["name"].value == "tracker_node"
    assert {"parameters", "remappings", "namespace"} <= set(keywords)
    used = {c.args[0].value for c in _calls(tree, "LaunchConfiguration")}
    assert declared <= used  # every argument is used
    assert any(isinstance(n, ast.Constant) and n.value == "tracker.yaml" for n in ast.walk(tree))
    assert _calls(tree, "get_package_share_directory")
    # lifecycle:=true: the managed executable, configured at launch and activated from inactive.
    (managed,) = _calls(tree, "LifecycleNode")
    keywords = {k.arg: k.value for k in managed.keywords}
    assert keywords["executable"].value == "tracker_lifecycle_node" and keywords["name"].value == "tracker_node"
    transitions = {c.keywords[-1].value.attr for c in _calls(tree, "ChangeState")}
    assert transitions == {"TRANSITION_CONFIGURE", "TRANSITION_ACTIVATE"}
    (handler,) = _calls(tree, "OnStateTransition")
    assert {k.arg: k.value for k in handler.keywords}["goal_state"].value == "inactive"


@pytest.mark.parametrize("script, entry", [("tracker_node", "main"), ("tracker_lifecycle_node", "lifecycle_main")])
def test_bin_scripts_call_the_node_entry_points(script, entry):
    text = (REPO / "bin" / script).read_text()
    assert text.startswith("#!/usr/bin/env python3")
    assert f"from abtrack_ros.ros.node import {entry}" in text
    assert (REPO / "bin" / script).stat().st_mode & 0o111
    assert f"bin/{script}" in (REPO / "CMakeLists.txt").read_text()


# ---------------------------------------------------------------- frame hand-over
def record(stamp: int, nbytes: int = 10) -> FrameRecord:
    return FrameRecord(msg=SimpleNamespace(data=bytes(nbytes)), stamp_ns=stamp, received_ns=stamp)


def test_store_hands_over_the_newest_and_counts_drops():
    store = FrameStore(buffer_length=3)
    for stamp in (1, 2, 3):
        store.put(record(stamp))
    assert store.take(0.0).stamp_ns == 3
    assert store.dropped == 2 and store.received == 3
    assert store.take(0.0) is None  # nothing new
    store.put(record(4))
    assert store.take(0.0).stamp_ns == 4 and store.dropped == 2


def test_store_ring_buffer_lookup():
    store = FrameStore(buffer_length=3)
    assert store.find(0) is None
    for stamp in (10, 20, 30, 40):
        store.put(record(stamp))
    assert store.find(0).stamp_ns == 40
    assert store.find(20).stamp_ns == 20
    assert store.find(10) is None  # evicted
    assert store.buffered_stamps() == [20, 30, 40]
    with pytest.raises(ValueError):
        FrameStore(0)


def test_store_ring_buffer_is_bounded_in_bytes_and_keeps_the_newest():
    store = FrameStore(buffer_length=10, max_bytes=250)
    for stamp in (1, 2, 3, 4):
        store.put(record(stamp, nbytes=100))
    assert store.buffered_stamps() == [3, 4] and store.buffered_bytes == 200
    store.put(record(5, nbytes=1000))  # larger than the bound alone: still kept, as the newest
    assert store.buffered_stamps() == [5] and store.buffered_bytes == 1000
    assert store.take(0.0).stamp_ns == 5


def test_transport_losses_from_sequence_numbers():
    assert [sequence_gap(None, 5), sequence_gap(5, 6), sequence_gap(5, 9), sequence_gap(9, 2)] == [0, 0, 3, 0]
    counter = TransportLossCounter()
    for publisher, sequence in ((b"a", 1), (b"a", 2), (b"b", 1), (b"a", 5), (b"b", 3), (b"a", 1)):
        counter.observe(publisher, sequence, stamp_ns=0)
    assert counter.lost == 2 + 1  # a: 3 and 4 missing; b: 2 missing; a's restart at 1 counts nothing


def test_transport_losses_from_stamp_gaps_at_a_known_rate():
    period = 1e9 / 30
    assert stamp_gap(None, 0, period, 1.5) == 0 and stamp_gap(0, int(4 * period), None, 1.5) == 0
    assert [stamp_gap(0, int(k * period), period, 1.5) for k in (1, 1.4, 2, 4)] == [0, 0, 1, 3]
    counter = TransportLossCounter(expected_rate_hz=30.0)
    for k in (0, 1, 2, 5, 6):
        counter.observe(None, None, int(k * period))
    assert counter.lost == 2
    assert TransportLossCounter().observe(None, None, 10**12) == 0  # no rate, no sequence: unknown


def test_take_waits_for_a_frame_from_another_thread():
    store = FrameStore(buffer_length=2)
    timer = threading.Timer(0.05, store.put, args=(record(7),))
    timer.start()
    assert store.take(2.0).stamp_ns == 7
    timer.join()


# ---------------------------------------------------------------- statistics and verdict
def test_rate_meter_and_window():
    meter = RateMeter(window_s=1.0)
    assert meter.last() is None and meter.rate(10.0) == 0.0
    for i in range(11):
        meter.tick(10.0 + i * 0.1)
        if i == 5:
            assert meter.rate(10.5) == pytest.approx(6 / 0.5)  # younger than the window: over its age
    assert meter.rate(11.05) == pytest.approx(10.0)
    assert meter.rate(11.55) == pytest.approx(5.0)  # the input stopped: the rate falls at once
    assert meter.rate(13.0) == 0.0  # all ticks out of the window
    assert meter.last() == pytest.approx(11.0)  # the newest tick is still known
    window = ResultWindow(size=3)
    for ms in (1.0, 2.0, 3.0, 100.0):
        window.add(ms, 0.5)
    assert window.latency_percentiles()["p50"] == 3.0  # 1.0 fell out
    assert window.mean_bypass() == 0.5
    assert math.isnan(percentiles([])["p90"])


def health(**kw) -> HealthInputs:
    base = dict(seconds_since_image=0.1, received=30, dropped=0, converted=30, rejected=0, state_name="TRACKING")
    base.update(kw)
    return HealthInputs(**base)


@pytest.mark.parametrize("kw, level, text", [
    ({}, LEVEL_OK, "ok"),
    ({"seconds_since_image": 2.5}, LEVEL_WARN, "no image for 2.5 s"),
    ({"seconds_since_image": None}, LEVEL_WARN, "no image received yet"),
    ({"dropped": 20}, LEVEL_WARN, "falling behind"),
    ({"state_name": "LOST"}, LEVEL_WARN, "target lost"),
    ({"rejected": 30}, LEVEL_ERROR, "all 30 recent images rejected"),
    ({"rejected": 29}, LEVEL_OK, "ok"),
    ({"lost_in_transport": 1}, LEVEL_OK, "ok"),  # 1 of 31 is under the threshold
    ({"lost_in_transport": 10}, LEVEL_WARN, "10 of 40 recent camera frames lost before the node"),
    ({"clock_jumps": 1}, LEVEL_WARN, "stamps jumped back"),
    ({"worker_errors": 1}, LEVEL_ERROR, "1 internal errors in the tracking worker"),
])
def test_health_verdict(kw, level, text):
    got_level, message = health_verdict(health(**kw))
    assert got_level == level and text in message


# ---------------------------------------------------------------- drawing and demo summary
def test_draw_result_marks_box_and_blocks():
    frame = np.zeros((60, 200, 3), np.uint8)
    out = draw_result(frame, [100, 30, 20, 20], 0.8, "TRACKING", [True, False, True])
    assert not out.any(axis=2).all() and frame.sum() == 0  # a copy; the input is untouched
    assert tuple(out[30, 110]) == TRACKING_COLOUR
    assert out[25, 6].sum() > 0 and tuple(out[25, 18]) != tuple(out[25, 6])  # ran vs bypassed cell


def test_demo_summary_figures():
    demo = pytest.importorskip("abtrack_ros.ros.demo", exc_type=ImportError)

    def status(n, blocks, total_ms, state="TRACKING"):
        return SimpleNamespace(state_name=state, blocks_executed=blocks, blocks_total=12, total_ms=total_ms,
                               image_age_ms=total_ms + 5, frames_processed=n, frames_dropped=n, frames_rejected=0)

    truth = np.array([0.0, 0.0, 10.0, 10.0])
    records = [
        demo.DemoFrame(0, None, truth, status(1, 0, 1.0, "IDLE"), 0, None),
        demo.DemoFrame(1, None, truth, status(2, 6, 10.0), 1_000_000_000, [0.0, 0.0, 10.0, 10.0], 0),
        demo.DemoFrame(2, None, None, stamp_ns=500_000_000),  # dropped by the node
        demo.DemoFrame(3, None, truth, status(3, 12, 30.0), 2_000_000_000, [5.0, 0.0, 10.0, 10.0], 1_000_000_000),
    ]
    statuses = [r.status for r in records if r.status is not None]
    s = demo.summarise("test", "checkpoint x.pt", records, camera_messages=8, statuses=statuses[1:])
    assert (s.frames_published, s.frames_processed, s.frames_dropped) == (4, 2, 3)
    # The newest status says 3 processed + 3 dropped: 6 of 8 messages reached the node, and the
    # node sent 3 statuses of which the client got 2.
    assert s.frame_accounting == {"camera_messages": 8, "node_received": 6, "lost_before_node": 2,
                                  "node_statuses": 3, "statuses_received": 2, "lost_after_node": 1}
    assert s.mean_blocks_executed == 9.0 and s.blocks_total == 12
    assert s.mean_iou == pytest.approx((1.0 + 1 / 3) / 2)
    assert s.latency_ms["p50"] == 20.0 and s.processing_fps == pytest.approx(1.0)
    assert s.camera_fps == pytest.approx(2.0)  # frames 1..3 stamped over 1 s


def test_demo_summary_counts_come_from_the_newest_status():
    """Rejected frames after the last tracked one, statuses arriving out of order: the drop and
    reject counts are the node's final ones, the same counters the frame accounting uses."""
    demo = pytest.importorskip("abtrack_ros.ros.demo", exc_type=ImportError)

    def status(processed, dropped, rejected, state="TRACKING"):
        return SimpleNamespace(state_name=state, blocks_executed=5, blocks_total=8, total_ms=5.0,
                               image_age_ms=9.0, frames_processed=processed, frames_dropped=dropped,
                               frames_rejected=rejected)

    truth = np.array([0.0, 0.0, 10.0, 10.0])
    records = [demo.DemoFrame(0, None, truth, status(1, 0, 0), 0, [0.0, 0.0, 10.0, 10.0], 0),
               demo.DemoFrame(1, None, truth, status(2, 1, 0), 10, [0.0, 0.0, 10.0, 10.0], 10)]
    late = [status(2, 1, 1, "LOST"), status(2, 2, 2, "LOST")]
    s = demo.summarise("test", "x.pt", records, camera_messages=7, statuses=[late[1], records[0].status,
                                                                            late[0], records[1].status])
    assert (s.frames_dropped, s.frames_rejected, s.blocks_total) == (2, 2, 8)
    assert s.frame_accounting["node_received"] == 6 and s.frame_accounting["node_statuses"] == 4


def tiny_session(bypass_threshold: float = 0.5, lost_score: float = 0.45, found_score: float = 0.75):
    from abtrack_ros.config import ModelConfig, TrackerConfig
    from abtrack_ros.model import build_model
    from abtrack_ros.ros.session import TrackingSession
    from abtrack_ros.tracking import Tracker

    model = build_model(ModelConfig(depth=2, n_enf=1, template_size=32, search_size=64,
                                    bypass_threshold=bypass_threshold))
    return TrackingSession(Tracker(model, TrackerConfig(lost_score=lost_score, found_score=found_score)))


def test_session_settings_take_the_models_own_at_minus_one():
    session = tiny_session(bypass_threshold=0.6, lost_score=0.2, found_score=0.7)
    model_own = {"bypass_threshold": 0.6, "lost_score": 0.2, "found_score": 0.7}
    assert session.settings() == pytest.approx(model_own)
    session.configure(bypass_threshold=0.9, lost_score=0.0, found_score=0.5)
    assert session.settings() == pytest.approx({"bypass_threshold": 0.9, "lost_score": 0.0, "found_score": 0.5})
    session.configure(lost_score=params.FROM_MODEL)  # one back to the model's, the others stay
    assert session.settings() == pytest.approx({"bypass_threshold": 0.9, "lost_score": 0.2, "found_score": 0.5})
    session.configure(bypass_threshold=params.FROM_MODEL, found_score=params.FROM_MODEL)
    assert session.settings() == pytest.approx(model_own)
    session.configure(lost_score=0.8)  # found_score as it acts: never below lost_score
    assert session.settings() == pytest.approx({"bypass_threshold": 0.6, "lost_score": 0.8, "found_score": 0.8})


def test_session_never_tracks_an_image_older_than_its_newest_image():
    """The worker may hold an older frame when an init lands: that frame gets no box."""
    from abtrack_ros.ros.session import STATE_IDLE, Step

    session = tiny_session()
    frame = np.random.default_rng(0).integers(0, 255, size=(60, 80, 3), dtype=np.uint8)
    assert session.track(frame, 5) == Step() and session.state_name == STATE_IDLE
    target = session.initialize(frame, [20.0, 20.0, 16.0, 12.0], stamp_ns=1_000)
    early = session.track(frame, 999)
    assert early.result is None and early.target_id == target and "older" in early.skipped
    step = session.track(frame, 1_000)
    assert step.result is not None and step.target_id == target and step.skipped == ""
    with pytest.raises(ValueError):
        session.initialize(frame, [float("nan"), 0.0, 5.0, 5.0], stamp_ns=2_000)
    assert session.track(frame, 1_500).target_id == target  # the failed init changed nothing
    assert session.track(frame, 1_200).result is None  # older than the newest tracked image


def test_session_drops_the_target_when_the_clock_jumps_back():
    from abtrack_ros.ros.session import CLOCK_JUMP_BACK_NS, STATE_IDLE

    session = tiny_session()
    frame = np.random.default_rng(1).integers(0, 255, size=(60, 80, 3), dtype=np.uint8)
    session.initialize(frame, [20.0, 20.0, 16.0, 12.0], stamp_ns=5 * CLOCK_JUMP_BACK_NS)
    assert session.track(frame, 6 * CLOCK_JUMP_BACK_NS).result is not None
    jump = session.track(frame, 4 * CLOCK_JUMP_BACK_NS)  # 2 s back: a bag loop
    assert jump.clock_jump and jump.result is None and "jumped back" in jump.skipped
    assert session.state_name == STATE_IDLE and jump.target_id == ""
    session.initialize(frame, [20.0, 20.0, 16.0, 12.0], stamp_ns=4 * CLOCK_JUMP_BACK_NS)
    assert session.track(frame, 4 * CLOCK_JUMP_BACK_NS + 1).result is not None  # re-init works


def test_session_rejects_a_frame_of_another_size_and_keeps_the_target():
    session = tiny_session()
    frame = np.random.default_rng(2).integers(0, 255, size=(60, 80, 3), dtype=np.uint8)
    session.initialize(frame, [20.0, 20.0, 16.0, 12.0], stamp_ns=1)
    box_before = session._tracker.box
    with pytest.raises(ValueError, match="initialised on a 80x60 image"):
        session.track(np.zeros((1, 1, 3), np.uint8), 2)
    np.testing.assert_array_equal(session._tracker.box, box_before)
    assert session.track(frame, 3).result.box[2] > 1.0


def test_resident_memory_is_read_on_linux():
    rss = resident_memory_bytes()
    assert rss is None or 10 * 2**20 < rss < 64 * 2**30
