"""The ONNX Runtime backend against the torch model: same gates, same outputs, bypass kept real."""
import copy
import logging

import numpy as np
import pytest
import torch

from abtrack_ros.backends import (BackendOptions, BackendUnavailableError, GatedDriver, OnnxRuntimeBackend,
                                  TorchBackend, create_backend, export_graphs, model_digest, resolve_backend_name)
from abtrack_ros.config import ModelConfig, TrackerConfig
from abtrack_ros.model import build_model, prune_model
from abtrack_ros.tracking import Tracker

pytest.importorskip("onnxruntime")

FP32_TOL = 1e-4
# Dynamic int8 quantises every block matmul's activations per call: boxes and scores move by
# up to a few hundredths of the crop on random weights.
INT8_TOL = 0.05
TEMPLATE, SEARCH = 32, 64  # 2x2 template and 4x4 search tokens


def _model(seed: int = 0, gate_bias: float = 0.0, bdm_input: str = "token") -> torch.nn.Module:
    """A pruned 4-block DeiT-Tiny with BDMs that really decide from their input."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(template_size=TEMPLATE, search_size=SEARCH, depth=4, n_enf=1, bdm=True,
                                    vtp_masks=True, head_channels=32, bdm_input=bdm_input)).eval()
    for block in model.backbone.blocks:
        block.attn.inner_mask.data.uniform_(0.5, 1.5)
        block.mlp.hidden_mask.data.uniform_(0.5, 1.5)
    for decision in model.backbone.decisions:
        torch.nn.init.normal_(decision.linear.weight, std=0.3)
        decision.linear.bias.data.fill_(gate_bias)
        if decision.search_linear is not None:
            torch.nn.init.normal_(decision.search_linear.weight, std=0.3)
    prune_model(model, 0.3)
    return model


def _inputs(seed: int):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(1, 3, TEMPLATE, TEMPLATE, generator=generator),
            torch.randn(1, 3, SEARCH, SEARCH, generator=generator))


def _outputs(backend, template, search):
    with torch.inference_mode():
        return backend.forward_embedded(backend.embed_template(template), search)


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx_cache")


@pytest.fixture(scope="module")
def ort_fp32(model, cache):
    return OnnxRuntimeBackend(model, threads=1, cache_dir=cache)


def assert_fp32_parity(model, backend) -> None:
    """Same gates, probabilities, maps and boxes as the torch backend on six inputs, with more than
    one execution pattern among them (the gates depended on the input: both branches compared)."""
    torch_backend = TorchBackend(model, torch.device("cpu"))
    patterns = set()
    for seed in range(6):
        template, search = _inputs(seed)
        ref, out = _outputs(torch_backend, template, search), _outputs(backend, template, search)
        assert torch.equal(out.executed, ref.executed)
        for name in ("bypass_probs", "boxes", "scores", "score_map", "offset_map", "size_map"):
            assert torch.allclose(getattr(out, name), getattr(ref, name), atol=FP32_TOL), name
        patterns.add(tuple(ref.executed[0].tolist()))
    assert len(patterns) > 1


def test_fp32_parity_with_torch_and_real_gates(model, ort_fp32):
    assert_fp32_parity(model, ort_fp32)


def test_bypassed_blocks_are_not_run(model, ort_fp32):
    calls = [0] * model.num_blocks

    class Counting:  # wraps the real session of one block
        def __init__(self, index, session):
            self.index, self.session = index, session

        def run(self, *args, **kwargs):
            calls[self.index] += 1
            return self.session.run(*args, **kwargs)

    backend = copy.copy(ort_fp32)
    backend._blocks = [Counting(i, s) for i, s in enumerate(ort_fp32._blocks)]
    backend._driver = GatedDriver(model, backend)
    template, search = _inputs(0)
    pattern = [True, False, True, False]
    model.set_forced_pattern(pattern)
    try:
        out = _outputs(backend, template, search)
    finally:
        model.set_forced_pattern(None)
    assert calls == [1, 0, 1, 0]
    assert out.executed[0].tolist() == pattern
    assert (out.bypass_probs[0, 1:] > 0).all()  # probabilities still computed for forced patterns


def test_model_switches_are_followed(model, ort_fp32):
    torch_backend = TorchBackend(model, torch.device("cpu"))
    template, search = _inputs(1)
    try:
        for bdm, threshold in ((False, 0.5), (True, 0.0), (True, 1.0)):
            model.bdm_enabled, model.bypass_threshold = bdm, threshold
            ref, out = _outputs(torch_backend, template, search), _outputs(ort_fp32, template, search)
            assert torch.equal(out.executed, ref.executed)
            assert torch.allclose(out.boxes, ref.boxes, atol=FP32_TOL)
            if not bdm:
                assert out.executed.all() and (out.bypass_probs == 0).all()
            elif threshold == 0.0:
                assert out.executed[0].tolist() == [True, False, False, False]  # only the enforced block
    finally:
        model.bdm_enabled, model.bypass_threshold = True, 0.5


def test_int8_within_stated_tolerance(cache):
    # Saturated gates (bias -6: p ~ 0.002) make the executed pattern independent of quantisation noise.
    model = _model(seed=1, gate_bias=-6.0)
    reference = TorchBackend(model, torch.device("cpu"))
    int8 = OnnxRuntimeBackend(model, threads=1, int8=True, cache_dir=cache)
    assert "int8" in int8.description
    quantised = list(int8.graphs.folder.glob("*.int8.onnx"))
    assert len(quantised) == model.num_blocks
    for seed in range(3):
        template, search = _inputs(seed)
        ref, out = _outputs(reference, template, search), _outputs(int8, template, search)
        assert torch.equal(out.executed, ref.executed)
        assert torch.allclose(out.boxes, ref.boxes, atol=INT8_TOL)
        assert torch.allclose(out.scores, ref.scores, atol=INT8_TOL)


def test_graphs_are_cached_by_model_hash(model, cache, ort_fp32):
    graphs = export_graphs(model, cache)
    assert graphs.folder == ort_fp32.graphs.folder and graphs.folder.name == model_digest(model)
    stamps = {p.name: p.stat().st_mtime_ns for p in graphs.folder.glob("*.onnx")}
    assert export_graphs(model, cache).folder == graphs.folder  # second call: nothing re-exported
    assert {p.name: p.stat().st_mtime_ns for p in graphs.folder.glob("*.onnx")} == stamps
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.head.score[0].weight.add_(0.01)
    assert model_digest(changed) != model_digest(model)


def test_tracker_with_onnxruntime_tracks_like_torch(model, cache):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, size=(60, 80, 3), dtype=np.uint8) for _ in range(4)]
    box = [30.0, 20.0, 12.0, 10.0]
    options = BackendOptions(cache_dir=cache)
    trackers = [Tracker(model, TrackerConfig(), backend=name, backend_options=options)
                for name in ("torch", "onnxruntime")]
    assert trackers[1].backend.name == "onnxruntime"
    for tracker in trackers:
        tracker.initialize(frames[0], box)
    for frame in frames[1:]:
        ref, out = (t.track(frame) for t in trackers)
        assert out.executed == ref.executed
        np.testing.assert_allclose(out.box, ref.box, atol=1e-2)
        assert abs(out.score - ref.score) < FP32_TOL


def test_bad_requests_are_clear_errors(model, ort_fp32, cache):
    template, search = _inputs(0)
    with pytest.raises(ValueError, match="batch size 1"):
        ort_fp32.forward_embedded(ort_fp32.embed_template(template).expand(2, -1, -1), search.expand(2, -1, -1, -1))
    with pytest.raises(ValueError, match="unknown backend 'onnx'"):
        resolve_backend_name("onnx", torch.device("cpu"))
    with pytest.raises(ValueError, match="int8 is an onnxruntime option"):
        create_backend("torch", model, torch.device("cpu"), options=BackendOptions(int8=True))
    with pytest.raises(BackendUnavailableError, match="CPU only"):
        OnnxRuntimeBackend(model, device="cuda", cache_dir=cache)
    with pytest.raises(ValueError, match="bf16 is a torch CPU option"):
        Tracker(copy.deepcopy(model), TrackerConfig(), backend="onnxruntime",
                backend_options=BackendOptions(bf16=True, cache_dir=cache))


def test_auto_picks_onnxruntime_on_cpu_unless_bf16():
    assert resolve_backend_name("auto", torch.device("cpu")) == "onnxruntime"
    assert resolve_backend_name("auto", torch.device("cpu"), BackendOptions(bf16=True)) == "torch"
    assert resolve_backend_name("auto", torch.device("cpu"), BackendOptions(int8=True)) == "onnxruntime"
    assert resolve_backend_name("torch", torch.device("cpu")) == "torch"


def test_auto_falls_back_to_torch_when_the_graph_cache_cannot_be_written(model, tmp_path, caplog):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder would go")
    options = BackendOptions(cache_dir=blocker / "cache")
    with caplog.at_level(logging.WARNING, logger="abtrack_ros.backends.selection"):
        backend = create_backend("auto", model, torch.device("cpu"), options=options)
    assert backend.name == "torch"
    assert "using torch" in caplog.text and "cache" in caplog.text
    with pytest.raises(OSError):  # asked for by name: the error is the user's to see
        create_backend("onnxruntime", model, torch.device("cpu"), options=options)


def test_node_parameter_selects_the_backend(model, tmp_path, monkeypatch):
    from abtrack_ros.config import ABTrackConfig
    from abtrack_ros.model import save_checkpoint
    from abtrack_ros.ros import params as node_params

    pytest.importorskip("vision_msgs", reason="the node needs the ROS interfaces (. .colcon/install/setup.bash)")
    from abtrack_ros.ros.node import load_tracker

    monkeypatch.setenv("ABTRACK_CACHE_DIR", str(tmp_path / "cache"))  # not the user's ~/.cache
    path = tmp_path / "pruned.pt"
    save_checkpoint(path, model, ABTrackConfig(model=model.config))
    values = {spec.name: spec.default for spec in node_params.PARAMETERS}
    values.update(checkpoint=str(path), device="cpu", backend="onnxruntime")
    tracker = load_tracker(node_params.NodeParams.from_values(values))
    assert tracker.backend.name == "onnxruntime"
    assert list((tmp_path / "cache" / "onnx").iterdir())
    assert node_params.validate("backend", "onnx") == "backend must be one of auto, torch, onnxruntime, tensorrt; got 'onnx'"


@pytest.mark.parametrize("bdm_input", ["token", "token_search_mean"])
def test_numpy_decisions_equal_the_torch_bdms(bdm_input):
    from abtrack_ros.backends.gating import NumpyDecisions

    model = _model(bdm_input=bdm_input)
    decisions = NumpyDecisions(model)
    generator = torch.Generator().manual_seed(3)
    tokens_per_sample = (TEMPLATE // 16) ** 2 + (SEARCH // 16) ** 2 + 1
    for scale in (1.0, 100.0):  # 100: saturated logits of both signs (a stable sigmoid is needed)
        tokens = torch.randn(5, tokens_per_sample, model.backbone.bypass_token.shape[-1], generator=generator) * scale
        for index, module in enumerate(model.backbone.decisions):
            with torch.no_grad():
                expected = module(tokens).numpy()
            got = [decisions(index, sample) for sample in tokens.numpy()]
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_bdms_that_read_the_search_tokens_match_torch(tmp_path):
    model = _model(seed=1, bdm_input="token_search_mean")
    assert_fp32_parity(model, OnnxRuntimeBackend(model, threads=1, cache_dir=tmp_path))
