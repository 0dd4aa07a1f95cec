"""sensor_msgs Image / CompressedImage <-> RGB uint8 numpy frames.

The ROS 2 ``cv_bridge`` is used when it is importable and really is the ROS 2 one (PyPI's
``cv-bridge`` and Debian's ``python3-cv-bridge`` are the ROS 1 package); otherwise the package
converts the common encodings itself. Either way the message geometry is validated first, so a
malformed image always ends as :class:`ImageConversionError` with a message saying what is wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import cv2
import numpy as np


class ImageConversionError(ValueError):
    """An image message that cannot be turned into an RGB frame (the reason is the message)."""


@dataclass(frozen=True)
class PixelFormat:
    """Layout of one raw encoding: channels per pixel, bytes per channel, channel order."""

    channels: int
    bytes_per_channel: int
    # cv2.cvtColor code to RGB, None when the channels are already RGB (or mono, handled apart).
    to_rgb: Optional[int]

    @property
    def bytes_per_pixel(self) -> int:
        return self.channels * self.bytes_per_channel


PIXEL_FORMATS: dict[str, PixelFormat] = {
    "rgb8": PixelFormat(3, 1, None),
    "bgr8": PixelFormat(3, 1, cv2.COLOR_BGR2RGB),
    "rgba8": PixelFormat(4, 1, cv2.COLOR_RGBA2RGB),
    "bgra8": PixelFormat(4, 1, cv2.COLOR_BGRA2RGB),
    "mono8": PixelFormat(1, 1, cv2.COLOR_GRAY2RGB),
    "mono16": PixelFormat(1, 2, cv2.COLOR_GRAY2RGB),
}
# mono16 -> 8 bit: full 16-bit range onto 0..255 (65535 -> 255), rounding to nearest.
UINT16_TO_UINT8 = 255.0 / 65535.0


def check_geometry(msg: Any) -> PixelFormat:
    """Validate a raw Image's size fields against its encoding and data; return its format."""
    fmt = PIXEL_FORMATS.get(msg.encoding)
    if fmt is None:
        raise ImageConversionError(
            f"unsupported image encoding '{msg.encoding}' (supported: {', '.join(PIXEL_FORMATS)})"
        )
    if msg.width <= 0 or msg.height <= 0:
        raise ImageConversionError(f"empty image: {msg.width}x{msg.height}")
    row_bytes = msg.width * fmt.bytes_per_pixel
    if msg.step < row_bytes:
        raise ImageConversionError(
            f"step {msg.step} is smaller than width*bytes_per_pixel = {row_bytes} ({msg.encoding})"
        )
    needed = msg.step * msg.height
    if len(msg.data) < needed:
        raise ImageConversionError(
            f"image data has {len(msg.data)} bytes, step*height needs {needed}"
        )
    return fmt


def raw_to_rgb(msg: Any) -> np.ndarray:
    """The package's own conversion of a raw Image to an H x W x 3 RGB uint8 array."""
    fmt = check_geometry(msg)
    buf = np.frombuffer(memoryview(msg.data), dtype=np.uint8, count=msg.step * msg.height)
    rows = buf.reshape(msg.height, msg.step)[:, : msg.width * fmt.bytes_per_pixel]
    if fmt.bytes_per_channel == 2:
        dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
        wide = np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width)
        pixels = np.rint(wide.astype(np.float32) * UINT16_TO_UINT8).astype(np.uint8)
    else:
        pixels = rows.reshape(msg.height, msg.width, fmt.channels)
        if fmt.channels == 1:
            pixels = pixels[:, :, 0]
    if fmt.to_rgb is None:
        return np.ascontiguousarray(pixels)
    return cv2.cvtColor(np.ascontiguousarray(pixels), fmt.to_rgb)


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """Decode a CompressedImage (JPEG, PNG, ...; the format is sniffed from the data) to RGB."""
    data = np.frombuffer(memoryview(msg.data), dtype=np.uint8)
    if data.size == 0:
        raise ImageConversionError("compressed image has no data")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageConversionError(f"cannot decode compressed image (format '{msg.format}')")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_to_image_msg(frame: np.ndarray, header: Any = None) -> Any:
    """Wrap an H x W x 3 RGB uint8 array as a sensor_msgs/Image (rgb8)."""
    from sensor_msgs.msg import Image

    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ImageConversionError(f"expected H x W x 3 uint8 RGB, got {frame.dtype} {frame.shape}")
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(frame.shape[0]), int(frame.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(frame).tobytes()
    return msg


def _load_ros2_cv_bridge() -> Optional[Any]:
    """A working ROS 2 CvBridge, or None (absent, the ROS 1 package, or broken)."""
    try:
        from cv_bridge import CvBridge  # type: ignore[import-not-found]

        bridge = CvBridge()
        if not callable(getattr(bridge, "imgmsg_to_cv2", None)):
            return None
        # The ROS 1 bridge cannot read ROS 2 messages: prove this one can, on a 1x1 probe.
        probe = rgb_to_image_msg(np.array([[[10, 20, 30]]], dtype=np.uint8))
        probe.encoding = "bgr8"
        out = bridge.imgmsg_to_cv2(probe, desired_encoding="rgb8")
        if out.shape != (1, 1, 3) or out[0, 0].tolist() != [30, 20, 10]:
            return None
        return bridge
    except Exception:  # noqa: BLE001 - any failure means: do not use it
        return None


class ImageConverter:
    """Turns incoming image messages into RGB frames, preferring a ROS 2 cv_bridge."""

    def __init__(self, use_cv_bridge: bool = True) -> None:
        self._bridge = _load_ros2_cv_bridge() if use_cv_bridge else None

    @property
    def backend(self) -> str:
        return "cv_bridge" if self._bridge is not None else "builtin"

    def to_rgb(self, msg: Any) -> np.ndarray:
        """Raw Image or CompressedImage -> H x W x 3 RGB uint8; ImageConversionError if unusable."""
        if hasattr(msg, "format") and not hasattr(msg, "encoding"):
            return compressed_to_rgb(msg)
        check_geometry(msg)
        if self._bridge is None:
            return raw_to_rgb(msg)
        try:
            frame = self._bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")
        except Exception as exc:  # noqa: BLE001 - cv_bridge raises its own error types
            raise ImageConversionError(f"cv_bridge could not convert the image: {exc}") from exc
        return np.ascontiguousarray(frame, dtype=np.uint8)
