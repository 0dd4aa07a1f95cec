"""The tracker node's ROS parameters: one table of specs, declared once, validated by pure code.

`PARAMETERS` is the single source of names, defaults, descriptions, ranges and whether a change
needs a restart (read_only). config/tracker.yaml and docs/ros.md list the same parameters; a
test checks the YAML against this table.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import Any, Optional, Union

from abtrack_ros.config import BACKEND_NAMES

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
QOS_RELIABILITIES = ("best_effort", "reliable")

Value = Union[bool, int, float, str]
# A threshold parameter at this value takes the model's own setting from its checkpoint (a refitted
# model ships its thresholds with its confidence weights; a fixed node default would override them).
FROM_MODEL = -1.0


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: default (its type is the parameter's type), description, limits."""

    name: str
    default: Value
    description: str
    read_only: bool = True
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: Optional[tuple[str, ...]] = None
    pattern: Optional[re.Pattern[str]] = None
    from_model: bool = False  # FROM_MODEL (the default) = the checkpoint's value


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("checkpoint", "", "Model checkpoint file (.pt); empty = the package's default model."),
    ParamSpec("device", "auto", "Torch device: auto (cuda if available), cpu, cuda or cuda:N.",
              pattern=DEVICE_PATTERN),
    ParamSpec("half", False, "Run the model in float16 (CUDA only)."),
    ParamSpec("backend", "auto",
              "Inference backend: auto (tensorrt on CUDA when installed, else torch; onnxruntime on CPU "
              "when installed, else torch), torch, onnxruntime (CPU) or tensorrt (CUDA).", choices=BACKEND_NAMES),
    ParamSpec("bypass_enabled", True, "Let the bypass decision modules skip blocks.",
              read_only=False),
    ParamSpec("bypass_threshold", FROM_MODEL,
              "A block is skipped when its bypass probability exceeds this, 0..1; -1 = the model's "
              "own (0.5 for the default model).",
              read_only=False, minimum=0.0, maximum=1.0, from_model=True),
    ParamSpec("lost_score", FROM_MODEL,
              "Confidence below which the target is reported LOST, 0..1; -1 = the model's own "
              "(stored with its confidence weights).",
              read_only=False, minimum=0.0, maximum=1.0, from_model=True),
    ParamSpec("found_score", FROM_MODEL,
              "Confidence (at least lost_score) a LOST target needs on the model's found_frames "
              "frames in a row to be TRACKING again, 0..1; -1 = the model's own.",
              read_only=False, minimum=0.0, maximum=1.0, from_model=True),
    ParamSpec("publish_lost_detection", False,
              "While LOST, also publish the candidate box on detection, with class_id "
              "'target_lost'; false = no detection while LOST.", read_only=False),
    ParamSpec("use_compressed", False, "Subscribe to image/compressed (CompressedImage) instead of image."),
    ParamSpec("qos_reliability", "best_effort",
              "Image subscription reliability: best_effort (sensor data) or reliable.",
              choices=QOS_RELIABILITIES),
    ParamSpec("qos_depth", 1, "Image subscription queue depth (keep-last).", minimum=1, maximum=100),
    ParamSpec("frame_buffer_length", 30,
              "Recent frames kept so init_target can name an older image by its stamp.",
              minimum=1, maximum=1000),
    ParamSpec("frame_buffer_mbytes", 256,
              "Most memory (MiB of image data) the recent-frame buffer may hold; the oldest frames "
              "go first, the newest is always kept.", minimum=1, maximum=65536),
    ParamSpec("service_queue_depth", 100,
              "Requests the init_target and reset services queue before the oldest is dropped.",
              minimum=1, maximum=10000),
    ParamSpec("expected_rate_hz", 0.0,
              "Camera rate used to count frames lost before the node from stamp gaps when the "
              "middleware gives no publication sequence numbers; 0 = unknown (not counted then).",
              minimum=0.0, maximum=1000.0),
    ParamSpec("debug_image", False,
              "Publish debug_image (box, score, executed blocks) when someone subscribes.",
              read_only=False),
    ParamSpec("diagnostics_period", 1.0, "Seconds between /diagnostics messages.",
              minimum=0.1, maximum=60.0),
    ParamSpec("threads", 0,
              "Torch CPU threads; 0 = auto: half of the CPU cores, at least 1 (the rest stays free for "
              "the camera driver, DDS and the executor).", minimum=0, maximum=256),
)
SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}


