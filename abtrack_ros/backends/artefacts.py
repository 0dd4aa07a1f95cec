"""Deployable artefacts built ahead of time (``abtrack export``), and finding them again at load time.

An artefact folder holds::

    manifest.json       what was built: model, format, precision, input sizes, versions, files
    model.pt            the checkpoint the artefacts were built from (fp16 storage for torch-fp16)
    onnx/<sha256>/      the per-graph ONNX files (onnx, tensorrt) and the TensorRT engines, laid out
                        as the backends' cache, so a backend given this folder as its cache finds
                        them instead of exporting (``export.export_graphs``, ``TensorRTBackend``)

``--checkpoint DIR`` / ``checkpoint:=DIR`` load such a folder: ``resolve_artefacts`` turns it into
the checkpoint file, the backend it was built for (when ``auto`` was asked) and the cache folder.
"""
from __future__ import annotations

import copy
import hashlib
import json
import platform
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import torch

import abtrack_ros
from abtrack_ros.config import ABTrackConfig
from abtrack_ros.model import ABTrackModel, load_checkpoint, save_checkpoint

from .export import export_graphs
from .tensorrt_backend import TensorRTBackend, tensorrt_available

if TYPE_CHECKING:
    from .selection import BackendOptions

ARTEFACT_KIND = "abtrack-artefacts"
ARTEFACT_VERSION = 1
ARTEFACT_MANIFEST = "manifest.json"
CHECKPOINT_NAME = "model.pt"
# format -> (backend that runs it, precision)
ARTEFACT_FORMATS = {"onnx": ("onnxruntime", "fp32"), "tensorrt": ("tensorrt", "fp16"), "torch-fp16": ("torch", "fp16")}
HASH_CHUNK = 1 << 20
# Temporary folders are private (0700); an exported folder is copied to robots and read by other users.
FOLDER_MODE = 0o755
TENSORRT_MISSING = ("the tensorrt format builds engines for the GPU and TensorRT version of the machine it runs "
                    "on, so it needs the tensorrt package and a CUDA GPU here; run `abtrack export --format "
                    "tensorrt` on the target itself (e.g. the Jetson), or export --format onnx here")


class ArtefactError(ValueError):
    """An artefact folder that cannot be built or read."""


def resolve_checkpoint(path: Union[str, Path, None]) -> tuple[Optional[Path], Optional[str], Optional[Path]]:
    """``(checkpoint_file, backend_hint, cache_dir)`` for a ``--checkpoint`` value.

    A file (or a path that does not exist, left for the loader to report) comes back as it is
    with no hint; an artefact folder gives its checkpoint, the backend it was built for and
    itself as the cache folder; None stays None (the default model).
    """
    if path is None:
        return None, None, None
    path = Path(path).expanduser()
    if not path.is_dir():
        return path, None, None
    manifest = read_manifest(path)
    return path / manifest["checkpoint"], ARTEFACT_FORMATS[manifest["format"]][0], path


def resolve_artefacts(path: Union[str, Path, None], backend: str, options: Optional["BackendOptions"],
                      device: Union[str, torch.device]) -> tuple[Optional[Path], str, "BackendOptions"]:
    """``(checkpoint_file, backend, options)`` to build a tracker from ``--checkpoint`` and the backend args.

    For an artefact folder, ``auto`` becomes the backend it was built for (tensorrt only on a CUDA
    device: elsewhere ``auto`` keeps choosing) and the folder becomes the cache unless one was given.
    """
    from .selection import BackendOptions

    checkpoint, hint, cache = resolve_checkpoint(path)
    options = options or BackendOptions()
    if hint is not None and backend == "auto" and (hint != "tensorrt" or torch.device(device).type == "cuda"):
        backend = hint
    if cache is not None and options.cache_dir is None:
        options = replace(options, cache_dir=cache)
    return checkpoint, backend, options


