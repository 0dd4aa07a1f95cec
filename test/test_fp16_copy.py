"""scripts/fp16_copy.py: the shipped copy of a checkpoint, with tracker settings fitted for it."""
import subprocess
import sys
from pathlib import Path

import torch

from abtrack_ros.config import ABTrackConfig, ConfidenceWeights, ModelConfig
from abtrack_ros.model import build_model, load_checkpoint, save_checkpoint

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "fp16_copy.py"


def _copy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_copy_is_fp16_and_takes_the_fitted_tracker_settings(tmp_path):
    cfg = ModelConfig(template_size=32, search_size=64, depth=2, n_enf=1, bdm=True, head_channels=16)
    torch.manual_seed(0)
    source = tmp_path / "model.pt"
    save_checkpoint(source, build_model(cfg), ABTrackConfig(model=cfg))
    settings = tmp_path / "tracker.yaml"
    settings.write_text("tracker:\n  lost_score: 0.4\n  confidence: {bias: -3.0, sharpness: 2.0}\n")
    assert _copy(str(source), str(tmp_path / "plain.pt")).returncode == 0
    done = _copy(str(source), str(tmp_path / "shipped.pt"), "--tracker", str(settings))
    assert done.returncode == 0, done.stderr
    payload = torch.load(tmp_path / "shipped.pt", weights_only=True)
    assert payload["storage"] == "float16"
    _model, shipped, _ = load_checkpoint(tmp_path / "shipped.pt")
    _model, plain, _ = load_checkpoint(tmp_path / "plain.pt")
    assert shipped.tracker.lost_score == 0.4 and shipped.tracker.found_score == plain.tracker.found_score
    assert (shipped.tracker.confidence.bias, shipped.tracker.confidence.sharpness) == (-3.0, 2.0)
    # a confidence section is read as in a config file: keys it leaves out take the defaults
    assert shipped.tracker.confidence.appearance == ConfidenceWeights().appearance
    settings.write_text("tracker:\n  lost_scor: 0.4\n")
    bad = _copy(str(source), str(tmp_path / "bad.pt"), "--tracker", str(settings))
    assert bad.returncode != 0 and "lost_scor" in bad.stderr and not (tmp_path / "bad.pt").exists()
    settings.write_text("tracker:\n  confidence: {quality_logit: 1.0}\n")  # the model has no quality head
    refused = _copy(str(source), str(tmp_path / "bad.pt"), "--tracker", str(settings))
    assert refused.returncode != 0 and "no quality head" in refused.stderr and not (tmp_path / "bad.pt").exists()
    settings.write_text("- tracker\n")
    assert "expected exactly one" in _copy(str(source), str(tmp_path / "bad.pt"), "--tracker", str(settings)).stderr
