"""The single-object tracker around an ABTrack model: crops, model call, Hann window, map-back,
confidence, the LOST state and the search that re-acquires a lost target."""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import numpy as np
import torch

from abtrack_ros.config import ABTrackConfig, ModelConfig, TrackerConfig, from_dict, load_config, to_dict
from abtrack_ros.tracking import confidence as conf
from abtrack_ros.tracking import geometry as geo
from abtrack_ros.tracking.lost import (
    REASON_COMPETING_PEAK,
    REASON_LOW_CONFIDENCE,
    STATE_LOST,
    STATE_TRACKING,
    LostStateMachine,
    is_scan_step,
    scan_centres,
    search_factor,
)

if TYPE_CHECKING:
    from abtrack_ros.backends import BackendOptions
    from abtrack_ros.model import ABTrackModel

LOG = logging.getLogger(__name__)

# Config whose model section is used when no checkpoint ships (repository checkout layout).
DEFAULT_MODEL_CONFIG = Path(__file__).resolve().parents[2] / "config" / "models" / "abtrack_deit_tiny.yaml"
RANDOM_WEIGHTS_WARNING = "UNTRAINED: randomly initialised weights (no checkpoint found); boxes are meaningless"


class TrackerNotInitializedError(RuntimeError):
    """track() was called before initialize()."""


class FrameSizeError(ValueError):
    """track() got a frame of another size than the one the target was initialised on."""


@dataclass
class TrackResult:
    """The outcome of one tracking step."""

    box: np.ndarray  # [x, y, w, h] in image pixels, clipped to the image; while LOST the best candidate
    score: float  # raw (un-windowed) score at the chosen location
    state: str  # STATE_TRACKING or STATE_LOST
    executed: list[bool]  # per block: did it run
    bypass_probs: list[float]  # per block: p_i (0 for enforced blocks and without BDM)
    timings_ms: dict[str, float] = field(default_factory=dict)  # preprocess, model, postprocess
    confidence: float = 0.0  # 0..1, how far to trust the box (tracking/confidence.py)
    state_reason: str = ""  # why the state is what it is: a lost.REASON_* value
    frames_lost: int = 0  # consecutive LOST steps, this one included (0 while TRACKING)
    search_factor: float = 0.0  # search crop side of this step, in target sizes (grows while LOST)
    cues: dict[str, float] = field(default_factory=dict)  # the confidence's inputs, keyed as conf.CUE_NAMES
    scanned: bool = False  # while LOST: a second crop searched the next cell of the frame scan

    @property
    def blocks_executed(self) -> int:
        return int(sum(self.executed))


@dataclass
class Decoded:
    """The model's answer in image terms: box, raw score, and where on the score map it was chosen."""

    box: np.ndarray  # [x, y, w, h] pixels, clipped to the image
    score: float  # raw (un-windowed) score at the chosen cell
    score_map: np.ndarray  # the raw H x W score map
    peak: tuple[int, int]  # (row, column) of the chosen cell
    quality: Optional[float] = None  # the quality map at the chosen cell (None without a quality head)


@dataclass
class Candidate:
    """One search crop's answer: the model output, the decoded box, its cues and its own
    confidence logit (before any smoothing over the track)."""

    out: object  # the backend's ModelOutput
    decoded: Decoded
    cues: dict[str, float]
    logit: float


class StageClock:
    """Milliseconds per stage of one step (preprocess, model, postprocess): each ``lap`` adds the
    time since the previous one to its stage, after ``synchronise`` (CUDA runs asynchronously)."""

    def __init__(self, synchronise) -> None:
        self.synchronise = synchronise
        self.ms = {"preprocess": 0.0, "model": 0.0, "postprocess": 0.0}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        self.synchronise()
        now = time.perf_counter()
        self.ms[stage] += 1000.0 * (now - self._last)
        self._last = now


