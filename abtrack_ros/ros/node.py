"""The ABTrack ROS 2 tracker node (`tracker_node`), plain and managed (lifecycle).

Threading design (see docs/ros.md): subscriptions and services run on a SingleThreadedExecutor
in the main thread and only store or look things up; one dedicated worker thread takes the
newest frame and runs the tracker. (rclpy's MultiThreadedExecutor polls without blocking while a
callback is in flight: on 2 cores that busy main thread let 12-62 % of 640x480 frames reach the
callback; docs/ros.md.) Init/reset requests take the tracker lock the worker holds
per frame, so they are applied between two frames while the services stay responsive.

`TrackerCore` is the part both node types share: the model, the frame store, the counters, the
worker and the ROS interfaces. `TrackerNode` builds and opens it at once; `LifecycleTrackerNode`
builds it on configure, opens it on activate, closes it on deactivate and frees it on cleanup.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection2D

from abtrack_ros.msg import TrackerStatus
from abtrack_ros.ros import params as node_params
from abtrack_ros.ros.dds import use_large_image_profile
from abtrack_ros.ros.drawing import draw_result
from abtrack_ros.ros.frames import FrameRecord, FrameStore, TransportLossCounter, stamp_to_ns
from abtrack_ros.ros.image_conversion import ImageConversionError, ImageConverter, rgb_to_image_msg
from abtrack_ros.ros.messages import STATE_CODES, FrameOutcome, detection_box_xywh, detection_msg, status_msg
from abtrack_ros.ros.session import TrackingSession
from abtrack_ros.tracking import STATE_LOST
from abtrack_ros.ros.stats import HealthInputs, RateMeter, ResultWindow, health_verdict, resident_memory_bytes
from abtrack_ros.srv import InitTarget
from abtrack_ros.tracking import Tracker

NODE_NAME = "tracker_node"
WORKER_POLL_S = 0.1
WORKER_JOIN_S = 5.0
OUTPUT_QOS_DEPTH = 10
SPIN_PERIOD_S = 0.1  # the main loop's wait: how soon a SIGINT/SIGTERM is acted on
MIB = 1 << 20
DIAGNOSTIC_LEVELS = {0: DiagnosticStatus.OK, 1: DiagnosticStatus.WARN, 2: DiagnosticStatus.ERROR}
RUNTIME_SETTINGS = ("bypass_enabled", "bypass_threshold", "lost_score", "found_score")
# Size of the blank frame the model is warmed up on (its first calls allocate and pick kernels).
WARMUP_FRAME_SIDE = 160
RECENT_COUNTERS = ("received", "dropped", "converted", "rejected", "lost_in_transport", "worker_errors",
                   "clock_jumps")


class ModelLoadError(RuntimeError):
    """The tracker model could not be loaded (the node cannot start)."""


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when available, else 'cpu'; other values unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tracker(p: node_params.NodeParams) -> Tracker:
    """The Tracker for the node's parameters; ModelLoadError with a clear reason on failure."""
    from abtrack_ros.model import CheckpointError

    path: Optional[Path] = Path(p.checkpoint).expanduser() if p.checkpoint else None
    if path is not None and not path.exists():
        raise ModelLoadError(f"checkpoint not found (a .pt file or an abtrack export folder): {path}")
    try:
        return Tracker.from_checkpoint(
            path,
            device=resolve_device(p.device),
            half=p.half,
            backend=p.backend,
        )
    except (CheckpointError, ValueError, RuntimeError, OSError, KeyError) as exc:
        where = path if path is not None else "the package default model"
        raise ModelLoadError(f"cannot load the tracker model from {where}: {exc}") from exc


def warm_up(tracker: Tracker) -> None:
    """One init and one step on a blank frame, so the first camera frame pays no start-up cost."""
    frame = np.zeros((WARMUP_FRAME_SIDE, WARMUP_FRAME_SIDE, 3), dtype=np.uint8)
    side = WARMUP_FRAME_SIDE / 4
    tracker.initialize(frame, [side, side, side, side])
    tracker.track(frame)


def set_torch_threads(threads: int) -> int:
    """Apply the `threads` parameter (0 = auto); returns the count in use."""
    import torch

    count = threads if threads > 0 else node_params.auto_threads(os.cpu_count())
    torch.set_num_threads(count)
    return count


