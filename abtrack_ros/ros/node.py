"""The ABTrack ROS 2 tracker node (`tracker_node`).

Threading design (see docs/ros.md): subscriptions and services run in a ReentrantCallbackGroup
on a MultiThreadedExecutor and only store or look things up; one dedicated worker thread takes
the newest frame and runs the tracker. Init/reset requests take the tracker lock the worker holds
per frame, so they are applied between two frames while the services stay responsive.
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.time import Time
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection2D

from abtrack_ros.msg import TrackerStatus
from abtrack_ros.ros import params as node_params
from abtrack_ros.ros.drawing import draw_result
from abtrack_ros.ros.frames import FrameRecord, FrameStore, stamp_to_ns
from abtrack_ros.ros.image_conversion import ImageConversionError, ImageConverter, rgb_to_image_msg
from abtrack_ros.ros.messages import STATE_CODES, FrameOutcome, detection_box_xywh, detection_msg, status_msg
from abtrack_ros.ros.session import TrackingSession
from abtrack_ros.ros.stats import HealthInputs, RateMeter, ResultWindow, health_verdict
from abtrack_ros.srv import InitTarget
from abtrack_ros.tracking import Tracker

NODE_NAME = "tracker_node"
WORKER_POLL_S = 0.1
OUTPUT_QOS_DEPTH = 10
DIAGNOSTIC_LEVELS = {0: DiagnosticStatus.OK, 1: DiagnosticStatus.WARN, 2: DiagnosticStatus.ERROR}
RUNTIME_SETTINGS = ("bypass_enabled", "bypass_threshold", "lost_score")


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
    if path is not None and not path.is_file():
        raise ModelLoadError(f"checkpoint file not found: {path}")
    try:
        return Tracker.from_checkpoint(
            path,
            device=resolve_device(p.device),
            half=p.half,
            cfg_overrides={"lost_score": p.lost_score},
            backend=p.backend,
        )
    except (CheckpointError, ValueError, RuntimeError, OSError, KeyError) as exc:
        where = path if path is not None else "the package default model"
        raise ModelLoadError(f"cannot load the tracker model from {where}: {exc}") from exc


class Counters:
    """Frame counters shared by the callbacks, the worker and the diagnostics timer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.converted = 0
        self.rejected = 0
        self.processed = 0
        self.incompatible_qos = 0
        self.last_error = ""

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def set_error(self, message: str) -> None:
        with self._lock:
            self.last_error = message