class PatchNormaliser:
    """uint8 RGB patch -> ImageNet-normalised ``1 x 3 x H x W`` tensor on the tracker's device/dtype."""

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device = device
        self.dtype = dtype
        self.mean = torch.as_tensor(geo.IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.as_tensor(geo.IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def __call__(self, patch: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(patch)).to(self.device).permute(2, 0, 1).unsqueeze(0)
        return ((tensor.float() / 255.0 - self.mean) / self.std).to(self.dtype)


class Tracker:
    """Tracks one target: ``initialize(frame, box)`` then ``track(frame)`` per frame.

    The template patch embedding is computed once per target and cached. Nothing more can be
    cached: in the one-stream ViT the template tokens attend to the search tokens in every block.
    Each step's confidence drives a TRACKING / LOST state machine (lost.py); while LOST the search
    follows the best candidate, keeps the size of the last TRACKING box and may widen step by step.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        cfg: TrackerConfig,
        device: Union[str, torch.device] = "cpu",
        half: bool = False,
        backend: str = "torch",
        backend_options: Optional["BackendOptions"] = None,
    ) -> None:
        from abtrack_ros.backends import BackendOptions, create_backend

        backend_options = backend_options or BackendOptions()
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available")
        if half and self.device.type != "cuda":
            raise ValueError("half precision (fp16) is only supported on a CUDA device; use half=False on CPU")
        if backend_options.bf16 and (half or self.device.type != "cpu"):
            raise ValueError("bf16 is a CPU precision; on CUDA use half (fp16)")
        if cfg.confidence.quality_logit != 0 and getattr(model, "quality", None) is None:
            raise ValueError("tracker.confidence.quality_logit is not 0 but the model has no quality head "
                             "(model.quality_head): set the weight to 0 or use a model trained with one")
        self.cfg = cfg
        self.half = half
        self.dtype = torch.float16 if half else torch.bfloat16 if backend_options.bf16 else torch.float32
        self.model = model.to(self.device, self.dtype).eval()
        # Runs the model; reads the model's switches (bdm_enabled, bypass_threshold) at every call.
        self.backend = create_backend(backend, self.model, self.device, half, backend_options)
        self.template_size = int(model.config.template_size)
        self.search_size = int(model.config.search_size)
        self.normalise = PatchNormaliser(self.device, self.dtype)
        self.weights_description = "given model"
        self._hann: Optional[torch.Tensor] = None
        self._template_tokens: Optional[torch.Tensor] = None
        self._box: Optional[np.ndarray] = None  # the latest box of a TRACKING step: sizes the search
        self._previous_box: Optional[np.ndarray] = None  # the latest box: centres the search, temporal cues
        self._lost = LostStateMachine()
        self._frame_size: Optional[tuple[int, int]] = None  # (width, height) of the init frame
        self._template_histogram: Optional[np.ndarray] = None  # the target's colours at init
        self._steps_since_template = 0  # tracking steps since the template was taken
        self._last_confidence = 1.0  # the previous step's (1 after init: the given box is the target)
        self._confidence_logit: Optional[float] = None  # the smoothed logit (None: no step since init)
        self._scan_steps = 0  # scan steps of this LOST episode: the next scan cell

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_checkpoint(
        cls,
        path: Union[str, Path, None] = None,
        device: Union[str, torch.device] = "cpu",
        half: bool = False,
        cfg_overrides: Optional[dict] = None,
        backend: str = "torch",
        backend_options: Optional["BackendOptions"] = None,
    ) -> "Tracker":
        """Tracker from a checkpoint file; ``None`` = the package's default model.

        ``backend`` is one of ``abtrack_ros.backends.BACKEND_NAMES`` (``auto``, ``torch``,
        ``onnxruntime``, ``tensorrt``); ``backend_options`` carries int8 / bf16 / cache folder.

        ``cfg_overrides`` are ``tracker`` section keys (checked strictly, like the config file).
        When no default checkpoint ships, the default model config is built with random weights
        and ``weights_description`` says so (and a warning is logged).
        """
        from abtrack_ros.backends import resolve_artefacts

        path, backend, backend_options = resolve_artefacts(path, backend, backend_options, device)
        model, cfg, description = load_model_or_untrained(path)
        if description.startswith(RANDOM_WEIGHTS_WARNING):
            LOG.warning(description)
            from abtrack_ros.backends import BackendOptions

            backend_options = dataclasses.replace(backend_options or BackendOptions(), ephemeral=True)
        tracker_cfg = from_dict(TrackerConfig, {**to_dict(cfg.tracker), **(cfg_overrides or {})}, "tracker")
        tracker = cls(model, tracker_cfg, device=device, half=half, backend=backend,
                      backend_options=backend_options)
        tracker.weights_description = description
        return tracker

    # ----------------------------------------------------------------- state
    @property
    def initialized(self) -> bool:
        return self._box is not None

    @property
    def box(self) -> Optional[np.ndarray]:
        """The target box (image pixels): the latest box while TRACKING, the last box of a TRACKING
        step while LOST (the last one the tracker trusted); None before initialize()."""
        return None if self._box is None else self._box.copy()

    @property
    def num_blocks(self) -> int:
        return int(self.model.num_blocks)

    @torch.inference_mode()
    def initialize(self, frame: np.ndarray, box_xywh: object) -> None:
        """Start tracking the target in ``box_xywh`` of ``frame``; raises ValueError on bad input."""
        frame = geo.validate_frame(frame)
        box = geo.validate_box(box_xywh, frame.shape[1], frame.shape[0])
        self._set_template(frame, box)
        self._box = box
        self._previous_box = box
        self._frame_size = (frame.shape[1], frame.shape[0])
        self._template_histogram = conf.colour_histogram(frame, box)  # stays the operator's target
        self._lost.reset()
        self._last_confidence = 1.0
        self._confidence_logit = None
        self._scan_steps = 0

    @torch.inference_mode()
    def track(self, frame: np.ndarray) -> TrackResult:
        """Locate the target in the next frame.

        Raises ValueError for a bad frame; FrameSizeError (a ValueError) for a frame of another
        size than the init frame, whose pixels the box cannot be carried over to. Either leaves
        the target as it was.
        """
        if self._box is None:
            raise TrackerNotInitializedError("call initialize(frame, box) before track(frame)")
        frame = geo.validate_frame(frame)
        height, width = frame.shape[:2]
        if (width, height) != self._frame_size:
            raise FrameSizeError(
                f"frame is {width}x{height} but the target was initialised on a "
                f"{self._frame_size[0]}x{self._frame_size[1]} image; re-initialise to track at the new size"
            )

        clock = StageClock(self._synchronise)
        # Centred on the latest box (while LOST the best candidate, which follows a returning
        # target), sized by the last TRACKING box (candidates on clutter drift in size).
        factor = search_factor(self._lost.frames_lost, self.cfg)
        side = geo.crop_side(self._box, factor)
        chosen = self._search(frame, geo.box_center(self._previous_box), side, False, clock)
        scanned = is_scan_step(self._lost.frames_lost, self._last_confidence, self.cfg)
        if scanned:
            # A second crop at the next cell of the frame scan; its candidate replaces the local
            # one only when it is more confident, so a doubtful target that is still there stays.
            cells = scan_centres(width, height, side, geo.box_center(self._box))
            tile = self._search(frame, cells[self._scan_steps % len(cells)], side, True, clock)
            self._scan_steps += 1
            if tile.logit > chosen.logit:
                chosen = tile
        decoded, cues = chosen.decoded, chosen.cues

        self._confidence_logit = conf.smoothed_logit(self._confidence_logit, chosen.logit,
                                                     self.cfg.confidence_smoothing)
        confidence = conf.probability(self._confidence_logit)
        low_reason = REASON_COMPETING_PEAK if cues["competitor"] >= conf.COMPETING_PEAK else REASON_LOW_CONFIDENCE
        step = self._lost.update(confidence, self.cfg, low_reason)
        self._last_confidence = confidence
        if step.state == STATE_TRACKING:
            self._box = decoded.box
            self._scan_steps = 0  # a later LOST episode scans from the cell nearest its own start
        self._previous_box = decoded.box
        # Counted over TRACKING steps only: a re-acquired target is not trusted for a new template
        # before it has been tracked for a full interval.
        self._steps_since_template = self._steps_since_template + 1 if step.state == STATE_TRACKING else 0
        every = self.cfg.template_update_every
        if every and self._steps_since_template >= every and confidence >= self.cfg.template_update_confidence:
            self._set_template(frame, decoded.box)  # its cost belongs to this step's postprocess
        result = TrackResult(
            box=decoded.box.copy(),
            score=decoded.score,
            state=step.state,
            executed=[bool(v) for v in chosen.out.executed[0].tolist()],
            bypass_probs=[float(v) for v in chosen.out.bypass_probs[0].float().tolist()],
            confidence=confidence,
            state_reason=step.reason,
            frames_lost=step.frames_lost,
            search_factor=factor,
            cues=cues,
            scanned=scanned,
        )
        clock.lap("postprocess")
        result.timings_ms = clock.ms
        return result

    # ----------------------------------------------------------------- helpers
    def _search(self, frame: np.ndarray, centre: tuple[float, float], side: float, scan: bool,
                clock: "StageClock") -> "Candidate":
        """The model on the crop of ``side`` pixels around ``centre``, decoded, with its cues.

        A scan crop has no expected centre (no Hann window), and its candidate is judged at its
        own place with the last tracked size: how far the scan moved is no evidence against it.
        """
        window = geo.crop_window(centre, side, self.search_size)
        search = self.normalise(geo.crop_patch(frame, window))
        clock.lap("preprocess")
        out = self._forward(search)
        clock.lap("model")
        height, width = frame.shape[:2]
        decoded = self._decode(out, window, width, height, hann=not scan)
        previous = geo.box_at(geo.box_center(decoded.box), self._box) if scan else self._previous_box
        radius = conf.cue_radius(decoded.score_map.shape[0], self.cfg.search_factor)
        cues = conf.step_cues(decoded.score_map, decoded.peak, radius, decoded.box, previous,
                              frame, self._template_histogram, decoded.quality)
        clock.lap("postprocess")
        return Candidate(out, decoded, cues, conf.step_logit(cues, self.cfg.confidence))

    def _forward(self, search: torch.Tensor):
        """The model on this step's search crop: every block after a doubtful step
        (``full_depth_below``), else as the BDMs decide. A pattern forced from outside (the
        evaluation's static patterns) is left alone."""
        model = self.model
        doubtful = self._last_confidence < self.cfg.full_depth_below
        if not (doubtful and model.bdm_enabled and model.forced_pattern is None):
            return self.backend.forward_embedded(self._template_tokens, search)
        model.set_forced_pattern([True] * self.num_blocks)
        try:
            return self.backend.forward_embedded(self._template_tokens, search)
        finally:
            model.set_forced_pattern(None)

    def _set_template(self, frame: np.ndarray, box: np.ndarray) -> None:
        """Embed the template crop around ``box`` (cached: the only part of the input that can be)."""
        window = geo.crop_window(geo.box_center(box), geo.crop_side(box, self.cfg.template_factor), self.template_size)
        self._template_tokens = self.backend.embed_template(self.normalise(geo.crop_patch(frame, window)))
        self._steps_since_template = 0

    def _decode(self, out, window: geo.CropWindow, width: int, height: int, hann: bool = True) -> Decoded:
        """Box and raw score at the (Hann-windowed unless ``hann`` is False) score maximum, in image pixels."""
        from abtrack_ros.model import decode_boxes

        score_map = out.score_map.float()
        ranked_map = score_map
        if hann and self.cfg.hann_window:
            ranked_map = score_map * self._hann_window(score_map.shape[-1])
        boxes, _ = decode_boxes(ranked_map, out.offset_map.float(), out.size_map.float())
        raw_map = score_map[0, 0].cpu().numpy()
        peak = divmod(int(torch.argmax(ranked_map[0].flatten())), raw_map.shape[1])
        box = geo.clip_box(geo.box_from_crop(boxes[0].cpu().numpy(), window), width, height,
                           min_size=geo.MIN_BOX_SIDE_PX)
        quality = None if out.quality_map is None else float(out.quality_map[0, 0, peak[0], peak[1]])
        return Decoded(box=box, score=float(raw_map[peak]), score_map=raw_map, peak=peak, quality=quality)

    def _hann_window(self, size: int) -> torch.Tensor:
        if self._hann is None or self._hann.shape[-1] != size:
            self._hann = torch.from_numpy(geo.hann_window_2d(size)).to(self.device).view(1, 1, size, size)
        return self._hann

    def _synchronise(self) -> None:
        # CUDA runs asynchronously; stage timings need the work finished.
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def load_model_or_untrained(path: Union[str, Path, None]) -> tuple["ABTrackModel", ABTrackConfig, str]:
    """(model, config, description) from ``path``, else the package's default checkpoint, else
    the default config with random weights (its description starts with RANDOM_WEIGHTS_WARNING)."""
    from abtrack_ros import model as model_api

    if path is None:
        path = model_api.default_checkpoint_path()
    if path is not None:
        model, cfg, _extra = model_api.load_checkpoint(path, map_location="cpu")
        return model, cfg, f"checkpoint {path}"
    cfg = default_untrained_config()
    model = model_api.build_model(cfg.model)
    return model, cfg, f"{RANDOM_WEIGHTS_WARNING} (fresh {cfg.model.backbone} default config)"


def default_untrained_config() -> ABTrackConfig:
    """The default model (config/models/abtrack_deit_tiny.yaml when present) with BDM on."""
    cfg = load_config(DEFAULT_MODEL_CONFIG) if DEFAULT_MODEL_CONFIG.is_file() else ABTrackConfig(model=ModelConfig())
    cfg.model.bdm = True
    cfg.model.pretrained = None  # random weights: a local pretrained file is not assumed to exist
    return cfg