@dataclass
class NodeParams:
    """Typed current values of all parameters (field names = parameter names)."""

    checkpoint: str
    device: str
    half: bool
    backend: str
    bypass_enabled: bool
    bypass_threshold: float
    lost_score: float
    found_score: float
    publish_lost_detection: bool
    use_compressed: bool
    qos_reliability: str
    qos_depth: int
    frame_buffer_length: int
    frame_buffer_mbytes: int
    service_queue_depth: int
    expected_rate_hz: float
    debug_image: bool
    diagnostics_period: float
    threads: int

    @classmethod
    def from_values(cls, values: dict[str, Value]) -> "NodeParams":
        return cls(**{f.name: values[f.name] for f in fields(cls)})


def auto_threads(cpu_count: Optional[int]) -> int:
    """The torch thread count for ``threads: 0``: half of the cores, at least 1.

    Measured on 2 cores with a 640x480 30 Hz camera process on the same machine (docs/ros.md):
    1 thread processed 100 % of frames with p95 latency 15.5-17.5 ms, 2 threads 100 % with
    17.4-18.7 ms: the second core is worth more to the camera and DDS than to torch.
    """
    return max(1, (cpu_count or 1) // 2)


def coerce_integer_for_double(name: str, value: Any) -> Any:
    """An integer given for a double parameter as that float (``bypass_threshold: 1`` in YAML or
    ``ros2 param set ... 1``), which rclpy's type check would otherwise refuse; else unchanged."""
    spec = SPECS.get(name)
    if spec is not None and isinstance(spec.default, float) and type(value) is int:
        return float(value)
    return value


def _type_name(value: Value) -> str:
    return {bool: "bool", int: "integer", float: "double", str: "string"}[type(value)]


def validate(name: str, value: Any) -> Optional[str]:
    """Why `value` is not acceptable for parameter `name`, or None when it is."""
    spec = SPECS.get(name)
    if spec is None:
        return None  # not ours (e.g. qos_overrides.*, use_sim_time): rclpy validates those
    expected = type(spec.default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not expected:
        return f"{name} must be a {_type_name(spec.default)}, got {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name} must be finite, got {value}"
    if spec.from_model and value == FROM_MODEL:
        return None
    if spec.minimum is not None and value < spec.minimum:
        if spec.from_model:
            return f"{name} must be >= {spec.minimum} or {FROM_MODEL} (the model's own), got {value}"
        return f"{name} must be >= {spec.minimum}, got {value}"
    if spec.maximum is not None and value > spec.maximum:
        return f"{name} must be <= {spec.maximum}, got {value}"
    if spec.choices is not None and value not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}; got '{value}'"
    if spec.pattern is not None and not spec.pattern.match(value):
        return f"{name} '{value}' is not valid (expected auto, cpu, cuda or cuda:N)"
    return None


def ros_descriptor(spec: ParamSpec) -> Any:
    """rcl_interfaces ParameterDescriptor for a spec (ranges only for numbers)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    desc = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    if spec.choices:
        desc.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.minimum is not None and spec.maximum is not None:
        if isinstance(spec.default, float):
            # The range admits FROM_MODEL; `validate` refuses what lies between it and the minimum.
            lowest = min(spec.minimum, FROM_MODEL) if spec.from_model else spec.minimum
            desc.floating_point_range = [
                FloatingPointRange(from_value=float(lowest), to_value=float(spec.maximum))
            ]
        else:
            desc.integer_range = [
                IntegerRange(from_value=int(spec.minimum), to_value=int(spec.maximum), step=1)
            ]
    return desc