class Counters:
    """Frame counters shared by the callbacks, the worker and the diagnostics timer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.converted = 0
        self.rejected = 0
        self.processed = 0
        self.incompatible_qos = 0
        self.worker_errors = 0
        self.clock_jumps = 0
        self.last_error = ""

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def set_error(self, message: str) -> None:
        with self._lock:
            self.last_error = message


def declare_node_parameters(node: Node) -> node_params.NodeParams:
    """Register the parameter callbacks, declare every parameter once (with its descriptor) and
    return their values. Changes go through `apply_parameters` on the node's `params` and `core`."""
    node.add_pre_set_parameters_callback(coerce_parameters)
    # rclpy runs no pre-set callback on start-up values (-p lost_score:=-1, a YAML integer), so
    # integers for double parameters are made doubles here, before rclpy's type check sees them.
    overrides = getattr(node, "_parameter_overrides", {})
    for name, override in list(overrides.items()):
        value = node_params.coerce_integer_for_double(name, override.value)
        if value is not override.value:
            overrides[name] = Parameter(name, value=value)
    node.add_on_set_parameters_callback(
        lambda parameters: apply_parameters(getattr(node, "params", None), getattr(node, "core", None), parameters))
    declared = node.declare_parameters(
        "",
        [(spec.name, spec.default, node_params.ros_descriptor(spec)) for spec in node_params.PARAMETERS],
    )
    return node_params.NodeParams.from_values({p.name: p.value for p in declared})


def coerce_parameters(parameters: list[Parameter]) -> list[Parameter]:
    """rclpy pre-set callback: integers given for double parameters become doubles."""
    return [
        Parameter(p.name, value=node_params.coerce_integer_for_double(p.name, p.value)) for p in parameters
    ]


