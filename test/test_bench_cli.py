"""`abtrack bench --json --quick` with the default (untrained) model on this machine."""
import json

import numpy as np

from abtrack_ros.cli import main


def test_bench_json_quick(capsys):
    assert main(["bench", "--json", "--quick", "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out)  # stdout is exactly one JSON object
    for key in ("device", "threads", "backbone", "configs", "cost_curve", "per_block_ms", "weights", "versions"):
        assert key in report
    assert report["threads"] == 1 and report["device"] == "cpu"
    assert [c["name"] for c in report["configs"]] == ["baseline", "bdm", "bdm_vtp"]
    for config in report["configs"]:
        for key in ("model_ms_median", "step_ms_median", "fps", "blocks_executed_mean"):
            assert config[key] > 0
        assert config["model_ms_min"] <= config["model_ms_median"] <= config["model_ms_max"]
    baseline = report["configs"][0]
    assert baseline["blocks_executed_mean"] == report["num_blocks"]  # no BDM: every block runs
    curve = report["cost_curve"]
    assert [p["blocks_executed"] for p in curve] == list(range(report["n_enf"], report["num_blocks"] + 1))
    # the forward time grows with the number of executed blocks (least-squares slope, and the ends;
    # not every step: a shared CPU makes single medians of a few iterations noisy)
    blocks = np.array([p["blocks_executed"] for p in curve], float)
    times = np.array([p["model_ms_median"] for p in curve])
    assert np.polyfit(blocks, times, 1)[0] > 0
    assert times[-1] > times[0]
    assert set(report["per_block_ms"]) == {"block", "block_bdm", "block_bdm_vtp"}
    assert all(v > 0 for v in report["per_block_ms"].values())


def test_bench_bad_arguments():
    assert main(["bench", "--quick", "--iterations", "0"]) == 2
    assert main(["bench", "--quick", "--device", "cpu", "--half"]) == 2


def test_bench_models_from_pruned_checkpoint(tmp_path):
    import torch

    from abtrack_ros.evaluation.bench.subjects import build_bench_models
    from abtrack_ros.config import ABTrackConfig, ModelConfig
    from abtrack_ros.model import build_model, prune_model, save_checkpoint

    cfg = ABTrackConfig(model=ModelConfig(bdm=True, vtp_masks=True))
    pruned = build_model(cfg.model)
    prune_model(pruned, 0.3)
    path = tmp_path / "pruned.pt"
    save_checkpoint(path, pruned, cfg, None)
    models = build_bench_models(str(path))
    assert models.weights == f"checkpoint {path}"
    assert models.bdm_vtp.pruning_plan is not None
    assert models.bdm.pruning_plan is None and models.baseline.pruning_plan is None
    assert models.bdm.bdm_enabled and models.bdm_vtp.bdm_enabled and not models.baseline.bdm_enabled
    # the unpruned models hold the checkpoint's head and BDMs (shapes fit), and full-size blocks
    source = models.bdm_vtp.state_dict()
    for prefix in ("head.", "backbone.decisions."):
        copied = {k: v for k, v in models.bdm.state_dict().items() if k.startswith(prefix)}
        assert copied and all(torch.equal(v, source[k]) for k, v in copied.items())
    pruned_fc1 = models.bdm_vtp.backbone.blocks[0].mlp.fc1.weight.shape[0]
    assert models.bdm.backbone.blocks[0].mlp.fc1.weight.shape[0] > pruned_fc1