def read_manifest(folder: Path) -> dict:
    """The manifest of an artefact folder; ArtefactError when the folder is not one."""
    path = folder / ARTEFACT_MANIFEST
    if not path.is_file():
        raise ArtefactError(f"{folder} is a folder without {ARTEFACT_MANIFEST}: not an `abtrack export` folder "
                            "(give a checkpoint file or an exported folder)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtefactError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != ARTEFACT_KIND:
        raise ArtefactError(f"{path}: not an {ARTEFACT_KIND} manifest")
    if manifest.get("version") != ARTEFACT_VERSION:
        raise ArtefactError(f"{path}: unknown artefact version {manifest.get('version')!r} "
                            f"(this code reads version {ARTEFACT_VERSION})")
    if manifest.get("format") not in ARTEFACT_FORMATS or not isinstance(manifest.get("checkpoint"), str):
        raise ArtefactError(f"{path}: missing or unknown format/checkpoint entries")
    return manifest


def export_artefacts(model: ABTrackModel, cfg: ABTrackConfig, out: Union[str, Path], fmt: str, weights: str,
                     device: Union[str, torch.device] = "cuda", overwrite: bool = False) -> dict:
    """Build the ``fmt`` artefacts of ``model`` into the folder ``out``; returns the manifest.

    The graphs and engines are built from the checkpoint as written into the folder, reloaded,
    so that loading the folder finds them under the same model hash. ``device`` is the CUDA
    device TensorRT builds for. The folder appears complete or not at all.
    """
    if fmt not in ARTEFACT_FORMATS:
        raise ArtefactError(f"unknown format '{fmt}' (choose one of: {', '.join(ARTEFACT_FORMATS)})")
    if fmt == "tensorrt" and not (tensorrt_available() and torch.device(device).type == "cuda"):
        raise ArtefactError(TENSORRT_MISSING)
    out = Path(out).expanduser()
    _check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_checkpoint(staging / CHECKPOINT_NAME, model, cfg, {"exported_from": weights}, half=fmt == "torch-fp16")
        reloaded, _, _ = load_checkpoint(staging / CHECKPOINT_NAME)
        reloaded.eval()
        graph_folder = None
        if fmt == "onnx":
            graph_folder = export_graphs(reloaded, staging).folder
        elif fmt == "tensorrt":
            graph_folder = TensorRTBackend(copy.deepcopy(reloaded).to(device), device, half=True,
                                           cache_dir=staging).graphs.folder
        manifest = _manifest(reloaded, cfg, fmt, weights, staging, graph_folder, device)
        (staging / ARTEFACT_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        for folder in (staging, *(p for p in staging.rglob("*") if p.is_dir())):
            folder.chmod(FOLDER_MODE)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _check_target(out: Path, overwrite: bool) -> None:
    """Only an empty folder, or with ``overwrite`` an earlier artefact folder, may be replaced."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ArtefactError(f"{out} exists and is not a folder")
    if not any(out.iterdir()):
        return
    if not (out / ARTEFACT_MANIFEST).is_file():
        raise ArtefactError(f"{out} is not empty and holds no {ARTEFACT_MANIFEST}: refusing to replace it")
    if not overwrite:
        raise ArtefactError(f"{out} already holds exported artefacts (use --overwrite to replace them)")


def _manifest(model: ABTrackModel, cfg: ABTrackConfig, fmt: str, weights: str, folder: Path,
              graph_folder: Optional[Path], device: Union[str, torch.device]) -> dict:
    backend, precision = ARTEFACT_FORMATS[fmt]
    manifest = {
        "kind": ARTEFACT_KIND, "version": ARTEFACT_VERSION,
        "model": {"name": cfg.name, "backbone": model.config.backbone, "num_blocks": model.num_blocks,
                  "n_enf": model.n_enf, "pruned": model.pruning_plan is not None, "weights": weights},
        "format": fmt, "backend": backend, "precision": precision,
        "template_size": int(model.config.template_size), "search_size": int(model.config.search_size),
        "checkpoint": CHECKPOINT_NAME,
        "graphs": None if graph_folder is None else graph_folder.relative_to(folder).as_posix(),
        "versions": _versions(),
        "files": [_file_entry(path, folder) for path in sorted(folder.rglob("*")) if path.is_file()],
    }
    if fmt == "tensorrt":
        manifest["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return manifest


def _versions() -> dict:
    """Package versions the artefacts were built with (None: not installed)."""
    versions = {"abtrack_ros": abtrack_ros.__version__, "torch": torch.__version__,
                "python": platform.python_version()}
    for name in ("onnx", "onnxruntime", "tensorrt"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return versions


def _file_entry(path: Path, folder: Path) -> dict:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return {"path": path.relative_to(folder).as_posix(), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}
