"""Recorded data: camera images from a rosbag2 (MCAP or sqlite3) and the tracker's detections
written back into an MCAP rosbag2, with the `rosbags` library.

Messages are (de)serialised by rclpy itself, so what is read is exactly what a camera driver
published (header included) and what is written is exactly what the node would publish.
"""
from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from abtrack_ros.ros.frames import stamp_to_ns
from abtrack_ros.ros.image_conversion import ImageConversionError, ImageConverter
from abtrack_ros.ros.sources import FrameSource, SourceFrame

LOG = logging.getLogger(__name__)

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE)
DETECTION_TOPIC = "/abtrack/detection"
DETECTION_TYPE = "vision_msgs/msg/Detection2D"
DETECTION_BAG_NAME = "detections"
# Packages whose installed .msg files define Detection2D and everything it contains; read from
# the running ROS install, so the MCAP schema (and its RIHS01 hash) is that install's.
DETECTION_DEFINITION_PACKAGES = ("builtin_interfaces", "std_msgs", "geometry_msgs", "vision_msgs")
# Used when a topic has fewer than two messages (no recorded rate to measure).
FALLBACK_RATE_HZ = 30.0


class BagError(ValueError):
    """A rosbag that cannot be used (missing, unreadable, no such topic, not images)."""


@dataclass(frozen=True)
class BagImage:
    """One recorded image message."""

    message: Any  # sensor_msgs Image or CompressedImage, as recorded
    stamp_ns: int  # its header stamp
    log_ns: int  # when the recorder received it (the bag's own timestamp)


@dataclass(frozen=True)
class ImageTopic:
    """An image topic of a bag, checked to exist and to hold images."""

    path: Path
    topic: str
    msgtype: str
    count: int
    start_ns: int  # the bag's first timestamp
    duration_ns: int  # of the whole bag

    @property
    def compressed(self) -> bool:
        return self.msgtype == COMPRESSED_IMAGE_TYPE

    @property
    def rate_hz(self) -> float:
        """Mean recorded rate (approximate: measured over the whole bag's duration)."""
        if self.count < 2 or self.duration_ns <= 0:
            return FALLBACK_RATE_HZ
        return (self.count - 1) / (self.duration_ns / 1e9)


def _open_reader(path: Path) -> Reader:
    if not path.exists():
        raise BagError(f"rosbag not found: {path}")
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, FileNotFoundError) as exc:
        raise BagError(f"cannot read rosbag {path}: {exc}") from None
    return reader


def _describe(topics: dict[str, Any]) -> str:
    return ", ".join(f"{name} ({info.msgtype})" for name, info in sorted(topics.items())) or "none"


def open_image_topic(path: str | Path, topic: Optional[str]) -> ImageTopic:
    """Check that ``topic`` of the bag holds images; None picks the bag's only image topic."""
    path = Path(path)
    reader = _open_reader(path)
    try:
        topics = reader.topics
        if topic is None:
            images = [name for name, info in topics.items() if info.msgtype in IMAGE_TYPES]
            if len(images) != 1:
                raise BagError(f"{path} has {len(images)} image topics, choose one with --topic; "
                               f"its topics: {_describe(topics)}")
            topic = images[0]
        info = topics.get(topic)
        if info is None:
            raise BagError(f"topic {topic} is not in {path}; its topics: {_describe(topics)}")
        if info.msgtype not in IMAGE_TYPES:
            raise BagError(f"topic {topic} of {path} has type {info.msgtype}, not {' or '.join(IMAGE_TYPES)}")
        return ImageTopic(path, topic, info.msgtype, info.msgcount, reader.start_time, reader.duration)
    finally:
        reader.close()


def _message_class(msgtype: str) -> type:
    from sensor_msgs.msg import CompressedImage, Image

    return {IMAGE_TYPE: Image, COMPRESSED_IMAGE_TYPE: CompressedImage}[msgtype]


def read_images(source: ImageTopic, limit: Optional[int] = None) -> Iterator[BagImage]:
    """The topic's messages in recorded order, deserialised by rclpy."""
    from rclpy.serialization import deserialize_message

    message_class = _message_class(source.msgtype)
    reader = _open_reader(source.path)
    try:
        connections = [c for c in reader.connections if c.topic == source.topic]
        for index, (_, log_ns, raw) in enumerate(reader.messages(connections=connections)):
            if limit is not None and index >= limit:
                return
            message = deserialize_message(raw, message_class)
            yield BagImage(message, stamp_to_ns(message.header.stamp), log_ns)
    finally:
        reader.close()


