"""`abtrack export`: artefact folders (per-block ONNX graphs, fp16 checkpoint), their manifest, loading
them back through the backends, and the TensorRT path's error where TensorRT is missing."""
import hashlib
import json

import numpy as np
import pytest
import torch

from abtrack_ros.backends import (ArtefactError, BackendOptions, export_artefacts, resolve_artefacts,
                                  resolve_checkpoint, tensorrt_available)
from abtrack_ros.backends.export import GraphSet
from abtrack_ros.cli import main
from abtrack_ros.config import ABTrackConfig, ModelConfig, TrackerConfig
from abtrack_ros.model import build_model, load_checkpoint, prune_model, save_checkpoint
from abtrack_ros.tracking import Tracker

TOL = 1e-4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A pruned 3-block toy model with gates that decide and non-trivial head batch norms."""
    torch.manual_seed(0)
    cfg = ABTrackConfig(name="toy", model=ModelConfig(template_size=32, search_size=64, depth=3, n_enf=1, bdm=True,
                                                      vtp_masks=True, head_channels=32))
    model = build_model(cfg.model).eval()
    for decision in model.backbone.decisions:
        torch.nn.init.normal_(decision.linear.weight, std=0.3)
        decision.linear.bias.data.fill_(0.0)
    for bn in (m for m in model.head.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.2, 2.0)
    prune_model(model, 0.3)
    path = tmp_path_factory.mktemp("ckpt") / "toy.pt"
    save_checkpoint(path, model, cfg)
    return path


@pytest.fixture(scope="module")
def onnx_folder(checkpoint, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    out = tmp_path_factory.mktemp("export") / "toy_onnx"
    assert main(["export", "--format", "onnx", "--out", str(out), "--checkpoint", str(checkpoint)]) == 0
    return out


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _track(tracker, frames, box):
    tracker.initialize(frames[0], box)
    return np.array([tracker.track(frame).box for frame in frames[1:]])


def _frames(count=6, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    return [np.roll(base, 2 * i, axis=1) for i in range(count)]


def test_onnx_manifest(onnx_folder, checkpoint):
    manifest = json.loads((onnx_folder / "manifest.json").read_text())
    assert manifest["kind"] == "abtrack-artefacts" and manifest["format"] == "onnx"
    assert manifest["backend"] == "onnxruntime" and manifest["precision"] == "fp32"
    assert (manifest["template_size"], manifest["search_size"]) == (32, 64)
    assert manifest["model"]["name"] == "toy" and manifest["model"]["pruned"]
    assert manifest["model"]["weights"] == f"checkpoint {checkpoint}"
    assert set(manifest["versions"]) >= {"abtrack_ros", "torch", "onnx", "onnxruntime"}
    files = {f["path"]: f for f in manifest["files"]}
    graphs = GraphSet(onnx_folder / manifest["graphs"], 3)
    expected = {"model.pt"} | {f"{manifest['graphs']}/{name}.onnx" for name in graphs.names()}
    assert expected <= set(files)
    for path, entry in files.items():
        assert entry["bytes"] == (onnx_folder / path).stat().st_size and entry["sha256"] == _sha256(onnx_folder / path)


def test_onnx_folder_loads_with_the_same_boxes_as_the_checkpoint(onnx_folder, checkpoint):
    before = sorted(p.relative_to(onnx_folder) for p in onnx_folder.rglob("*"))
    path, backend, options = resolve_artefacts(onnx_folder, "auto", None, "cpu")
    assert (path, backend, options.cache_dir) == (onnx_folder / "model.pt", "onnxruntime", onnx_folder)
    from_folder = Tracker(load_checkpoint(path)[0], TrackerConfig(), backend=backend,
                          backend_options=BackendOptions(cache_dir=options.cache_dir, threads=1))
    from_pt = Tracker(load_checkpoint(checkpoint)[0], TrackerConfig(), backend="torch")
    frames = _frames()
    assert np.allclose(_track(from_folder, frames, [50, 40, 30, 24]), _track(from_pt, frames, [50, 40, 30, 24]),
                       atol=TOL * 160)  # crop-normalised 1e-4, in pixels of the frame
    assert sorted(p.relative_to(onnx_folder) for p in onnx_folder.rglob("*")) == before  # graphs found, not re-exported


def test_resolution_rules(onnx_folder, tmp_path):
    assert resolve_checkpoint(None) == (None, None, None)
    assert resolve_checkpoint(tmp_path / "a.pt") == (tmp_path / "a.pt", None, None)  # the loader reports it
    explicit = resolve_artefacts(onnx_folder, "torch", BackendOptions(cache_dir=tmp_path), "cpu")
    assert explicit[1:] == ("torch", BackendOptions(cache_dir=tmp_path))  # what was asked for stays
    with pytest.raises(ArtefactError, match="not an `abtrack export` folder"):
        resolve_checkpoint(tmp_path)
    (tmp_path / "manifest.json").write_text('{"kind": "something else"}')
    with pytest.raises(ArtefactError, match="not an abtrack-artefacts manifest"):
        resolve_checkpoint(tmp_path)


def test_tensorrt_folder_hint_needs_cuda(tmp_path):
    folder = tmp_path / "trt"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"kind": "abtrack-artefacts", "version": 1,
                                                      "format": "tensorrt", "checkpoint": "model.pt"}))
    assert resolve_artefacts(folder, "auto", None, "cpu")[1] == "auto"  # auto keeps choosing on a CPU
    assert resolve_artefacts(folder, "auto", None, "cuda")[1] == "tensorrt"


def test_torch_fp16_export(checkpoint, tmp_path):
    out = tmp_path / "fp16"
    assert main(["export", "--format", "torch-fp16", "--out", str(out), "--checkpoint", str(checkpoint)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["precision"], manifest["graphs"]) == ("fp16", None)
    assert [f["path"] for f in manifest["files"]] == ["model.pt"]
    payload = torch.load(out / "model.pt", weights_only=True)
    assert payload["storage"] == "float16"
    assert (out / "model.pt").stat().st_size < 0.6 * checkpoint.stat().st_size
    assert resolve_checkpoint(out)[1] == "torch"
    model, _, _ = load_checkpoint(resolve_checkpoint(out)[0])
    reference, _, _ = load_checkpoint(checkpoint)
    assert all(torch.allclose(v, reference.state_dict()[k], atol=1e-2, rtol=1e-2)
               for k, v in model.state_dict().items())


@pytest.mark.skipif(tensorrt_available(), reason="TensorRT and CUDA are here: the engines can be built")
def test_tensorrt_export_is_a_clear_error_without_tensorrt(checkpoint, tmp_path, capsys):
    assert main(["export", "--format", "tensorrt", "--out", str(tmp_path / "trt"), "--checkpoint",
                 str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "needs the tensorrt package and a CUDA GPU" in err and "on the target itself" in err
    assert not (tmp_path / "trt").exists()


def test_existing_folders_are_protected(checkpoint, onnx_folder, tmp_path, capsys):
    model, cfg, _ = load_checkpoint(checkpoint)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(ArtefactError, match="refusing"):
        export_artefacts(model, cfg, occupied, "torch-fp16", "test")
    assert main(["export", "--format", "onnx", "--out", str(onnx_folder), "--checkpoint", str(checkpoint)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    with pytest.raises(ArtefactError, match="unknown format"):
        export_artefacts(model, cfg, tmp_path / "x", "tflite", "test")


def test_overwrite_replaces_an_export(checkpoint, tmp_path):
    out = tmp_path / "again"
    for _ in range(2):
        assert main(["export", "--format", "torch-fp16", "--out", str(out), "--checkpoint", str(checkpoint),
                     "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.pt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_bench_models_from_an_export_folder(onnx_folder):
    from abtrack_ros.evaluation.bench.subjects import build_bench_models

    models = build_bench_models(onnx_folder)
    assert models.weights == f"checkpoint {onnx_folder / 'model.pt'}"
    assert models.bdm_vtp.pruning_plan is not None
