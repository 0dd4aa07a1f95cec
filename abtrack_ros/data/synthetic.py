"""Synthetic tracking videos written in the GOT-10k layout (``abtrack synth``).

A textured target moves smoothly over a panning textured background, changing scale and aspect;
similar-looking distractors (the target's texture, recoloured) move around it; an occluder may
pass over it; frames get motion blur, noise and illumination change. Optional absence events: the
target leaves the frame and comes back, or an occluder covers it completely for a while. Everything
is driven by seeded generators per sequence, so the same seed writes the same bytes.
"""
from __future__ import annotations

import dataclasses
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .image_sources import PhotoSource, find_real_images, location_free_name
from .textures import SHAPES, AppearanceSource, ProceduralSource, make_outline, outline_mask, recolour

DEFAULT_SIZE = (320, 240)
REAL_IMAGE_MODES = ("auto", "off")
SPLITS = ("train", "val")
MIN_TARGET_SIDE = 8
MAX_TARGET_FRAME_FRACTION = 0.8  # a target never grows beyond this share of the frame
# A crossing distractor's offset from the target changes by this many target sizes over its
# crossing time: it comes from about that far and goes as far again.
CROSSING_TRAVEL_SIZES = 3.0
SIZE_REVERSION = 0.02  # pulls log scale / aspect back towards the start each frame
CAMERA_MARGIN_FRACTION = 0.15  # background canvas border available for camera panning
JPEG_QUALITY = 92
# Absence events (out of view, full occlusion). They draw from a random stream of their own, so a
# difficulty without events writes exactly the frames it wrote before events existed.
EVENT_KINDS = ("out_of_view", "full_occlusion")
EVENT_STREAM = 1  # extra seed word of the events' random generator
EVENT_WARMUP_FRAMES = 5  # frames before the first event starts: the tracker initialises on a visible target
EVENT_TRANSIT_FRAMES = 8  # frames to leave the view (or be covered) and as many to come back
EVENT_OCCLUDER_MARGIN = 0.15  # the full occluder exceeds the target's largest box by this share a side
EVENTS_SUFFIX = "+events"  # "medium+events": a preset with absence events switched on
EVENT_PRESET = {"out_of_view_prob": 0.5, "full_occlusion_prob": 0.5}
ABSENT_BOX = (-1.0, -1.0, -1.0, -1.0)  # GOT-10k's box for a target outside the image