def decoded(images: Iterator[BagImage]) -> Iterator[tuple[np.ndarray, BagImage]]:
    """(RGB frame, image) pairs; an image that cannot be converted is skipped with a warning."""
    converter = ImageConverter()
    for image in images:
        try:
            yield converter.to_rgb(image.message), image
        except ImageConversionError as exc:
            LOG.warning("skipping the image stamped %d ns: %s", image.stamp_ns, exc)


@dataclass
class BagFrame(SourceFrame):
    image: BagImage  # the recorded message, replayed as it is


@dataclass
class BagSource(FrameSource):
    """A bag's image topic for `abtrack demo`: frames with their recorded messages."""

    recording: ImageTopic

    @property
    def node_params(self) -> list[str]:
        """The node reads what the bag holds, and runs on the replayed recording's clock."""
        params = ["use_sim_time:=true"]
        if self.recording.compressed:
            params.append("use_compressed:=true")
        return params


def bag_source(path: str | Path, topic: Optional[str], box: np.ndarray, limit: int) -> BagSource:
    """The first ``limit`` images of a bag's topic; no ground truth."""
    recording = open_image_topic(path, topic)
    frames = (BagFrame(frame, None, image) for frame, image in decoded(read_images(recording, limit)))
    return BagSource(f"bag:{recording.path}:{recording.topic}", box, frames, recording)


def _installed_types(packages: tuple[str, ...]) -> dict[str, Any]:
    """Message definitions (.msg) of installed ROS packages, found through the ament index."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    types: dict[str, Any] = {}
    for package in packages:
        try:
            share = Path(get_package_share_directory(package))
        except PackageNotFoundError:
            raise BagError(f"the message definitions of {package} are not installed (ament index); "
                           "source the ROS environment (scripts/env.sh)") from None
        for msg_file in sorted((share / "msg").glob("*.msg")):
            types.update(get_types_from_msg(msg_file.read_text(), f"{package}/msg/{msg_file.stem}"))
    return types


def _replace_bag(path: Path) -> None:
    """Remove a detections bag of an earlier run (only a rosbag2 folder, nothing else)."""
    if not path.exists():
        return
    if not (path / "metadata.yaml").is_file():
        raise BagError(f"{path} exists and is not a rosbag2 folder: not overwriting it")
    shutil.rmtree(path)


class DetectionBagWriter:
    """An MCAP rosbag2 with one vision_msgs/Detection2D per tracked image on DETECTION_TOPIC,
    logged at the image's own bag time; created on the first write (like the video)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.topic = DETECTION_TOPIC
        self.count = 0
        self.target_id = uuid.uuid4().hex[:12]  # one target per run, as the node has per init
        self._writer: Optional[Writer] = None
        self._connection: Any = None

    def _open(self) -> None:
        typestore = get_typestore(Stores.EMPTY)
        typestore.register(_installed_types(DETECTION_DEFINITION_PACKAGES))
        _replace_bag(self.path)
        self._writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connection = self._writer.add_connection(self.topic, DETECTION_TYPE, typestore=typestore)

    def write(self, image: BagImage, box_xywh: np.ndarray, score: float, state: str) -> None:
        """The Detection2D the node would publish for this image (its header copied verbatim),
        ``score`` the confidence; a LOST frame's candidate is written too, flagged as the node's
        ``publish_lost_detection`` flags it (class_id 'target_lost'), so the bag has every frame."""
        from rclpy.serialization import serialize_message

        from abtrack_ros.ros.messages import FrameOutcome, detection_msg

        if self._writer is None:
            self._open()
        outcome = FrameOutcome(header=image.message.header, state_name=state, score=float(score),
                               box_xywh=[float(v) for v in box_xywh])
        self._writer.write(self._connection, image.log_ns, serialize_message(detection_msg(outcome, self.target_id)))
        self.count += 1

    def close(self) -> Optional[Path]:
        """The bag's folder, or None when nothing was written."""
        if self._writer is None:
            return None
        self._writer.close()
        return self.path
