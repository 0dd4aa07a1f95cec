"""TensorRT backend parity with the torch model. Runs only where TensorRT and a CUDA GPU exist
(Jetson AGX, x86 GPU hosts); skipped, saying so, elsewhere (this project's CPU machine)."""
import pytest
import torch

from abtrack_ros.backends import BackendUnavailableError, TensorRTBackend, TorchBackend, tensorrt_available
from abtrack_ros.config import ModelConfig
from abtrack_ros.model import build_model

FP32_TOL = 1e-3  # TensorRT may pick other kernels (TF32 is off by default for FP32 engines)
FP16_TOL = 2e-2


def test_unavailable_is_a_clear_error():
    model = build_model(ModelConfig(template_size=32, search_size=64, depth=2, n_enf=1, bdm=True, head_channels=32))
    with pytest.raises(BackendUnavailableError, match="CUDA device"):
        TensorRTBackend(model, device="cpu")


@pytest.mark.skipif(not tensorrt_available(), reason="TensorRT and/or a CUDA GPU are not available on this machine")
@pytest.mark.parametrize("half, tol", [(False, FP32_TOL), (True, FP16_TOL)])
def test_tensorrt_matches_torch(tmp_path, half, tol):
    torch.manual_seed(0)
    model = build_model(ModelConfig(depth=4, n_enf=1, bdm=True, head_channels=64)).eval()
    for decision in model.backbone.decisions:  # saturated gates: fp16 cannot flip a decision
        decision.linear.bias.data.fill_(-6.0)
    model = model.to("cuda")
    template, search = torch.randn(1, 3, 128, 128, device="cuda"), torch.randn(1, 3, 256, 256, device="cuda")
    engine = TensorRTBackend(model, device="cuda", half=half, cache_dir=tmp_path)
    with torch.inference_mode():
        ref = TorchBackend(model, torch.device("cuda")).forward_embedded(model.embed_template(template), search)
        out = engine.forward_embedded(engine.embed_template(template), search)
    assert torch.equal(out.executed.cpu(), ref.executed.cpu())
    assert torch.allclose(out.boxes.float(), ref.boxes.float(), atol=tol)
    assert torch.allclose(out.scores.float(), ref.scores.float(), atol=tol)
    assert list(tmp_path.rglob("*.engine"))  # cached engines for the next start