@dataclass(frozen=True)
class Difficulty:
    """Knobs of the generator; see the presets in :data:`DIFFICULTIES`."""

    target_min_frac: float = 0.12  # target side as a share of the frame's shorter side
    target_max_frac: float = 0.35
    max_speed: float = 0.08  # target speed limit in target sizes per frame
    smoothness: float = 0.85  # velocity memory (0 = jittery, 1 = straight lines)
    scale_change: float = 0.012  # std of the per-frame log-scale step
    aspect_change: float = 0.008  # std of the per-frame log-aspect step
    occlusion_prob: float = 0.4  # chance that an occluder crosses the target's path
    max_distractors: int = 2
    distractor_hue_shift: float = 45.0  # max hue rotation (degrees) of distractors: small = similar
    # Chance that a distractor crosses the target: it moves along the target's path, offset by an
    # amount that passes through zero once (a look-alike walking right past it, behind it).
    distractor_crossing_prob: float = 0.0
    blur_prob: float = 0.15  # chance that a frame gets motion blur
    max_blur: int = 7  # longest blur kernel in pixels
    noise_std: float = 5.0  # Gaussian pixel noise (0..255 scale)
    illumination: float = 0.2  # amplitude of the global brightness change (share)
    camera_speed: float = 1.5  # background pan speed limit in pixels per frame
    out_of_view_prob: float = 0.0  # chance that the target leaves the frame for a while and comes back
    full_occlusion_prob: float = 0.0  # chance that an occluder covers the target completely for a while
    event_min_frames: int = 8  # absence length in frames (clipped to what the sequence leaves room for)
    event_max_frames: int = 25

    def __post_init__(self) -> None:
        checks = {
            "target_min_frac": 0 < self.target_min_frac <= self.target_max_frac <= MAX_TARGET_FRAME_FRACTION,
            "max_speed": self.max_speed >= 0,
            "smoothness": 0 <= self.smoothness < 1,
            "scale_change": self.scale_change >= 0,
            "aspect_change": self.aspect_change >= 0,
            "occlusion_prob": 0 <= self.occlusion_prob <= 1,
            "max_distractors": self.max_distractors >= 0,
            "distractor_hue_shift": 0 <= self.distractor_hue_shift <= 180,
            "distractor_crossing_prob": 0 <= self.distractor_crossing_prob <= 1,
            "blur_prob": 0 <= self.blur_prob <= 1,
            "max_blur": self.max_blur >= 0,
            "noise_std": self.noise_std >= 0,
            "illumination": 0 <= self.illumination < 1,
            "camera_speed": self.camera_speed >= 0,
            "out_of_view_prob": 0 <= self.out_of_view_prob <= 1,
            "full_occlusion_prob": 0 <= self.full_occlusion_prob <= 1,
            "event_min_frames": 1 <= self.event_min_frames <= self.event_max_frames,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid difficulty knobs: {', '.join(bad)} ({self})")


DIFFICULTIES = {
    "easy": Difficulty(
        target_min_frac=0.2, target_max_frac=0.35, max_speed=0.04, smoothness=0.9, scale_change=0.005,
        aspect_change=0.003, occlusion_prob=0.0, max_distractors=0, distractor_hue_shift=90.0,
        blur_prob=0.0, max_blur=0, noise_std=2.0, illumination=0.05, camera_speed=0.5,
    ),
    "medium": Difficulty(),
    "hard": Difficulty(
        target_min_frac=0.07, target_max_frac=0.3, max_speed=0.15, smoothness=0.8, scale_change=0.02,
        aspect_change=0.015, occlusion_prob=0.8, max_distractors=4, distractor_hue_shift=20.0,
        blur_prob=0.35, max_blur=13, noise_std=10.0, illumination=0.35, camera_speed=3.0,
    ),
    # A target among look-alikes: many near-identical copies (hue within 10 degrees, the same
    # outline), most of them crossing right past it; otherwise medium.
    "crowd": Difficulty(max_distractors=8, distractor_hue_shift=10.0, distractor_crossing_prob=0.6),
    # Small targets as seen from a UAV: 3-11 % of the frame's shorter side (11-40 px on a 640x360
    # frame: use --size 640x360), a few similar distractors; otherwise medium.
    "small": Difficulty(target_min_frac=0.03, target_max_frac=0.11, max_distractors=3,
                        distractor_hue_shift=30.0, distractor_crossing_prob=0.3),
}


def resolve_difficulty(difficulty: str | Difficulty) -> tuple[str, Difficulty]:
    """A preset name (optionally ``+events``) or a :class:`Difficulty` -> (label, knobs)."""
    if isinstance(difficulty, Difficulty):
        return "custom", difficulty
    base, events = difficulty.removesuffix(EVENTS_SUFFIX), difficulty.endswith(EVENTS_SUFFIX)
    if base not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r}; allowed: {', '.join(DIFFICULTIES)}, "
                         f"each optionally with {EVENTS_SUFFIX}")
    knobs = DIFFICULTIES[base]
    return difficulty, dataclasses.replace(knobs, **EVENT_PRESET) if events else knobs


# --------------------------------------------------------------------------- pure label helpers
def cover_level(visible_ratio: float) -> int:
    """GOT-10k cover.label: 0 = fully covered, 8 = fully visible, 1..7 in 15 % steps between."""
    if visible_ratio <= 0.0:
        return 0
    if visible_ratio >= 1.0:
        return 8
    return min(7, 1 + int(visible_ratio / 0.15))


