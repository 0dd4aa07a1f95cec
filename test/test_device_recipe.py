"""The GPU variant of the default model's recipe, run end to end on the CPU at toy sizes.

The device machine itself cannot be reached from a test; this checks what the device call runs:
the image pack, data generation from it, the three stages of the GPU config and the fp16 output.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from abtrack_ros.data.image_sources import find_real_images
from abtrack_ros.model import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
PACK_SCRIPT = ROOT / "scripts" / "pack_device_images.sh"
DEVICE_SCRIPT = ROOT / "scripts" / "device_train_default_model.sh"
TOY_TRAIN_OPTIONS = ["--device", "cpu", "--epochs", "1", "--pairs-per-epoch", "32", "--batch-size", "8",
                     "--num-workers", "0"]


def _run(command: list, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    if not find_real_images():
        pytest.skip("no photographs on this machine (scripts/setup.sh installs them)")
    pack = tmp_path_factory.mktemp("device") / "pack"
    done = _run(["bash", PACK_SCRIPT, pack], {})
    assert done.returncode == 0, done.stderr
    assert len(find_real_images([pack])) == len(find_real_images()), "a packed photo is no longer found"
    return pack


def test_device_recipe_trains_a_shippable_model_from_the_pack(pack, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = {"ABTRACK_DEVICE_PACK": str(pack), "ABTRACK_DEVICE_WORK": str(work), "ABTRACK_DEVICE_SEQUENCES": "1"}
    done = _run(["bash", DEVICE_SCRIPT, out, *TOY_TRAIN_OPTIONS], env)
    assert done.returncode == 0, done.stdout + done.stderr

    model, cfg, extra = load_checkpoint(out / "default_model_gpu.pt")
    assert cfg.name == "abtrack_default_gpu" and extra["stage"] == "bdm"
    assert model.pruning_plan is not None and model.bdm_enabled
    stored = torch.load(out / "default_model_gpu.pt", map_location="cpu", weights_only=True)
    assert {t.dtype for t in stored["state_dict"].values() if t.is_floating_point()} == {torch.float16}
    for stage in ("vtp", "bdm"):
        assert (out / "run" / stage / "train_log.csv").is_file()
    # The data came from the pack, and nothing but the outputs went under OUT_DIR.
    meta = json.loads((work / "data" / "device_val" / "val" / "meta.json").read_text())
    assert meta["image_source"] == "real"
    assert all(Path(p).resolve().is_relative_to(pack.resolve()) for p in meta["real_images"])
    assert not (out / "data").exists() and not list(out.rglob("checkpoint.pt"))


def test_device_recipe_without_a_pack_says_how_to_make_one(tmp_path):
    env = {"ABTRACK_DEVICE_PACK": str(tmp_path / "missing"), "ABTRACK_DEVICE_WORK": str(tmp_path / "work")}
    done = _run(["bash", DEVICE_SCRIPT, tmp_path / "out"], env)
    assert done.returncode == 2
    assert "scripts/pack_device_images.sh" in done.stderr
    assert not (tmp_path / "work").exists()
