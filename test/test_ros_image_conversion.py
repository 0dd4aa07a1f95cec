"""Image conversion: every supported encoding, padded rows, 16-bit byte order, malformed messages."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg")
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from abtrack_ros.ros.image_conversion import (  # noqa: E402
    ImageConversionError,
    ImageConverter,
    compressed_to_rgb,
    raw_to_rgb,
    rgb_to_image_msg,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


def raw(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """An Image with `pad` junk bytes after every row."""
    h, w = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels).reshape(h, -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian), step=padded.shape[1])
    msg.data = padded.tobytes()
    return msg


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("encoding, pixels", [
    ("rgb8", RGB),
    ("bgr8", RGB[:, :, ::-1]),
    ("rgba8", np.dstack([RGB, np.full(RGB.shape[:2], 7, np.uint8)])),
    ("bgra8", np.dstack([RGB[:, :, ::-1], np.full(RGB.shape[:2], 7, np.uint8)])),
])
def test_colour_encodings_to_rgb(encoding, pixels, pad):
    out = raw_to_rgb(raw(pixels, encoding, pad))
    assert out.dtype == np.uint8 and out.shape == RGB.shape
    np.testing.assert_array_equal(out, RGB)


@pytest.mark.parametrize("pad", [0, 2])
def test_mono8(pad):
    gray = RGB[:, :, 0]
    out = raw_to_rgb(raw(gray, "mono8", pad))
    np.testing.assert_array_equal(out, np.dstack([gray] * 3))


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, 4])
def test_mono16_byte_order_and_scaling(bigendian, pad):
    wide = np.array([[0, 257, 65535], [32896, 1000, 65280]], dtype=">u2" if bigendian else "<u2")
    out = raw_to_rgb(raw(wide, "mono16", pad, bigendian))
    expected = np.array([[0, 1, 255], [128, 4, 254]], dtype=np.uint8)
    np.testing.assert_array_equal(out[:, :, 0], expected)
    np.testing.assert_array_equal(out[:, :, 2], expected)


def test_wrong_byte_order_flag_changes_result():
    wide = np.array([[1, 65280]], dtype=">u2")
    assert raw_to_rgb(raw(wide, "mono16", bigendian=True))[0, 1, 0] == 254
    assert raw_to_rgb(raw(wide, "mono16", bigendian=False))[0, 1, 0] == 1  # bytes read the other way


def test_round_trip_through_rgb_to_image_msg():
    msg = rgb_to_image_msg(RGB)
    assert (msg.encoding, msg.step, msg.height, msg.width) == ("rgb8", 21, 5, 7)
    np.testing.assert_array_equal(ImageConverter(use_cv_bridge=False).to_rgb(msg), RGB)


@pytest.mark.parametrize("mutate, reason", [
    (lambda m: setattr(m, "encoding", "yuv422"), "unsupported image encoding 'yuv422'"),
    (lambda m: setattr(m, "data", bytes(m.data)[:-1]), "step*height needs"),
    (lambda m: (setattr(m, "height", 0), setattr(m, "data", b"")), "empty image"),
    (lambda m: setattr(m, "width", 0), "empty image"),
    (lambda m: setattr(m, "step", 20), "step 20 is smaller than width*bytes_per_pixel = 21"),
])
def test_malformed_images_raise_clear_errors(mutate, reason):
    msg = rgb_to_image_msg(RGB)
    mutate(msg)
    with pytest.raises(ImageConversionError, match=reason.replace("*", r"\*")):
        ImageConverter(use_cv_bridge=False).to_rgb(msg)


def test_compressed_png_and_jpeg():
    ok, png = cv2.imencode(".png", cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
    assert ok
    msg = CompressedImage(format="png")
    msg.data = png.tobytes()
    np.testing.assert_array_equal(ImageConverter(use_cv_bridge=False).to_rgb(msg), RGB)
    flat = np.full((16, 16, 3), (200, 40, 10), np.uint8)
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(flat, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    msg = CompressedImage(format="jpeg")
    msg.data = jpg.tobytes()
    assert np.abs(compressed_to_rgb(msg).astype(int) - flat).max() <= 4


@pytest.mark.parametrize("data, reason", [(b"", "no data"), (b"garbage bytes", "cannot decode")])
def test_bad_compressed_images(data, reason):
    msg = CompressedImage(format="jpeg")
    msg.data = data
    with pytest.raises(ImageConversionError, match=reason):
        compressed_to_rgb(msg)


def test_rgb_to_image_msg_refuses_non_rgb():
    with pytest.raises(ImageConversionError):
        rgb_to_image_msg(np.zeros((4, 4), np.uint8))


def test_converter_reports_its_backend():
    assert ImageConverter(use_cv_bridge=False).backend == "builtin"
    assert ImageConverter().backend in ("builtin", "cv_bridge")