# --------------------------------------------------------------------------- motion
def size_path(rng: np.random.Generator, num_frames: int, base_w: float, base_h: float,
              knobs: Difficulty, frame_w: int, frame_h: int) -> np.ndarray:
    """Per-frame ``(w, h)``: mean-reverting random walks of log scale and log aspect."""
    log_scale = np.zeros(num_frames)
    log_aspect = np.zeros(num_frames)
    steps = rng.normal(size=(num_frames, 2)) * (knobs.scale_change, knobs.aspect_change)
    for t in range(1, num_frames):
        log_scale[t] = (1 - SIZE_REVERSION) * log_scale[t - 1] + steps[t, 0]
        log_aspect[t] = (1 - SIZE_REVERSION) * log_aspect[t - 1] + steps[t, 1]
    w = base_w * np.exp(log_scale + log_aspect / 2)
    h = base_h * np.exp(log_scale - log_aspect / 2)
    w = np.clip(w, MIN_TARGET_SIDE, MAX_TARGET_FRAME_FRACTION * frame_w)
    h = np.clip(h, MIN_TARGET_SIDE, MAX_TARGET_FRAME_FRACTION * frame_h)
    return np.stack([w, h], axis=1)


def smooth_walk(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, speed_limit: np.ndarray,
                smoothness: float) -> np.ndarray:
    """Per-frame 2-D points in ``[lo[t], hi[t]]``: a velocity with memory, capped, bouncing off the bounds.

    ``lo``/``hi`` are ``N x 2``, ``speed_limit`` is ``N`` (pixels per frame).
    """
    num_frames = len(lo)
    points = np.zeros((num_frames, 2))
    points[0] = rng.uniform(lo[0], hi[0])
    velocity = rng.normal(size=2) * speed_limit[0] * 0.5
    for t in range(1, num_frames):
        kick = rng.normal(size=2) * speed_limit[t] * 0.5
        velocity = smoothness * velocity + np.sqrt(1 - smoothness**2) * kick
        speed = np.hypot(*velocity)
        if speed > speed_limit[t]:
            velocity *= speed_limit[t] / speed
        point = points[t - 1] + velocity
        velocity[(point < lo[t]) | (point > hi[t])] *= -1  # bounce off the border
        points[t] = np.clip(point, lo[t], hi[t])
    return points


def centre_path(rng: np.random.Generator, sizes: np.ndarray, max_speed: float, smoothness: float,
                frame_w: int, frame_h: int) -> np.ndarray:
    """Per-frame centres keeping boxes of the given sizes inside the frame; speed is in box sizes per frame."""
    half = sizes / 2
    return smooth_walk(rng, half, np.array([frame_w, frame_h]) - half, max_speed * sizes.mean(axis=1), smoothness)


