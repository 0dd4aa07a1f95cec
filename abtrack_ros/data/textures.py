"""Appearance for the synthetic generator: procedural textures, recolouring and the source interface.

An appearance source hands out backgrounds and object patches as RGB uint8 arrays. The photo
source (image_sources.py) crops real photographs; :class:`ProceduralSource` is the fallback that
needs no files.
"""
from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

NOISE_OCTAVES = 4
# Coarsest value-noise grid in cells along the shorter side; each octave doubles it.
NOISE_BASE_CELLS = 3
MAX_GRATING_CYCLES = 12.0


class AppearanceSource(Protocol):
    """Where backgrounds and object patches come from."""

    kind: str  # "real" or "procedural", recorded in meta.json

    def background(self, rng: np.random.Generator, width: int, height: int) -> np.ndarray: ...

    def patch(self, rng: np.random.Generator, width: int, height: int) -> np.ndarray: ...


def _value_noise(rng: np.random.Generator, width: int, height: int, channels: int) -> np.ndarray:
    """Multi-octave smooth noise in [0, 1], ``height x width x channels`` float32."""
    out = np.zeros((height, width, channels), np.float32)
    total = 0.0
    aspect = width / height
    for octave in range(NOISE_OCTAVES):
        cells = NOISE_BASE_CELLS * 2**octave
        grid = rng.random((cells, max(2, round(cells * aspect)), channels), dtype=np.float32)
        layer = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        weight = 0.6**octave
        out += layer.reshape(height, width, channels) * weight
        total += weight
    return np.clip(out / total, 0.0, 1.0)


def _grating(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A sinusoidal stripe pattern at a random angle and frequency, in [0, 1]."""
    angle = rng.uniform(0, np.pi)
    cycles = rng.uniform(1.0, MAX_GRATING_CYCLES)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = (xs * np.cos(angle) + ys * np.sin(angle)) / max(width, height)
    return (0.5 + 0.5 * np.sin(2 * np.pi * cycles * phase + rng.uniform(0, 2 * np.pi)))[..., None]


def procedural_texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A coloured texture: smooth noise mixed with stripes, mapped between two random colours."""
    if width < 1 or height < 1:
        raise ValueError(f"texture size must be positive, got {width}x{height}")
    noise = _value_noise(rng, width, height, 3)
    stripes = _grating(rng, width, height)
    mix = rng.uniform(0.0, 0.6)
    pattern = (1 - mix) * noise + mix * stripes
    low, high = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    # Stretch the pattern to full contrast so every texture has visible structure.
    lo, hi = pattern.min(axis=(0, 1)), pattern.max(axis=(0, 1))
    pattern = (pattern - lo) / np.maximum(hi - lo, 1e-6)
    return np.clip(low + (high - low) * pattern, 0, 255).astype(np.uint8)


def recolour(image: np.ndarray, hue_shift_deg: float, value_scale: float = 1.0) -> np.ndarray:
    """Rotate the hue of an RGB image (and scale its brightness): same texture, another colour."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.int32)
    hsv[..., 0] = (hsv[..., 0] + int(round(hue_shift_deg / 2))) % 180  # OpenCV hue is degrees / 2
    hsv[..., 2] = np.clip(hsv[..., 2] * value_scale, 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


SHAPES = ("rect", "ellipse", "blob")
ELLIPSE_VERTICES = 32  # a multiple of 4, so the outline reaches all four sides
BLOB_VERTICES = (7, 13)


def _fit_unit_square(points: np.ndarray) -> np.ndarray:
    """Scale a polygon so it spans exactly [0, 1] on both axes."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    return (points - lo) / np.maximum(hi - lo, 1e-9)


def make_outline(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A polygon (``K x 2``, in [0, 1]) that touches all four sides of its box: rect, ellipse or blob."""
    if kind == "rect":
        return np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    if kind == "ellipse":
        angles = np.arange(ELLIPSE_VERTICES) * 2 * np.pi / ELLIPSE_VERTICES
    elif kind == "blob":  # a star-shaped polygon with random, smoothed radii
        count = int(rng.integers(*BLOB_VERTICES))
        angles = np.sort(rng.uniform(0, 2 * np.pi, count))
        radii = rng.uniform(0.55, 1.0, count)
        radii = (radii + np.roll(radii, 1) + np.roll(radii, -1)) / 3
        return _fit_unit_square(np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1))
    else:
        raise ValueError(f"unknown shape {kind!r}; allowed: {', '.join(SHAPES)}")
    return _fit_unit_square(np.stack([np.cos(angles), np.sin(angles)], axis=1))


def outline_mask(outline: np.ndarray, width: int, height: int) -> np.ndarray:
    """Rasterise a unit-square polygon into a ``height x width`` bool mask spanning the whole box."""
    mask = np.zeros((height, width), np.uint8)
    points = np.round(outline * [width - 1, height - 1]).astype(np.int32)
    cv2.fillPoly(mask, [points], 1)
    return mask.astype(bool)


class ProceduralSource:
    """Backgrounds and patches drawn from :func:`procedural_texture` (no image files needed)."""

    kind = "procedural"

    def background(self, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
        return procedural_texture(rng, width, height)

    def patch(self, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
        return procedural_texture(rng, width, height)