class TrackerNode(Node):
    """Subscribes images, tracks one target, publishes detection/status/diagnostics."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self._session: Optional[TrackingSession] = None
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.params = self._declare_parameters()
        if self.params.threads > 0:
            import torch

            torch.set_num_threads(self.params.threads)
        self.device = resolve_device(self.params.device)
        tracker = load_tracker(self.params)
        self.weights = tracker.weights_description
        self._backend = tracker.backend.description
        self._session = TrackingSession(tracker)
        self._session.configure(
            bypass_enabled=self.params.bypass_enabled,
            bypass_threshold=self.params.bypass_threshold,
            lost_score=self.params.lost_score,
        )

        self._converter = ImageConverter()
        self._store = FrameStore(self.params.frame_buffer_length)
        self._counters = Counters()
        self._input_rate = RateMeter()
        self._processing_rate = RateMeter()
        self._results = ResultWindow()
        self._last_tick = {"received": 0, "dropped": 0, "converted": 0, "rejected": 0}

        self._create_interfaces()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="abtrack_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"tracking on {self.device} ({self.weights}); image input "
            f"'{self._image_sub.topic_name}' ({self.params.qos_reliability}, depth {self.params.qos_depth}); "
            f"image conversion: {self._converter.backend}"
        )

    # ------------------------------------------------------------------ set-up
    def _declare_parameters(self) -> node_params.NodeParams:
        declared = self.declare_parameters(
            "",
            [(spec.name, spec.default, node_params.ros_descriptor(spec)) for spec in node_params.PARAMETERS],
        )
        return node_params.NodeParams.from_values({p.name: p.value for p in declared})

    def _create_interfaces(self) -> None:
        group = ReentrantCallbackGroup()
        p = self.params
        reliability = ReliabilityPolicy.RELIABLE if p.qos_reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
        image_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p.qos_depth, reliability=reliability)
        image_type, image_topic = (CompressedImage, "image/compressed") if p.use_compressed else (Image, "image")
        self._image_sub = self.create_subscription(
            image_type,
            image_topic,
            self._on_image,
            image_qos,
            callback_group=group,
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_sub_qos),
            qos_overriding_options=QoSOverridingOptions.with_default_policies(),
        )
        self.create_subscription(
            Detection2D, "init_detection", self._on_init_detection, OUTPUT_QOS_DEPTH, callback_group=group
        )
        pub_events = PublisherEventCallbacks(incompatible_qos=self._on_incompatible_pub_qos)
        self._detection_pub = self.create_publisher(
            Detection2D, "detection", OUTPUT_QOS_DEPTH, event_callbacks=pub_events
        )
        self._status_pub = self.create_publisher(
            TrackerStatus, "status", OUTPUT_QOS_DEPTH, event_callbacks=pub_events
        )
        self._debug_pub = self.create_publisher(Image, "debug_image", 1, event_callbacks=pub_events)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS_DEPTH)
        self.create_service(InitTarget, "init_target", self._on_init_target, callback_group=group)
        self.create_service(Trigger, "reset", self._on_reset, callback_group=group)
        self.create_timer(
            p.diagnostics_period, self._publish_diagnostics, callback_group=MutuallyExclusiveCallbackGroup()
        )

    # ------------------------------------------------------------------ parameters
    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        for param in parameters:
            reason = node_params.validate(param.name, param.value)
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
        changes = {p.name: p.value for p in parameters if p.name in RUNTIME_SETTINGS}
        if self._session is not None and changes:
            self._session.configure(**changes)
        if self._session is not None:
            for param in parameters:
                if hasattr(self.params, param.name):
                    setattr(self.params, param.name, param.value)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ inputs
    def _on_image(self, msg: Any) -> None:
        self._store.put(FrameRecord(msg, stamp_to_ns(msg.header.stamp), time.monotonic_ns()))
        self._input_rate.tick(time.monotonic())

    def _on_incompatible_sub_qos(self, event: Any) -> None:
        self._report_incompatible_qos(f"subscription '{self._image_sub.topic_name}'", event)

    def _on_incompatible_pub_qos(self, event: Any) -> None:
        self._report_incompatible_qos("an output publisher", event)

    def _report_incompatible_qos(self, what: str, event: Any) -> None:
        self._counters.add(incompatible_qos=1)
        policy = getattr(event.last_policy_kind, "name", event.last_policy_kind)
        self.get_logger().error(
            f"QoS mismatch on {what}: incompatible {policy} policy with a peer "
            f"({event.total_count} incompatible peers so far); no messages flow between them. "
            "Match the reliability (parameter qos_reliability or qos_overrides.*)."
        )

    # ------------------------------------------------------------------ services
    def _on_init_target(self, request: Any, response: Any) -> Any:
        box = [request.x, request.y, request.width, request.height]
        ok, message, stamp = self._initialize(stamp_to_ns(request.stamp), box)
        response.success, response.message = ok, message
        response.state = STATE_CODES[self._session.state_name]
        if stamp is not None:
            response.image_stamp = stamp
        return response

    def _on_init_detection(self, det: Detection2D) -> None:
        ok, message, _ = self._initialize(stamp_to_ns(det.header.stamp), detection_box_xywh(det))
        log = self.get_logger().info if ok else self.get_logger().warning
        log(f"init_detection: {message}")

    def _initialize(self, stamp_ns: int, box: list[float]) -> tuple[bool, str, Optional[TimeMsg]]:
        """Start a target on the buffered frame with this stamp: (success, message, image stamp)."""
        record = self._store.find(stamp_ns)
        if record is None:
            return False, self._missing_frame_message(stamp_ns), None
        try:
            frame = self._converter.to_rgb(record.msg)
            target_id = self._session.initialize(frame, box, record.stamp_ns)
        except ImageConversionError as exc:
            return False, f"the image for that stamp is unusable: {exc}", None
        except ValueError as exc:  # the tracker checks the box against this image
            return False, f"bad box: {exc}", None
        stamp = record.msg.header.stamp
        message = f"tracking target {target_id} from the image at {stamp.sec}.{stamp.nanosec:09d}"
        self.get_logger().info(message)
        return True, message, stamp

    def _missing_frame_message(self, stamp_ns: int) -> str:
        stamps = self._store.buffered_stamps()
        if not stamps:
            return f"no image received yet on '{self._image_sub.topic_name}'"
        return (
            f"no buffered image with stamp {stamp_ns / 1e9:.9f} s (buffer holds "
            f"{len(stamps)} images, {stamps[0] / 1e9:.9f} .. {stamps[-1] / 1e9:.9f} s); "
            "use a zero stamp for the latest image or raise frame_buffer_length"
        )

    def _on_reset(self, _request: Any, response: Any) -> Any:
        if self._session.reset():
            response.success, response.message = True, "target dropped; now idle"
        else:
            response.success, response.message = False, "already idle"
        return response

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while not self._stop.is_set():
            record = self._store.take(WORKER_POLL_S)
            if record is not None:
                self._process(record)

    def _process(self, record: FrameRecord) -> None:
        start = time.perf_counter()
        header = record.msg.header
        outcome = FrameOutcome(header=header, state_name=self._session.state_name,
                               blocks_total=self._session.num_blocks)
        frame = None
        try:
            frame = self._converter.to_rgb(record.msg)
            outcome.conversion_ms = 1000.0 * (time.perf_counter() - start)
            self._counters.add(converted=1)
            result, target_id = self._session.track(frame, record.stamp_ns)
        except ImageConversionError as exc:
            self._counters.add(converted=1, rejected=1)
            self._counters.set_error(f"image rejected: {exc}")
            self.get_logger().warning(f"image rejected: {exc}", throttle_duration_sec=2.0)
            result, target_id = None, ""
        except Exception as exc:  # noqa: BLE001 - the worker must survive any one bad frame
            self._counters.set_error(f"tracking failed: {exc}")
            self.get_logger().error(f"tracking failed on a frame: {exc}", throttle_duration_sec=2.0)
            result, target_id = None, ""
        else:
            self._counters.set_error("")
        if result is not None:
            outcome.state_name = result.state
            outcome.score = result.score
            outcome.box_xywh = [float(v) for v in result.box]
            outcome.executed, outcome.bypass_probs = result.executed, result.bypass_probs
            outcome.preprocess_ms = result.timings_ms.get("preprocess", 0.0)
            outcome.model_ms = result.timings_ms.get("model", 0.0)
            outcome.postprocess_ms = result.timings_ms.get("postprocess", 0.0)
        outcome.total_ms = 1000.0 * (time.perf_counter() - start)
        outcome.last_error = self._counters.last_error
        self._publish(outcome, target_id, frame)

    def _publish(self, outcome: FrameOutcome, target_id: str, frame: Any) -> None:
        image_time = Time.from_msg(outcome.header.stamp, clock_type=self.get_clock().clock_type)
        outcome.image_age_ms = (self.get_clock().now() - image_time).nanoseconds / 1e6
        if outcome.box_xywh is not None:
            self._detection_pub.publish(detection_msg(outcome, target_id))
        if frame is not None:
            self._counters.add(processed=1)
            self._processing_rate.tick(time.monotonic())
            blocks = len(outcome.executed)
            bypassed = (blocks - sum(outcome.executed)) / blocks if blocks else None
            self._results.add(outcome.total_ms, bypassed)
        self._status_pub.publish(
            status_msg(outcome, self._store.dropped, self._counters.rejected, self._counters.processed)
        )
        if frame is not None and self.params.debug_image and self._debug_pub.get_subscription_count() > 0:
            annotated = draw_result(frame, outcome.box_xywh, outcome.score, outcome.state_name, outcome.executed)
            self._debug_pub.publish(rgb_to_image_msg(annotated, outcome.header))

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        now_s = time.monotonic()
        c = self._counters
        totals = {"received": self._store.received, "dropped": self._store.dropped,
                  "converted": c.converted, "rejected": c.rejected}
        recent = {k: totals[k] - self._last_tick[k] for k in totals}
        self._last_tick = totals
        last_image = self._input_rate.last()
        level, message = health_verdict(HealthInputs(
            seconds_since_image=None if last_image is None else now_s - last_image,
            state_name=self._session.state_name, **recent,
        ))
        latency = self._results.latency_percentiles()
        values = {
            "input_rate_hz": f"{self._input_rate.rate(now_s):.2f}",
            "processing_rate_hz": f"{self._processing_rate.rate(now_s):.2f}",
            "latency_p50_ms": f"{latency['p50']:.2f}",
            "latency_p90_ms": f"{latency['p90']:.2f}",
            "latency_p99_ms": f"{latency['p99']:.2f}",
            "mean_bypass_rate": f"{self._results.mean_bypass():.3f}",
            "frames_received": str(totals["received"]),
            "frames_processed": str(c.processed),
            "frames_dropped": str(totals["dropped"]),
            "frames_rejected": str(totals["rejected"]),
            "incompatible_qos_events": str(c.incompatible_qos),
            "state": self._session.state_name,
            "device": self.device,
            "backend": f"{self._backend} ({self.weights}); images: {self._converter.backend}",
            "last_error": c.last_error,
        }
        status = DiagnosticStatus(
            level=DIAGNOSTIC_LEVELS[level],
            name=f"{self.get_fully_qualified_name()}: ABTrack tracker",
            message=message,
            hardware_id=self.device,
            values=[KeyValue(key=k, value=v) for k, v in values.items()],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(array)

    # ------------------------------------------------------------------ shutdown
    def stop(self) -> None:
        """Stop the worker thread (before destroy_node)."""
        self._stop.set()
        self._store.wake()
        self._worker.join(timeout=5.0)


def main(argv: Optional[list[str]] = None) -> int:
    """Run the node until shut down; 1 (with a fatal log line) when it cannot start."""
    rclpy.init(args=sys.argv if argv is None else argv)
    logger = rclpy.logging.get_logger(NODE_NAME)
    try:
        node = TrackerNode()
    except (ModelLoadError, InvalidParameterValueException) as exc:
        logger.fatal(f"tracker_node cannot start: {exc}")
        rclpy.try_shutdown()
        return 1
    executor = MultiThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.stop()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