def boxes_from_path(sizes: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Integer-pixel ``[x, y, w, h]`` boxes (the rectangles the renderer fills exactly)."""
    x0 = np.round(centres[:, 0] - sizes[:, 0] / 2)
    y0 = np.round(centres[:, 1] - sizes[:, 1] / 2)
    w = np.maximum(np.round(sizes[:, 0]), 1)
    h = np.maximum(np.round(sizes[:, 1]), 1)
    return np.stack([x0, y0, w, h], axis=1)


# --------------------------------------------------------------------------- absence events
@dataclass(frozen=True)
class Event:
    """A planned absence: the target is out of view or fully covered on frames ``start .. end - 1``.

    It leaves the view (or the occluder slides over it) during the EVENT_TRANSIT_FRAMES frames
    before ``start`` and comes back during as many frames from ``end`` on.
    """

    kind: str  # one of EVENT_KINDS
    start: int
    end: int


def plan_events(rng: np.random.Generator, knobs: Difficulty, num_frames: int) -> list[Event]:
    """The events of one sequence, each in its own time slot after the warm-up frames.

    A sequence too short for all drawn events keeps as many as fit (none when even one does not).
    """
    probs = (knobs.out_of_view_prob, knobs.full_occlusion_prob)
    kinds = [kind for kind, prob in zip(EVENT_KINDS, probs, strict=True) if rng.random() < prob]
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    while kinds and (num_frames - EVENT_WARMUP_FRAMES) // len(kinds) <= 2 * EVENT_TRANSIT_FRAMES:
        kinds.pop()
    events = []
    for i, kind in enumerate(kinds):
        slot = (num_frames - EVENT_WARMUP_FRAMES) // len(kinds)
        room = slot - 2 * EVENT_TRANSIT_FRAMES  # frames left for the absence itself
        duration = min(int(rng.integers(knobs.event_min_frames, knobs.event_max_frames + 1)), room)
        start = EVENT_WARMUP_FRAMES + i * slot + EVENT_TRANSIT_FRAMES + int(rng.integers(0, room - duration + 1))
        events.append(Event(kind, start, start + duration))
    return events


def _nearest_side(box: np.ndarray, frame_w: int, frame_h: int) -> int:
    """The border (0 left, 1 right, 2 top, 3 bottom) the box needs the shortest move to pass."""
    x, y, w, h = box
    return int(np.argmin([x + w, frame_w - x, y + h, frame_h - y]))


def _outside_xy(box: np.ndarray, side: int, frame_w: int, frame_h: int) -> np.ndarray:
    """Top-left corner of ``box`` pushed just beyond one border (kept in place along it)."""
    x, y, w, h = box
    return np.array([(-w, y), (frame_w, y), (x, -h), (x, frame_h)][side], dtype=np.float64)


def leave_view(boxes: np.ndarray, event: Event, frame_w: int, frame_h: int) -> np.ndarray:
    """Target boxes that exit through the nearest border before ``event.start``, stay out until
    ``event.end`` and re-enter through the border nearest to where the original path goes on."""
    out = boxes.copy()
    transit = EVENT_TRANSIT_FRAMES
    exit_side = _nearest_side(boxes[event.start - transit - 1], frame_w, frame_h)
    entry_side = _nearest_side(boxes[event.end + transit - 1], frame_w, frame_h)
    for t in range(event.start - transit, event.end + transit):
        if t < event.end:  # leaving, then out: the share of the way to the outside
            share, side = min(1.0, (t - event.start + transit + 1) / (transit + 1)), exit_side
        else:
            share, side = (event.end + transit - t) / (transit + 1), entry_side
        out[t, :2] = np.round((1 - share) * boxes[t, :2] + share * _outside_xy(boxes[t], side, frame_w, frame_h))
    return out


def covering_boxes(target_boxes: np.ndarray, event: Event, rng: np.random.Generator) -> np.ndarray:
    """Boxes of an occluder that slides onto the target before ``event.start``, contains the target's
    box on every frame until ``event.end`` and slides off again (moving relative to the target)."""
    target_size = target_boxes[event.start : event.end, 2:].max(axis=0)
    # +2 px keeps the target inside despite both centres being rounded to whole pixels.
    size = np.ceil(target_size * (1 + 2 * EVENT_OCCLUDER_MARGIN)) + 2
    speed = (np.hypot(*size) + np.hypot(*target_size)) / 2 / EVENT_TRANSIT_FRAMES  # clear of it after a transit
    arrive, leave = (np.array([np.cos(a), np.sin(a)]) for a in rng.uniform(0, 2 * np.pi, 2))
    t = np.arange(len(target_boxes))
    offsets = np.clip(event.start - t, 0, None)[:, None] * arrive + np.clip(t - event.end + 1, 0, None)[:, None] * leave
    centres = target_boxes[:, :2] + target_boxes[:, 2:] / 2 + speed * offsets
    return boxes_from_path(np.tile(size, (len(t), 1)), centres)


def clip_to_frame(boxes: np.ndarray, frame_w: int, frame_h: int) -> np.ndarray:
    """The part of each box inside the frame; :data:`ABSENT_BOX` where nothing of it is."""
    x0, y0 = np.maximum(boxes[:, 0], 0), np.maximum(boxes[:, 1], 0)
    x1, y1 = np.minimum(boxes[:, 0] + boxes[:, 2], frame_w), np.minimum(boxes[:, 1] + boxes[:, 3], frame_h)
    clipped = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    clipped[(x1 <= x0) | (y1 <= y0)] = ABSENT_BOX
    return clipped


# --------------------------------------------------------------------------- rendering
@dataclass
class Sprite:
    """A textured object: its appearance at a reference size, its shape and per-frame boxes."""

    texture: np.ndarray
    shape: str
    outline: np.ndarray  # unit-square polygon, see textures.make_outline
    boxes: np.ndarray  # N x 4 integer xywh

    def _clipped(self, t: int, frame_w: int, frame_h: int) -> tuple[tuple[int, int, int, int], np.ndarray | None]:
        """The box at ``t`` and its shape mask, both cut to the frame (mask None when off-screen)."""
        x, y, w, h = (int(v) for v in self.boxes[t])
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, frame_w), min(y + h, frame_h)
        if x1 <= x0 or y1 <= y0:
            return (x0, y0, x1, y1), None
        return (x0, y0, x1, y1), outline_mask(self.outline, w, h)[y0 - y : y1 - y, x0 - x : x1 - x]

    def draw(self, frame: np.ndarray, t: int) -> np.ndarray:
        """Paint the sprite into ``frame`` in place and return the full-frame mask it covered."""
        frame_h, frame_w = frame.shape[:2]
        covered = np.zeros((frame_h, frame_w), bool)
        (x0, y0, x1, y1), mask = self._clipped(t, frame_w, frame_h)
        if mask is None:
            return covered
        x, y, w, h = (int(v) for v in self.boxes[t])
        scaled = cv2.resize(self.texture, (w, h), interpolation=cv2.INTER_LINEAR)
        region = frame[y0:y1, x0:x1]
        region[mask] = scaled[y0 - y : y1 - y, x0 - x : x1 - x][mask]
        covered[y0:y1, x0:x1] = mask
        return covered


def motion_blur(frame: np.ndarray, length: int, angle: float) -> np.ndarray:
    """Blur along a direction with a line kernel ``length`` pixels long."""
    if length < 2:
        return frame
    kernel = np.zeros((length, length), np.float32)
    c = (length - 1) / 2
    dx, dy = np.cos(angle) * c, np.sin(angle) * c
    cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1)
    return cv2.filter2D(frame, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


class SequenceRenderer:
    """Plans and renders one synthetic sequence from its own random generators (``rng``; the
    absence events from ``event_rng``, so that they change nothing else)."""

    def __init__(self, rng: np.random.Generator, knobs: Difficulty, source: AppearanceSource,
                 num_frames: int, frame_w: int, frame_h: int, target_rgb: tuple[int, int, int] | None,
                 event_rng: np.random.Generator) -> None:
        self.rng, self.knobs, self.source = rng, knobs, source
        self.num_frames, self.frame_w, self.frame_h = num_frames, frame_w, frame_h
        self.margin = int(CAMERA_MARGIN_FRACTION * min(frame_w, frame_h))
        self.canvas = source.background(rng, frame_w + 2 * self.margin, frame_h + 2 * self.margin)
        self.camera = self._camera_path()
        self.target = self._target(target_rgb)
        self.distractors = [self._distractor() for _ in range(int(rng.integers(0, knobs.max_distractors + 1)))]
        self.occluder = self._occluder() if rng.random() < knobs.occlusion_prob else None
        phase, period = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 2.0) * num_frames
        self.gain = 1 + knobs.illumination * np.sin(2 * np.pi * np.arange(num_frames) / period + phase)
        self.events = plan_events(event_rng, knobs, num_frames)
        self.leaving = np.zeros(num_frames, bool)  # frames where the target may be cut by the border
        for event in self.events:
            if event.kind == "out_of_view":
                self.target.boxes = leave_view(self.target.boxes, event, frame_w, frame_h)
                self.leaving[event.start - EVENT_TRANSIT_FRAMES : event.end + EVENT_TRANSIT_FRAMES] = True
        self.full_occluders = [self._full_occluder(e, event_rng) for e in self.events if e.kind == "full_occlusion"]

    def _camera_path(self) -> np.ndarray:
        """Integer top-left offsets of the frame window on the background canvas."""
        n, span = self.num_frames, 2 * self.margin
        bounds = np.zeros((n, 2)), np.full((n, 2), float(span))
        path = smooth_walk(self.rng, *bounds, np.full(n, self.knobs.camera_speed), self.knobs.smoothness)
        return np.round(path).astype(int)

    def _moving_boxes(self, base_frac: float, aspect: float) -> np.ndarray:
        base = base_frac * min(self.frame_w, self.frame_h)
        sizes = size_path(self.rng, self.num_frames, base * np.sqrt(aspect), base / np.sqrt(aspect),
                          self.knobs, self.frame_w, self.frame_h)
        centres = centre_path(self.rng, sizes, self.knobs.max_speed, self.knobs.smoothness, self.frame_w, self.frame_h)
        return boxes_from_path(sizes, centres)

    def _target(self, target_rgb: tuple[int, int, int] | None) -> Sprite:
        frac = self.rng.uniform(self.knobs.target_min_frac, self.knobs.target_max_frac)
        aspect = float(np.exp(self.rng.uniform(np.log(0.5), np.log(2.0))))
        boxes = self._moving_boxes(frac, aspect)
        ref_w, ref_h = int(boxes[0, 2]), int(boxes[0, 3])
        texture = self.source.patch(self.rng, ref_w, ref_h)
        if target_rgb is not None:  # label-checking mode: one flat, known colour
            texture = np.empty_like(texture)
            texture[:] = target_rgb
        return self._sprite(texture, boxes)

    def _sprite(self, texture: np.ndarray, boxes: np.ndarray, shape: str | None = None) -> Sprite:
        shape = shape or SHAPES[int(self.rng.integers(len(SHAPES)))]
        return Sprite(texture, shape, make_outline(shape, self.rng), boxes)

    def _distractor(self) -> Sprite:
        knobs = self.knobs
        shift = self.rng.uniform(knobs.distractor_hue_shift / 3, knobs.distractor_hue_shift) * self.rng.choice([-1, 1])
        texture = recolour(self.target.texture, shift, self.rng.uniform(0.8, 1.2))
        # Drawn only when the knob is on, so the presets without it keep their random streams.
        if knobs.distractor_crossing_prob > 0 and self.rng.random() < knobs.distractor_crossing_prob:
            return self._sprite(texture, self._crossing_boxes(), self.target.shape)
        frac = self.rng.uniform(knobs.target_min_frac, knobs.target_max_frac)
        ref_h, ref_w = texture.shape[:2]
        return self._sprite(texture, self._moving_boxes(frac, ref_w / ref_h), self.target.shape)

    def _crossing_boxes(self) -> np.ndarray:
        """A path that follows the target's at a drifting offset, zero at one frame in the middle
        part of the sequence: the look-alike passes right by (or over) the target."""
        target = self.target.boxes
        n = self.num_frames
        t_cross = self.rng.uniform(0.2 * n, 0.8 * n)
        duration = max(4.0, self.rng.uniform(0.3, 0.6) * n)
        size = np.sqrt(target[:, 2] * target[:, 3]).mean()
        angle = self.rng.uniform(0, 2 * np.pi)
        along = (np.arange(n) - t_cross) / duration * CROSSING_TRAVEL_SIZES * size
        centres = target[:, :2] + target[:, 2:] / 2 + along[:, None] * np.array([np.cos(angle), np.sin(angle)])
        sizes = np.maximum(target[:, 2:] * self.rng.uniform(0.85, 1.15), MIN_TARGET_SIDE)
        return boxes_from_path(sizes, centres)

    def _occluder(self) -> Sprite:
        """An object that crosses the target's position around a random middle frame."""
        target = self.target.boxes
        n = self.num_frames
        t_mid = int(self.rng.integers(int(0.2 * n), max(int(0.2 * n) + 1, int(0.8 * n))))
        duration = max(6.0, self.rng.uniform(0.15, 0.35) * n)
        w = max(MIN_TARGET_SIDE, target[t_mid, 2] * self.rng.uniform(0.8, 1.8))
        h = max(MIN_TARGET_SIDE, target[t_mid, 3] * self.rng.uniform(0.8, 1.8))
        crossing = target[t_mid, :2] + target[t_mid, 2:] / 2
        angle = self.rng.uniform(0, 2 * np.pi)
        travel = 2.0 * (np.hypot(w, h) + np.hypot(*target[t_mid, 2:]))  # enters and leaves within the window
        along = (np.arange(n) - t_mid) / duration * travel
        centres = crossing + along[:, None] * np.array([np.cos(angle), np.sin(angle)])
        sizes = np.tile([w, h], (n, 1))
        texture = self.source.patch(self.rng, int(round(w)), int(round(h)))
        return self._sprite(texture, boxes_from_path(sizes, centres))

    def _full_occluder(self, event: Event, rng: np.random.Generator) -> Sprite:
        boxes = covering_boxes(self.target.boxes, event, rng)
        texture = self.source.patch(rng, int(boxes[0, 2]), int(boxes[0, 3]))
        return self._sprite(texture, boxes, "rect")  # a rectangle covers every pixel of its box

    def render(self, t: int) -> tuple[np.ndarray, float]:
        """Frame ``t`` (RGB uint8) and the visible share of the target in it."""
        ox, oy = self.camera[t]
        frame = self.canvas[oy : oy + self.frame_h, ox : ox + self.frame_w].copy()
        for distractor in self.distractors:  # behind the target
            distractor.draw(frame, t)
        target_mask = self.target.draw(frame, t)
        visible_ratio = 1.0
        occluders = [o for o in (self.occluder, *self.full_occluders) if o is not None]
        if occluders:
            covered = np.zeros_like(target_mask)
            for occluder in occluders:
                covered |= occluder.draw(frame, t)
            visible_ratio = 1.0 - (covered & target_mask).sum() / max(1, target_mask.sum())
        if self.leaving[t]:  # the share cut off by the frame border (only events take the target there)
            _x, _y, w, h = (int(v) for v in self.target.boxes[t])
            visible_ratio *= target_mask.sum() / outline_mask(self.target.outline, w, h).sum()
        return self._degrade(frame, t), visible_ratio

    def ground_truth(self) -> np.ndarray:
        """Per-frame target boxes as labelled: cut to the frame while leaving or entering the view."""
        boxes = self.target.boxes.copy()
        boxes[self.leaving] = clip_to_frame(boxes[self.leaving], self.frame_w, self.frame_h)
        return boxes

    def _degrade(self, frame: np.ndarray, t: int) -> np.ndarray:
        knobs = self.knobs
        if knobs.max_blur >= 2 and self.rng.random() < knobs.blur_prob:
            motion = self.target.boxes[min(t + 1, self.num_frames - 1), :2] - self.target.boxes[max(t - 1, 0), :2]
            frame = motion_blur(frame, int(self.rng.integers(2, knobs.max_blur + 1)), float(np.arctan2(motion[1], motion[0])))
        out = frame.astype(np.float32)
        out *= np.float32(self.gain[t])
        if knobs.noise_std > 0:
            noise = self.rng.standard_normal(out.shape, dtype=np.float32)
            noise *= np.float32(knobs.noise_std)
            out += noise
        return np.clip(out, 0, 255, out=out).astype(np.uint8)

    def info(self) -> dict:
        return {
            "shape": self.target.shape,
            "distractors": len(self.distractors),
            "occluder": self.occluder is not None,
            "events": [dataclasses.asdict(e) for e in self.events],
        }


# --------------------------------------------------------------------------- writing to disk
def _split_code(split: str) -> int:
    return zlib.crc32(split.encode())  # stable across runs, unlike hash()


def _appearance_source(real_images: str, image_dirs: list[Path] | None) -> tuple[AppearanceSource, list[Path]]:
    photos = find_real_images(image_dirs) if real_images == "auto" else []
    return (PhotoSource(photos) if photos else ProceduralSource()), photos


def _write_lines(path: Path, values: np.ndarray) -> None:
    path.write_text("".join(f"{int(v)}\n" for v in values))


def _prepare_folder(folder: Path, overwrite: bool) -> None:
    if folder.exists() and any(folder.iterdir()):
        if not (folder / "meta.json").is_file():
            raise ValueError(f"{folder} exists and is not a synthetic dataset: refusing to write into it")
        if not overwrite:
            raise ValueError(f"{folder} already holds a synthetic dataset: pass overwrite=True (--overwrite)")
        for seq_dir in folder.iterdir():  # only what a previous run wrote: sequence folders and our files
            if seq_dir.is_dir():
                for file in seq_dir.iterdir():
                    file.unlink()
                seq_dir.rmdir()
            else:
                seq_dir.unlink()
    folder.mkdir(parents=True, exist_ok=True)


def generate_synthetic(
    out_dir: str | Path,
    num_sequences: int,
    num_frames: int,
    seed: int,
    difficulty: str | Difficulty = "medium",
    *,
    size: tuple[int, int] = DEFAULT_SIZE,
    split: str = "train",
    real_images: str = "auto",
    image_dirs: list[Path] | None = None,
    target_rgb: tuple[int, int, int] | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``num_sequences`` videos of ``num_frames`` frames to ``out_dir/split`` (GOT-10k layout).

    ``real_images="auto"`` crops real photographs found by :func:`find_real_images` (in
    ``image_dirs`` when given), falling back to procedural textures; ``"off"`` always uses the
    textures. ``target_rgb`` paints the target one flat colour (for checking labels against
    pixels). Returns the sequence folders.
    """
    label, knobs = resolve_difficulty(difficulty)
    width, height = size
    if num_sequences < 1 or num_frames < 1:
        raise ValueError(f"need at least one sequence and one frame, got {num_sequences} x {num_frames}")
    if width < 4 * MIN_TARGET_SIDE or height < 4 * MIN_TARGET_SIDE:
        raise ValueError(f"frame size {width}x{height} too small (min {4 * MIN_TARGET_SIDE} px a side)")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    if real_images not in REAL_IMAGE_MODES:
        raise ValueError(f"unknown real_images mode {real_images!r}; allowed: {', '.join(REAL_IMAGE_MODES)}")
    folder = Path(out_dir) / split
    _prepare_folder(folder, overwrite)
    source, photos = _appearance_source(real_images, image_dirs)

    names, infos, seq_dirs = [], [], []
    for index in range(num_sequences):
        rng = np.random.default_rng([seed, _split_code(split), index])
        event_rng = np.random.default_rng([seed, _split_code(split), index, EVENT_STREAM])
        renderer = SequenceRenderer(rng, knobs, source, num_frames, width, height, target_rgb, event_rng)
        name = f"synth_{split}_{index + 1:05d}"
        seq_dir = folder / name
        seq_dir.mkdir()
        cover = np.zeros(num_frames, int)
        for t in range(num_frames):
            frame, visible_ratio = renderer.render(t)
            cover[t] = cover_level(visible_ratio)
            cv2.imwrite(str(seq_dir / f"{t + 1:08d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        np.savetxt(seq_dir / "groundtruth.txt", renderer.ground_truth(), fmt="%.4f", delimiter=",")
        _write_lines(seq_dir / "cover.label", cover)
        _write_lines(seq_dir / "absence.label", (cover == 0).astype(int))  # fully covered or out of view = absent
        names.append(name)
        infos.append({"name": name, **renderer.info(), "occluded_frames": int((cover < 8).sum()),
                      "absent_frames": int((cover == 0).sum())})
        seq_dirs.append(seq_dir)

    (folder / "list.txt").write_text("".join(f"{n}\n" for n in names))
    meta = {
        "generator": "abtrack synth",
        "seed": seed,
        "split": split,
        "num_sequences": num_sequences,
        "num_frames": num_frames,
        "size": [width, height],
        "difficulty": label,
        "knobs": dataclasses.asdict(knobs),
        "image_source": source.kind,
        "real_images": [location_free_name(p) for p in photos],
        "target_rgb": list(target_rgb) if target_rgb is not None else None,
        "sequences": infos,
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return seq_dirs