class TrackerCore:
    """The tracker, its inputs and outputs on one rclpy node; built by the node type that owns it.

    Construction loads and warms the model; `open()` creates the ROS interfaces and starts the
    worker; `close()` stops the worker and destroys the interfaces (the model stays loaded).
    """

    def __init__(self, node: Node, params: node_params.NodeParams) -> None:
        self.node = node
        self.params = params
        self.logger = node.get_logger()
        self.torch_threads = set_torch_threads(params.threads)
        self.device = resolve_device(params.device)
        tracker = load_tracker(params)
        try:
            warm_up(tracker)
        except Exception as exc:  # noqa: BLE001 - any failure here means the model cannot run
            raise ModelLoadError(f"the model failed its warm-up step: {exc}") from exc
        self.weights = tracker.weights_description
        self.backend = tracker.backend.description
        self.session = TrackingSession(tracker)
        self.session.configure(
            bypass_enabled=params.bypass_enabled,
            bypass_threshold=params.bypass_threshold,
            lost_score=params.lost_score,
            found_score=params.found_score,
        )
        self.converter = ImageConverter()
        self.store = FrameStore(params.frame_buffer_length, params.frame_buffer_mbytes * MIB)
        self.losses = TransportLossCounter(params.expected_rate_hz)
        self.counters = Counters()
        self.input_rate = RateMeter()
        self.processing_rate = RateMeter()
        self.results = ResultWindow()
        self._last_tick = dict.fromkeys(RECENT_COUNTERS, 0)
        self._entities: list[tuple[Callable[[Any], Any], Any]] = []  # (destroy function, entity)
        self._stop = threading.Event()
        self._worker: Optional[threading.Thread] = None
        self.image_topic = ""

    # ------------------------------------------------------------------ interfaces
    def open(self) -> None:
        node, p = self.node, self.params
        group = ReentrantCallbackGroup()
        reliability = ReliabilityPolicy.RELIABLE if p.qos_reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
        image_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p.qos_depth, reliability=reliability)
        image_type, image_topic = (CompressedImage, "image/compressed") if p.use_compressed else (Image, "image")
        image_sub = node.create_subscription(
            image_type,
            image_topic,
            self._on_image,
            image_qos,
            callback_group=group,
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_sub_qos),
            qos_overriding_options=QoSOverridingOptions.with_default_policies(),
        )
        self.image_topic = image_sub.topic_name
        self._keep(node.destroy_subscription, image_sub)
        self._keep(node.destroy_subscription, node.create_subscription(
            Detection2D, "init_detection", self._on_init_detection, OUTPUT_QOS_DEPTH, callback_group=group))
        pub_events = PublisherEventCallbacks(incompatible_qos=self._on_incompatible_pub_qos)
        self._detection_pub = self._keep(node.destroy_publisher, node.create_publisher(
            Detection2D, "detection", OUTPUT_QOS_DEPTH, event_callbacks=pub_events))
        self._status_pub = self._keep(node.destroy_publisher, node.create_publisher(
            TrackerStatus, "status", OUTPUT_QOS_DEPTH, event_callbacks=pub_events))
        self._debug_pub = self._keep(node.destroy_publisher, node.create_publisher(
            Image, "debug_image", 1, event_callbacks=pub_events))
        self._diag_pub = self._keep(node.destroy_publisher, node.create_publisher(
            DiagnosticArray, "/diagnostics", OUTPUT_QOS_DEPTH))
        # The default service queue (10) silently drops a burst of requests.
        service_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p.service_queue_depth,
                                 reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        self._keep(node.destroy_service, node.create_service(
            InitTarget, "init_target", self._on_init_target, qos_profile=service_qos, callback_group=group))
        self._keep(node.destroy_service, node.create_service(
            Trigger, "reset", self._on_reset, qos_profile=service_qos, callback_group=group))
        self._keep(node.destroy_timer, node.create_timer(
            p.diagnostics_period, self._publish_diagnostics, callback_group=MutuallyExclusiveCallbackGroup()))
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="abtrack_worker", daemon=True)
        self._worker.start()
        self.logger.info(
            f"tracking on {self.device} ({self.weights}; {self.backend}; {self.torch_threads} torch threads); "
            f"image input '{self.image_topic}' ({p.qos_reliability}, depth {p.qos_depth}); "
            f"image conversion: {self.converter.backend}; thresholds "
            + ", ".join(f"{name} {value:.3f}" for name, value in self.session.settings().items())
        )

    def _keep(self, destroy: Callable[[Any], Any], entity: Any) -> Any:
        self._entities.append((destroy, entity))
        return entity

    def close(self) -> None:
        """Stop the worker, then destroy the interfaces (nothing publishes after this)."""
        self._stop.set()
        self.store.wake()
        if self._worker is not None:
            self._worker.join(timeout=WORKER_JOIN_S)
            self._worker = None
        for destroy, entity in reversed(self._entities):
            destroy(entity)
        self._entities.clear()

    # ------------------------------------------------------------------ inputs
    def _on_image(self, msg: Any, info: Any) -> None:
        stamp_ns = stamp_to_ns(msg.header.stamp)
        publisher = info.get("publisher_gid")
        publisher_id = bytes(publisher["data"]) if isinstance(publisher, dict) and "data" in publisher else None
        self.losses.observe(publisher_id, info.get("publication_sequence_number"), stamp_ns)
        self.store.put(FrameRecord(msg, stamp_ns, time.monotonic_ns()))
        self.input_rate.tick(time.monotonic())

    def _on_incompatible_sub_qos(self, event: Any) -> None:
        self._report_incompatible_qos(f"subscription '{self.image_topic}'", event)

    def _on_incompatible_pub_qos(self, event: Any) -> None:
        self._report_incompatible_qos("an output publisher", event)

    def _report_incompatible_qos(self, what: str, event: Any) -> None:
        self.counters.add(incompatible_qos=1)
        policy = getattr(event.last_policy_kind, "name", event.last_policy_kind)
        self.logger.error(
            f"QoS mismatch on {what}: incompatible {policy} policy with a peer "
            f"({event.total_count} incompatible peers so far); no messages flow between them. "
            "Match the reliability (parameter qos_reliability or qos_overrides.*)."
        )

    # ------------------------------------------------------------------ services
    def _on_init_target(self, request: Any, response: Any) -> Any:
        box = [request.x, request.y, request.width, request.height]
        ok, message, stamp = self._initialize(stamp_to_ns(request.stamp), box)
        response.success, response.message = ok, message
        response.state = STATE_CODES[self.session.state_name]
        if stamp is not None:
            response.image_stamp = stamp
        return response

    def _on_init_detection(self, det: Detection2D) -> None:
        ok, message, _ = self._initialize(stamp_to_ns(det.header.stamp), detection_box_xywh(det))
        # One call site per severity: rclpy refuses a severity change at the same call site.
        if ok:
            self.logger.info(f"init_detection: {message}")
        else:
            self.logger.warning(f"init_detection: {message}")

    def _initialize(self, stamp_ns: int, box: list[float]) -> tuple[bool, str, Optional[TimeMsg]]:
        """Start a target on the buffered frame with this stamp: (success, message, image stamp).

        Any request, however malformed, gets an answer and leaves the current target as it was.
        """
        record = self.store.find(stamp_ns)
        if record is None:
            return False, self._missing_frame_message(stamp_ns), None
        try:
            frame = self.converter.to_rgb(record.msg)
            target_id = self.session.initialize(frame, box, record.stamp_ns)
        except ImageConversionError as exc:
            return False, f"the image for that stamp is unusable: {exc}", None
        except ValueError as exc:  # the tracker checks the box against this image
            return False, f"bad box: {exc}", None
        except Exception as exc:  # noqa: BLE001 - a request must never take the node down
            self.count_internal_error("init", exc)
            return False, f"internal error while initialising: {type(exc).__name__}: {exc}", None
        stamp = record.msg.header.stamp
        message = f"tracking target {target_id} from the image at {stamp.sec}.{stamp.nanosec:09d}"
        self.logger.info(message)
        return True, message, stamp

    def _missing_frame_message(self, stamp_ns: int) -> str:
        stamps = self.store.buffered_stamps()
        if not stamps:
            return f"no image received yet on '{self.image_topic}'"
        return (
            f"no buffered image with stamp {stamp_ns / 1e9:.9f} s (buffer holds "
            f"{len(stamps)} images, {stamps[0] / 1e9:.9f} .. {stamps[-1] / 1e9:.9f} s); "
            "use a zero stamp for the latest image or raise frame_buffer_length"
        )

    def _on_reset(self, _request: Any, response: Any) -> Any:
        if self.session.reset():
            response.success, response.message = True, "target dropped; now idle"
        else:
            response.success, response.message = False, "already idle"
        return response

    def count_internal_error(self, where: str, exc: BaseException) -> None:
        """Log (with traceback), count and report an unexpected exception; the node goes on."""
        self.counters.add(worker_errors=1)
        self.counters.set_error(f"internal error ({where}): {type(exc).__name__}: {exc}")
        self.logger.error(f"internal error ({where}): {traceback.format_exc()}", throttle_duration_sec=2.0)

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while not self._stop.is_set():
            record = self.store.take(WORKER_POLL_S)
            if record is None or self._stop.is_set():
                continue
            try:
                self._process(record)
            except Exception as exc:  # noqa: BLE001 - the worker goes on; the error is counted and reported
                if self._stop.is_set():
                    return  # shutting down: the interfaces may already be gone
                self.count_internal_error("worker", exc)

    def _process(self, record: FrameRecord) -> None:
        start = time.perf_counter()
        outcome = FrameOutcome(header=record.msg.header, state_name=self.session.state_name,
                               blocks_total=self.session.num_blocks)
        frame, step, error = None, None, ""
        try:
            if record.stamp_ns < 0:
                raise ImageConversionError(
                    f"image stamp is negative ({record.msg.header.stamp.sec} s): not a valid time")
            frame = self.converter.to_rgb(record.msg)
            outcome.conversion_ms = 1000.0 * (time.perf_counter() - start)
            self.counters.add(converted=1)
            step = self.session.track(frame, record.stamp_ns)
        except (ImageConversionError, ValueError) as exc:  # unusable image, or one the target cannot use
            self.counters.add(converted=int(frame is None), rejected=1)
            frame, error = None, f"image rejected: {exc}"
            self.logger.warning(error, throttle_duration_sec=2.0)
        except Exception as exc:  # noqa: BLE001 - the worker must survive any one bad frame
            self.count_internal_error("tracking", exc)
            frame, error = None, f"tracking failed: {type(exc).__name__}: {exc}"
        target_id = ""
        if step is not None:
            target_id, error = step.target_id, step.skipped
            if step.clock_jump:
                self.counters.add(clock_jumps=1)
                self.logger.warning(step.skipped, throttle_duration_sec=2.0)
            outcome.state_name = self.session.state_name
        if step is not None and step.result is not None:
            result = step.result
            outcome.state_name, outcome.state_reason = result.state, result.state_reason
            outcome.frames_lost = result.frames_lost
            outcome.score, outcome.raw_score = result.confidence, result.score
            outcome.box_xywh = [float(v) for v in result.box]
            outcome.executed, outcome.bypass_probs = result.executed, result.bypass_probs
            outcome.preprocess_ms = result.timings_ms.get("preprocess", 0.0)
            outcome.model_ms = result.timings_ms.get("model", 0.0)
            outcome.postprocess_ms = result.timings_ms.get("postprocess", 0.0)
        self.counters.set_error(error)
        outcome.total_ms = 1000.0 * (time.perf_counter() - start)
        outcome.last_error = error
        self._publish(outcome, record.stamp_ns, target_id, frame)

    def _publish(self, outcome: FrameOutcome, stamp_ns: int, target_id: str, frame: Any) -> None:
        # Integer nanoseconds: rclpy's Time refuses the negative stamps a hostile publisher can send.
        outcome.image_age_ms = (self.node.get_clock().now().nanoseconds - stamp_ns) / 1e6
        if self._stop.is_set():
            return
        # While LOST the box is a candidate, not the target: a control loop gets no box that looks
        # valid unless it asked for flagged ones.
        lost = outcome.state_name == STATE_LOST
        if outcome.box_xywh is not None and (not lost or self.params.publish_lost_detection):
            self._detection_pub.publish(detection_msg(outcome, target_id))
        if frame is not None:
            self.counters.add(processed=1)
            self.processing_rate.tick(time.monotonic())
            blocks = len(outcome.executed)
            bypassed = (blocks - sum(outcome.executed)) / blocks if blocks else None
            self.results.add(outcome.total_ms, bypassed)
        self._status_pub.publish(status_msg(outcome, self.store.dropped, self.counters.rejected,
                                            self.counters.processed, self.losses.lost))
        if frame is not None and self.params.debug_image and self._debug_pub.get_subscription_count() > 0:
            annotated = draw_result(frame, outcome.box_xywh, outcome.score, outcome.state_name, outcome.executed)
            self._debug_pub.publish(rgb_to_image_msg(annotated, outcome.header))

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        now_s = time.monotonic()
        c = self.counters
        totals = {"received": self.store.received, "dropped": self.store.dropped, "converted": c.converted,
                  "rejected": c.rejected, "lost_in_transport": self.losses.lost,
                  "worker_errors": c.worker_errors, "clock_jumps": c.clock_jumps}
        recent = {k: totals[k] - self._last_tick[k] for k in RECENT_COUNTERS}
        self._last_tick = totals
        last_image = self.input_rate.last()
        level, message = health_verdict(HealthInputs(
            seconds_since_image=None if last_image is None else now_s - last_image,
            state_name=self.session.state_name, **recent,
        ))
        rss = resident_memory_bytes()
        values = {
            "input_rate_hz": f"{self.input_rate.rate(now_s):.2f}",
            "processing_rate_hz": f"{self.processing_rate.rate(now_s):.2f}",
            **{f"latency_{name}_ms": format_ms(v) for name, v in self.results.latency_percentiles().items()},
            "mean_bypass_rate": f"{self.results.mean_bypass():.3f}",
            "frames_received": str(totals["received"]),
            "frames_processed": str(c.processed),
            "frames_dropped": str(totals["dropped"]),
            "frames_rejected": str(totals["rejected"]),
            "frames_lost_in_transport": str(totals["lost_in_transport"]),
            "worker_errors": str(totals["worker_errors"]),
            "clock_jumps": str(totals["clock_jumps"]),
            "incompatible_qos_events": str(c.incompatible_qos),
            "resident_memory_mb": "n/a" if rss is None else f"{rss / MIB:.1f}",
            "frame_buffer_mb": f"{self.store.buffered_bytes / MIB:.1f}",
            "state": self.session.state_name,
            # The thresholds in use: the parameters', or the model's own where a parameter is -1.
            **{name: f"{value:.3f}" for name, value in self.session.settings().items()},
            "device": self.device,
            "torch_threads": str(self.torch_threads),
            "backend": f"{self.backend} ({self.weights}); images: {self.converter.backend}",
            "last_error": c.last_error,
        }
        status = DiagnosticStatus(
            level=DIAGNOSTIC_LEVELS[level],
            name=f"{self.node.get_fully_qualified_name()}: ABTrack tracker",
            message=message,
            hardware_id=self.device,
            values=[KeyValue(key=k, value=v) for k, v in values.items()],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.node.get_clock().now().to_msg()
        self._diag_pub.publish(array)


def format_ms(value: float) -> str:
    """Milliseconds for diagnostics; 'n/a' before the first processed frame."""
    return "n/a" if np.isnan(value) else f"{value:.2f}"


class TrackerNode(Node):
    """Subscribes images, tracks one target, publishes detection/status/diagnostics; starts at once."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.core: Optional[TrackerCore] = None
        self.params = declare_node_parameters(self)
        self.core = TrackerCore(self, self.params)
        self.core.open()

    def stop(self) -> None:
        """Stop the worker and the interfaces (before destroy_node)."""
        self.core.close()


class LifecycleTrackerNode(LifecycleNode):
    """The managed variant: configure loads and warms the model, activate opens the topics and
    services and starts the worker, deactivate stops them, cleanup frees the model."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.core: Optional[TrackerCore] = None
        self.params = declare_node_parameters(self)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.core = TrackerCore(self, self.params)
        except ModelLoadError as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.core.open()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.core.close()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.core = None  # the model, the frame buffer and their memory go with it
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop()
        return TransitionCallbackReturn.SUCCESS

    def stop(self) -> None:
        if self.core is not None:
            self.core.close()
            self.core = None


def apply_parameters(
    values: Optional[node_params.NodeParams], core: Optional[TrackerCore], parameters: list[Parameter]
) -> SetParametersResult:
    """The nodes' on-set-parameters callback: validate all, then record the new values (the core
    reads the same NodeParams) and apply run-time settings to a loaded model between two frames.
    ``values`` is None while the parameters are being declared."""
    for param in parameters:
        reason = node_params.validate(param.name, param.value)
        if reason is not None:
            return SetParametersResult(successful=False, reason=reason)
    if values is not None:
        for param in parameters:
            if hasattr(values, param.name):
                setattr(values, param.name, param.value)
    changes = {p.name: p.value for p in parameters if p.name in RUNTIME_SETTINGS}
    if core is not None and changes:
        core.session.configure(**changes)
    return SetParametersResult(successful=True)


def run(make_node: Callable[[], Node], argv: Optional[list[str]] = None) -> int:
    """Spin a node until SIGINT/SIGTERM; 1 (with a fatal log line) when it cannot start.

    The signals are handled here, not by rclpy: rclpy's handler shuts the context down while the
    worker may be publishing (tracebacks, and 'failed to initialize wait set' exits). Here the
    signal only sets a flag; the worker is stopped before the interfaces, the node and the context.
    """
    profile = use_large_image_profile()
    rclpy.init(args=sys.argv if argv is None else argv, signal_handler_options=SignalHandlerOptions.NO)
    logger = rclpy.logging.get_logger(NODE_NAME)
    logger.info(f"Fast DDS profile: {profile or 'not used (another middleware)'}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        node = make_node()
    except (ModelLoadError, ParameterException) as exc:
        logger.fatal(f"tracker_node cannot start: {exc}")
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok():
            try:
                executor.spin_once(timeout_sec=SPIN_PERIOD_S)
            except ExternalShutdownException:
                break
            except Exception as exc:  # noqa: BLE001 - a failing callback must not end the node
                if node.core is None:
                    logger.error(f"a callback failed: {traceback.format_exc()}")
                else:
                    node.core.count_internal_error("callback", exc)
    finally:
        node.stop()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """`tracker_node`: the plain node, active as soon as the model is loaded."""
    return run(TrackerNode, argv)


def lifecycle_main(argv: Optional[list[str]] = None) -> int:
    """`tracker_lifecycle_node`: the managed node, driven by lifecycle_msgs services."""
    return run(LifecycleTrackerNode, argv)


if __name__ == "__main__":
    sys.exit(main())
