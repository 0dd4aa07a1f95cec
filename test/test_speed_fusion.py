"""Inference-time fixed-cost cuts: batch norm folded into the head's and the conv stem's
convolutions, the three head branches fused, and the backends (torch, ONNX Runtime) still giving
the model's own outputs."""
import copy

import pytest
import torch
from torch import nn

from abtrack_ros.backends import OnnxRuntimeBackend, TorchBackend
from abtrack_ros.config import ModelConfig
from abtrack_ros.model import CenterPredictor, build_model, decode_boxes
from abtrack_ros.model.fusion import fold_batchnorm
from abtrack_ros.model.head import FusedCenterPredictor
from abtrack_ros.model.patch_embed import ConvStem, FusedConvStem, fuse_patch_embed

TOL = 1e-4
TEMPLATE, SEARCH = 32, 64


def _randomise_batchnorm(module: nn.Module, seed: int) -> nn.Module:
    """Non-trivial running statistics and affine parameters (a fresh BN is the identity)."""
    generator = torch.Generator().manual_seed(seed)
    for bn in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
        shape = bn.running_mean.shape
        bn.running_mean.copy_(torch.randn(shape, generator=generator))
        bn.running_var.copy_(torch.rand(shape, generator=generator) * 2.0 + 0.1)
        if bn.affine:
            bn.weight.data.copy_(torch.randn(shape, generator=generator))
            bn.bias.data.copy_(torch.randn(shape, generator=generator))
    return module


def _maps_close(expected, actual) -> None:
    for name, want, got in zip(("score", "offset", "size"), expected, actual):
        assert got.shape == want.shape, name
        assert torch.allclose(got, want, atol=TOL, rtol=0), f"{name}: {float((got - want).abs().max())}"


@pytest.mark.parametrize("conv_bias,affine", [(False, True), (True, True), (True, False)])
def test_fold_batchnorm_equals_conv_then_bn(conv_bias, affine):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, padding=1, bias=conv_bias)
    bn = _randomise_batchnorm(nn.BatchNorm2d(5, affine=affine), 1).eval()
    before = copy.deepcopy((conv.state_dict(), bn.state_dict()))
    fused = fold_batchnorm(conv, bn)
    x = torch.randn(2, 6, 7, 7)
    with torch.no_grad():
        assert torch.allclose(fused(x), bn(conv(x)), atol=TOL, rtol=0)
    # pure: the source layers are untouched
    assert all(torch.equal(v, before[0][k]) for k, v in conv.state_dict().items())
    assert all(torch.equal(v, before[1][k]) for k, v in bn.state_dict().items())


def test_fold_batchnorm_refuses_training_mode():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2).train())


@pytest.mark.parametrize("head_channels", [32, 256])
def test_fused_head_gives_the_same_maps_and_boxes(head_channels):
    torch.manual_seed(2)
    head = _randomise_batchnorm(CenterPredictor(48, head_channels), 3).eval()
    fused = FusedCenterPredictor(head)
    assert len(fused.layers) == 4 and fused.layers[1].groups == 3
    for scale in (0.1, 1.0, 20.0):
        features = torch.randn(2, 48, 8, 8) * scale
        with torch.inference_mode():
            expected, actual = head(features), fused(features)
        _maps_close(expected, actual)
        boxes, scores = decode_boxes(*expected)
        fused_boxes, fused_scores = decode_boxes(*actual)
        assert torch.allclose(fused_boxes, boxes, atol=TOL) and torch.allclose(fused_scores, scores, atol=TOL)


def test_fused_head_is_inference_only_and_leaves_the_model_trainable():
    head = _randomise_batchnorm(CenterPredictor(16, 32), 4)
    with pytest.raises(ValueError, match="eval"):
        FusedCenterPredictor(head.train())
    state = copy.deepcopy(head.state_dict())
    fused = FusedCenterPredictor(head.eval())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert not any(p.requires_grad for p in fused.parameters())
    assert all(torch.equal(v, state[k]) for k, v in head.state_dict().items())
    assert all(p.requires_grad for p in head.parameters())  # the source head still trains


def test_fused_conv_stem_gives_the_same_tokens():
    torch.manual_seed(7)
    stem = _randomise_batchnorm(ConvStem(64, 16), 8).eval()
    fused = fuse_patch_embed(stem)
    assert isinstance(fused, FusedConvStem) and len(fused.convs) == 4
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    for scale in (0.1, 1.0, 20.0):
        image = torch.randn(2, 3, SEARCH, SEARCH) * scale
        with torch.inference_mode():
            expected, actual = stem(image), fused(image)
        assert actual.shape == expected.shape == (2, 64, SEARCH // 16, SEARCH // 16)
        assert torch.allclose(actual, expected, atol=TOL * scale, rtol=1e-5), float((actual - expected).abs().max())


def test_fused_conv_stem_is_inference_only_and_linear_patchify_is_kept():
    with pytest.raises(ValueError, match="eval"):
        FusedConvStem(ConvStem(64, 16).train())
    patchify = nn.Conv2d(3, 64, 16, 16)
    assert fuse_patch_embed(patchify) is patchify


def _model(patch_embed: str = "linear") -> nn.Module:
    torch.manual_seed(5)
    model = build_model(ModelConfig(template_size=TEMPLATE, search_size=SEARCH, depth=3, n_enf=1, bdm=True,
                                    head_channels=32, patch_embed=patch_embed)).eval()
    for decision in model.backbone.decisions:
        nn.init.normal_(decision.linear.weight, std=0.3)
        decision.linear.bias.data.fill_(0.0)
    return _randomise_batchnorm(model, 6)


def _inputs(seed: int):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(1, 3, TEMPLATE, TEMPLATE, generator=generator),
            torch.randn(1, 3, SEARCH, SEARCH, generator=generator))


def _assert_outputs_close(expected, actual) -> None:
    assert torch.equal(actual.executed, expected.executed)
    for name in ("score_map", "offset_map", "size_map", "boxes", "scores", "bypass_probs"):
        want, got = getattr(expected, name), getattr(actual, name)
        assert torch.allclose(got, want, atol=TOL, rtol=0), f"{name}: {float((got - want).abs().max())}"


@pytest.mark.parametrize("patch_embed", ["linear", "conv_stem"])
@pytest.mark.parametrize("backend_name", ["torch", "onnxruntime"])
def test_backends_match_the_unfused_model(backend_name, patch_embed, tmp_path):
    if backend_name == "onnxruntime":
        pytest.importorskip("onnxruntime")
    model = _model(patch_embed)
    backend = (TorchBackend(model, torch.device("cpu")) if backend_name == "torch"
               else OnnxRuntimeBackend(model, threads=1, cache_dir=tmp_path))
    for seed in range(3):
        template, search = _inputs(seed)
        with torch.inference_mode():
            expected = model(template, search)  # the model's own, unfused head with its BNs
            actual = backend.forward_embedded(backend.embed_template(template), search)
        _assert_outputs_close(expected, actual)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.head.modules())  # the model kept its head
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.backbone.patch_embed.modules()) == (patch_embed == "conv_stem")
