"""Camera degradations for training crops: low resolution, motion blur and JPEG recompression.

The synthetic frames are clean; real cameras (and the compressed streams a robot sends) are not.
Each function is pure (RGB ``uint8`` in, a new RGB ``uint8`` array of the same shape out);
``degrade`` draws which of them apply, and how strongly, from the pair's own generator.
"""
from __future__ import annotations

import cv2
import numpy as np

# Each degradation applies with this probability to an image chosen for degradation.
STEP_PROB = 0.5
# Downscale factor range of the low-resolution step (the crop is scaled back up to its size).
LOW_RES_FACTOR = (0.35, 0.8)
# Motion-blur kernel length in pixels (odd lengths only: the kernel has a centre pixel).
BLUR_LENGTHS = (3, 5, 7, 9)
# JPEG quality range of the recompression step (OpenCV's 0..100 scale).
JPEG_QUALITY = (25, 85)


def low_resolution(image: np.ndarray, factor: float) -> np.ndarray:
    """Down to ``factor`` of the size (area averaging) and back up (bilinear): lost detail."""
    height, width = image.shape[:2]
    small = cv2.resize(image, (max(1, round(width * factor)), max(1, round(height * factor))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def motion_blur(image: np.ndarray, length: int, angle_deg: float) -> np.ndarray:
    """Linear motion blur: the mean along a ``length``-pixel line at ``angle_deg`` through each pixel."""
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    rotation = cv2.getRotationMatrix2D(((length - 1) / 2.0, (length - 1) / 2.0), angle_deg, 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    kernel /= max(float(kernel.sum()), 1e-6)
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)


def jpeg_recompress(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode as JPEG at ``quality`` and decode again: block and ringing artefacts."""
    bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each of low resolution, motion blur and JPEG recompression with probability STEP_PROB, in
    that order, so that the encoder's artefacts come last as in a camera stream. They act on the
    crop (its zero padding included), not on the whole frame."""
    out = np.ascontiguousarray(image)
    if rng.random() < STEP_PROB:
        out = low_resolution(out, rng.uniform(*LOW_RES_FACTOR))
    if rng.random() < STEP_PROB:
        out = motion_blur(out, int(rng.choice(BLUR_LENGTHS)), rng.uniform(0.0, 180.0))
    if rng.random() < STEP_PROB:
        out = jpeg_recompress(out, int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)))
    return out
