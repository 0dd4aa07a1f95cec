"""Building the node's output messages from tracking results (headers always copied verbatim)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from vision_msgs.msg import Detection2D, ObjectHypothesisWithPose

from abtrack_ros.msg import TrackerStatus
from abtrack_ros.tracking import STATE_LOST

TARGET_CLASS_ID = "target"
# class_id of a detection published while LOST (parameter publish_lost_detection): the box is the
# tracker's best candidate, not the target.
LOST_CLASS_ID = "target_lost"
STATE_CODES = {
    "IDLE": TrackerStatus.STATE_IDLE,
    "TRACKING": TrackerStatus.STATE_TRACKING,
    "LOST": TrackerStatus.STATE_LOST,
}


@dataclass
class FrameOutcome:
    """Everything published about one processed frame."""

    header: Any
    state_name: str
    state_reason: str = ""
    frames_lost: int = 0
    score: float = 0.0  # the confidence of the box
    raw_score: float = 0.0  # the model's raw peak score
    box_xywh: Optional[list[float]] = None
    executed: list[bool] = field(default_factory=list)
    bypass_probs: list[float] = field(default_factory=list)
    blocks_total: int = 0
    conversion_ms: float = 0.0
    preprocess_ms: float = 0.0
    model_ms: float = 0.0
    postprocess_ms: float = 0.0
    total_ms: float = 0.0
    image_age_ms: float = 0.0
    last_error: str = ""


def detection_msg(outcome: FrameOutcome, target_id: str) -> Detection2D:
    """vision_msgs 4.x Detection2D: bbox centre/size in pixels, one hypothesis scored by the
    confidence: class 'target', or 'target_lost' for a LOST frame's candidate."""
    if outcome.box_xywh is None:
        raise ValueError("a detection needs a box")
    x, y, w, h = (float(v) for v in outcome.box_xywh)
    det = Detection2D()
    det.header = outcome.header
    det.id = target_id
    det.bbox.center.position.x = x + w / 2.0
    det.bbox.center.position.y = y + h / 2.0
    det.bbox.center.theta = 0.0
    det.bbox.size_x = w
    det.bbox.size_y = h
    hyp = ObjectHypothesisWithPose()
    hyp.hypothesis.class_id = LOST_CLASS_ID if outcome.state_name == STATE_LOST else TARGET_CLASS_ID
    hyp.hypothesis.score = float(outcome.score)
    det.results = [hyp]
    return det


def detection_box_xywh(det: Detection2D) -> list[float]:
    """[x, y, w, h] (top-left corner) of a Detection2D's bbox."""
    w, h = float(det.bbox.size_x), float(det.bbox.size_y)
    return [float(det.bbox.center.position.x) - w / 2.0, float(det.bbox.center.position.y) - h / 2.0, w, h]


def status_msg(outcome: FrameOutcome, dropped: int, rejected: int, processed: int, lost: int) -> TrackerStatus:
    msg = TrackerStatus()
    msg.header = outcome.header
    msg.state = STATE_CODES[outcome.state_name]
    msg.state_name = outcome.state_name
    msg.state_reason = outcome.state_reason
    msg.frames_lost = int(outcome.frames_lost)
    msg.score = float(outcome.score)
    msg.raw_score = float(outcome.raw_score)
    msg.box = [float(v) for v in outcome.box_xywh or []]
    msg.executed_blocks = [bool(v) for v in outcome.executed]
    msg.bypass_probabilities = [float(v) for v in outcome.bypass_probs]
    msg.blocks_executed = sum(msg.executed_blocks)
    msg.blocks_total = int(outcome.blocks_total)
    msg.conversion_ms = float(outcome.conversion_ms)
    msg.preprocess_ms = float(outcome.preprocess_ms)
    msg.model_ms = float(outcome.model_ms)
    msg.postprocess_ms = float(outcome.postprocess_ms)
    msg.total_ms = float(outcome.total_ms)
    msg.image_age_ms = float(outcome.image_age_ms)
    msg.frames_dropped = int(dropped)
    msg.frames_rejected = int(rejected)
    msg.frames_processed = int(processed)
    msg.frames_lost_in_transport = int(lost)
    msg.last_error = outcome.last_error
    return msg
