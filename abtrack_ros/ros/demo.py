"""`abtrack demo`: a camera replays a sequence over DDS to the tracker node (its own process),
the demo initialises the target through the init_target service, prints a line per tracked frame
and writes a summary, an annotated video and the executed-blocks plot."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

from abtrack_ros.ros.bag_camera import BagCamera
from abtrack_ros.ros.bags import BagFrame, BagSource
from abtrack_ros.ros.client import BackgroundSpinner, ReplayCamera, TrackerClient
from abtrack_ros.ros.dds import use_large_image_profile
from abtrack_ros.ros.drawing import draw_result
from abtrack_ros.ros.frames import stamp_to_ns
from abtrack_ros.ros.sources import FrameSource, SourceFrame
from abtrack_ros.ros.stats import percentiles
from abtrack_ros.tracking.geometry import iou_xywh

DEMO_NAMESPACE = "/abtrack_demo"
INIT_ATTEMPTS = 20
DRAIN_TIMEOUT_S = 10.0
LIVE_POLL_S = 0.05
NODE_STOP_TIMEOUT_S = 15.0
VIDEO_NAME = "demo.mp4"
PLOT_NAME = "executed_blocks.png"
SUMMARY_NAME = "summary.json"
NODE_LOG_NAME = "node.log"


class DemoError(RuntimeError):
    """The demo could not run (node did not start, init refused, ...)."""


@dataclass
class DemoOptions:
    out_dir: Path
    rate_hz: float = 30.0
    checkpoint: str = ""
    device: str = "auto"
    backend: str = "auto"
    # The camera and this client share the machine with the node: leave them a core.
    threads: int = 1
    node_params: list[str] = field(default_factory=list)  # more "NAME:=VALUE" for the node
    startup_timeout_s: float = 120.0
    quiet: bool = False


@dataclass
class DemoFrame:
    """One published frame and, once processed, what the node said about it."""

    index: int
    frame: np.ndarray
    truth_xywh: Optional[np.ndarray]
    status: object = None  # abtrack_ros/TrackerStatus
    received_ns: int = 0  # when the status arrived here
    box_xywh: Optional[list[float]] = None
    stamp_ns: int = 0  # header stamp the camera gave it


@dataclass
class DemoSummary:
    source: str
    model: str  # the weights the node loaded, as it logged them
    frames_published: int
    frames_processed: int
    frames_dropped: int
    frames_rejected: int
    camera_fps: float  # the rate the camera really published at (frames after the init frame)
    processing_fps: float
    latency_ms: dict[str, float]  # node processing time per frame (status.total_ms)
    image_age_ms: dict[str, float]  # camera stamp -> result published
    mean_blocks_executed: float
    blocks_total: int
    mean_iou: Optional[float]  # against the ground truth, where known
    # Where frames went (from the node's own counters in its newest status): camera messages
    # (init retries included), received by the node's image callback, lost in between, and
    # status messages the node sent vs the ones this client received.
    frame_accounting: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)


def tracked(records: list[DemoFrame]) -> list[DemoFrame]:
    """Frames the node tracked (not the ones it saw while still idle)."""
    return [r for r in records if r.status is not None and r.status.state_name != "IDLE"]


def frame_accounting(camera_messages: int, statuses_received: int, newest_status: object) -> dict[str, int]:
    """Where the camera's messages went, from the node's counters in its newest status."""
    processed, dropped, rejected = (int(newest_status.frames_processed), int(newest_status.frames_dropped),
                                    int(newest_status.frames_rejected)) if newest_status else (0, 0, 0)
    received = processed + dropped + rejected  # every image callback ends in one of the three
    sent = processed + rejected  # one status per frame the worker took
    return {"camera_messages": camera_messages, "node_received": received,
            "lost_before_node": camera_messages - received, "node_statuses": sent,
            "statuses_received": statuses_received, "lost_after_node": sent - statuses_received}


def summarise(source: str, model: str, records: list[DemoFrame], camera_messages: int,
              statuses: list) -> DemoSummary:
    """Figures over the processed frames (pure: no ROS, no files); ``statuses`` are all the
    status messages the client received, ``camera_messages`` all the images it published."""
    done = tracked(records)
    # The node's counters only grow, so the status with the largest sum is the newest (statuses
    # can arrive out of order); the drop/reject counts and the accounting all come from it.
    newest = max(statuses, key=lambda s: s.frames_processed + s.frames_dropped + s.frames_rejected,
                 default=None)
    ious = [float(iou_xywh(np.asarray(r.box_xywh), r.truth_xywh)) for r in done
            if r.box_xywh is not None and r.truth_xywh is not None and np.all(np.isfinite(r.truth_xywh))]
    span_s = (max(r.received_ns for r in done) - min(r.received_ns for r in done)) / 1e9 if done else 0.0
    camera = [r.stamp_ns for r in records[1:]]
    camera_span_s = (camera[-1] - camera[0]) / 1e9 if len(camera) > 1 else 0.0
    return DemoSummary(
        source=source,
        model=model,
        frames_published=len(records),
        frames_processed=len(done),
        frames_dropped=int(newest.frames_dropped) if newest else 0,
        frames_rejected=int(newest.frames_rejected) if newest else 0,
        camera_fps=(len(camera) - 1) / camera_span_s if camera_span_s > 0 else 0.0,
        processing_fps=(len(done) - 1) / span_s if span_s > 0 else 0.0,
        latency_ms=percentiles([r.status.total_ms for r in done]),
        image_age_ms=percentiles([r.status.image_age_ms for r in done]),
        mean_blocks_executed=float(np.mean([r.status.blocks_executed for r in done])) if done else 0.0,
        blocks_total=int(done[-1].status.blocks_total) if done else 0,
        mean_iou=float(np.mean(ious)) if ious else None,
        frame_accounting=frame_accounting(camera_messages, len(statuses), newest),
    )


def live_line(record: DemoFrame) -> str:
    s = record.status
    text = (f"frame {record.index:4d}  {s.state_name:8s} score {s.score:.2f}  "
            f"blocks {s.blocks_executed:2d}/{s.blocks_total}  total {s.total_ms:6.1f} ms  "
            f"age {s.image_age_ms:6.1f} ms")
    if record.box_xywh is not None and record.truth_xywh is not None and np.all(np.isfinite(record.truth_xywh)):
        text += f"  IoU {float(iou_xywh(np.asarray(record.box_xywh), record.truth_xywh)):.2f}"
    return text


class NodeProcess:
    """The tracker node in its own process (like `ros2 run`), logging into a file."""

    def __init__(self, opts: DemoOptions) -> None:
        args = ["-r", f"__ns:={DEMO_NAMESPACE}", "-p", f"device:={opts.device}", "-p", f"backend:={opts.backend}",
                "-p", f"threads:={opts.threads}"]
        for param in opts.node_params:
            args += ["-p", param]
        if opts.checkpoint:
            args += ["-p", f"checkpoint:={opts.checkpoint}"]
        self.log_path = opts.out_dir / NODE_LOG_NAME
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "abtrack_ros.ros.node", "--ros-args", *args],
                                     stdout=self._log, stderr=subprocess.STDOUT)

    def failed(self) -> Optional[str]:
        """The node's log when it has exited, else None."""
        if self.proc.poll() is None:
            return None
        self._log.flush()
        return self.log_path.read_text()

    def model_description(self) -> str:
        """What the node said it loaded ("checkpoint PATH" or the untrained-weights warning)."""
        match = re.search(r"tracking on \S+ \(([^;]*);", self.log_path.read_text())
        return match.group(1) if match else "unknown (see the node log)"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(NODE_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return int(self.proc.returncode)


def isolate_dds() -> None:
    """Keep the demo's DDS traffic on this machine unless the user configured otherwise, and give
    the camera (this process) and the node the profile that carries 640x480 images."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_LOCALHOST_ONLY", "1")  # the same for Humble and older
    use_large_image_profile()


def run_demo(source: FrameSource, opts: DemoOptions) -> DemoSummary:
    """Run the whole demo; raises DemoError when it cannot."""
    import rclpy

    opts.out_dir.mkdir(parents=True, exist_ok=True)
    isolate_dds()
    bag = isinstance(source, BagSource)
    node = NodeProcess(replace(opts, node_params=[*source.node_params, *opts.node_params]) if bag else opts)
    rclpy.init()
    client = TrackerClient(DEMO_NAMESPACE)
    topic = f"{DEMO_NAMESPACE}/image"
    camera = BagCamera(topic, source.recording) if bag else ReplayCamera(topic=topic)
    spinner = BackgroundSpinner(client, camera)
    say = (lambda _text: None) if opts.quiet else print
    try:
        _wait_for_node(node, client, camera, opts.startup_timeout_s)
        frames = iter(source.frames)
        first = next(frames, None)
        if first is None:
            raise DemoError(f"source {source.name} has no frames")
        records: dict[int, DemoFrame] = {}
        stamp = _initialise(client, camera, first, source.first_box)
        records[stamp] = DemoFrame(0, first.frame, _truth(first), stamp_ns=stamp)
        say(f"initialised on frame 0 with box {np.round(source.first_box, 1).tolist()}")
        published = [stamp]

        def on_published(stamp_ns: int, tag: tuple[int, SourceFrame]) -> None:
            index, item = tag
            records[stamp_ns] = DemoFrame(index, item.frame, _truth(item), stamp_ns=stamp_ns)
            published.append(stamp_ns)

        # The camera's own timer paces the frames: a late frame is not followed by a burst
        # (bursts would only overwrite each other in the node's queue).
        done = camera.start_replay(((_published(item), (index, item)) for index, item in enumerate(frames, start=1)),
                                   1.0 / opts.rate_hz, on_published)
        seen = 0
        while not done.wait(LIVE_POLL_S):
            seen = _collect(client, records, seen, say)
        last_stamp = published[-1]
        client.wait_for(lambda d, s: any(stamp_to_ns(x.msg.header.stamp) == last_stamp for x in s),
                        DRAIN_TIMEOUT_S)
        _collect(client, records, seen, say)
    finally:
        spinner.close()
        rclpy.try_shutdown()
        node_rc = node.stop()
    ordered = [records[s] for s in published]
    statuses = [item.msg for item in client.snapshot()[1]]
    summary = summarise(source.name, node.model_description(), ordered, camera.published, statuses)
    summary.outputs = write_outputs(ordered, summary, opts)
    if node_rc != 0:
        raise DemoError(f"the tracker node exited with {node_rc}; see {node.log_path}")
    return summary


def _truth(item: SourceFrame) -> Optional[np.ndarray]:
    if item.truth_xywh is None:
        return None
    return np.asarray(item.truth_xywh, dtype=np.float64)


def _wait_for_node(node: NodeProcess, client: TrackerClient, camera: ReplayCamera | BagCamera,
                   timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not client.wait_for_services(0.5):
        log = node.failed()
        if log is not None:
            raise DemoError(f"the tracker node did not start:\n{log.strip()}")
        if time.monotonic() > deadline:
            raise DemoError(f"the tracker node did not answer within {timeout_s:.0f} s; see {node.log_path}")
    if not camera.wait_for_subscriber(10.0):
        raise DemoError("the tracker node does not subscribe to the camera topic")


def _published(item: SourceFrame) -> Any:
    """What the camera publishes for a frame: a recorded message as it is, else the RGB frame."""
    return item.image if isinstance(item, BagFrame) else item.frame


def _initialise(client: TrackerClient, camera: ReplayCamera | BagCamera, first: SourceFrame,
                box: np.ndarray) -> int:
    """Publish the first frame until the node has it, then init on it; returns its stamp."""
    message = ""
    for _ in range(INIT_ATTEMPTS):
        stamp = camera.publish_frame(_published(first))
        time.sleep(0.1)
        response = client.init_target([float(v) for v in box], stamp)
        if response.success:
            return stamp
        message = response.message
    raise DemoError(f"init_target refused: {message}")


def _collect(client: TrackerClient, records: dict, seen: int, say) -> int:
    """Attach newly received results to their frames (by stamp); print a line per frame. The box
    is the status's: it is there in every state (a LOST frame has no detection, by design)."""
    _, statuses = client.snapshot()
    for item in statuses[seen:]:
        record = records.get(stamp_to_ns(item.msg.header.stamp))
        if record is None or record.status is not None:
            continue
        record.status, record.received_ns = item.msg, item.received_ns
        record.box_xywh = [float(v) for v in item.msg.box] or None
        say(live_line(record))
    return len(statuses)


def write_outputs(records: list[DemoFrame], summary: DemoSummary, opts: DemoOptions) -> dict[str, str]:
    """Annotated video of the processed frames, executed-blocks plot, summary.json."""
    out = opts.out_dir
    outputs = {"video": str(write_video(records, out / VIDEO_NAME, opts.rate_hz)),
               "plot": str(write_blocks_plot(records, summary.blocks_total, out / PLOT_NAME)),
               "summary": str(out / SUMMARY_NAME),
               "node_log": str(out / NODE_LOG_NAME)}
    data = asdict(summary)
    data["outputs"] = outputs
    (out / SUMMARY_NAME).write_text(json.dumps(data, indent=2))
    return outputs


def write_video(records: list[DemoFrame], path: Path, fps: float) -> Path:
    done = tracked(records)
    if not done:
        raise DemoError("no frame was processed: nothing to write")
    height, width = done[0].frame.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():  # no MPEG-4 encoder in this OpenCV build: Motion JPEG always works
        path = path.with_suffix(".avi")
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for r in done:
        s = r.status
        annotated = draw_result(r.frame, r.box_xywh, s.score, s.state_name, list(s.executed_blocks), r.truth_xywh)
        writer.write(cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_blocks_plot(records: list[DemoFrame], blocks_total: int, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = tracked(records)
    fig, ax = plt.subplots(figsize=(8, 3), dpi=100)
    ax.plot([r.index for r in done], [r.status.blocks_executed for r in done], marker=".", lw=1)
    ax.set_xlabel("frame")
    ax.set_ylabel("executed blocks")
    ax.set_ylim(0, max(blocks_total, 1) + 0.5)
    ax.set_title("ABTrack: transformer blocks executed per processed frame")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def format_summary(s: DemoSummary) -> str:
    iou = "n/a (no ground truth)" if s.mean_iou is None else f"{s.mean_iou:.3f}"
    return "\n".join([
        f"source              {s.source}",
        f"model               {s.model}",
        f"frames              {s.frames_published} published, {s.frames_processed} processed, "
        f"{s.frames_dropped} dropped, {s.frames_rejected} rejected",
        f"rates               camera {s.camera_fps:.1f} Hz, processing {s.processing_fps:.1f} FPS",
        "latency (node)      p50 {p50:.1f} / p90 {p90:.1f} / p99 {p99:.1f} ms".format(**s.latency_ms),
        "image age           p50 {p50:.1f} / p90 {p90:.1f} / p99 {p99:.1f} ms".format(**s.image_age_ms),
        f"executed blocks     {s.mean_blocks_executed:.2f} of {s.blocks_total} on average",
        f"mean IoU            {iou}",
        "where they went     {camera_messages} camera messages, {node_received} reached the node "
        "({lost_before_node} lost before it), {statuses_received} of its {node_statuses} statuses "
        "arrived".format(**s.frame_accounting),
        *(f"{name:<20s}{path}" for name, path in s.outputs.items()),
    ])
