"""The speed part of `abtrack bench`: the backends comparison (time + accuracy in one run) and the
speed checks computed from ratios of that run."""
import json

import pytest
import torch

from abtrack_ros.bench import (GOAL_COST_CURVE_DEVIATION_PCT, Stopwatch, cost_curve_deviation_pct,
                               interleaved_stats, speed_checks)
from abtrack_ros.cli import main
from abtrack_ros.config import ABTrackConfig, ModelConfig
from abtrack_ros.model import build_model, save_checkpoint

pytest.importorskip("onnxruntime")


def _curve(times):
    return [{"blocks_executed": 2 + i, "model_ms_median": t} for i, t in enumerate(times)]


def test_cost_curve_deviation():
    assert cost_curve_deviation_pct(_curve([10.0, 12.0, 14.0, 16.0])) == pytest.approx(0.0, abs=1e-9)
    # a kink: the middle point 3 ms above a line through 10..16
    bent = cost_curve_deviation_pct(_curve([10.0, 15.0, 14.0, 16.0]))
    assert bent > GOAL_COST_CURVE_DEVIATION_PCT
    assert cost_curve_deviation_pct(_curve([5.0, 9.0])) == 0.0


def test_speed_checks_flags_each_goal():
    configs = [{"name": "bdm_vtp", "fps": 61.0}]
    backends = {"variants": [{"auc_diff": 0.0}, {"auc_diff": -0.7}, {"skipped": "no package"}]}
    ratios = {"bdm_overhead_pct": 3.5, "bdm_decision_pct": 0.5, "bypass_token_pct": 3.0, "pruned_block_ratio": 0.8}
    checks = speed_checks(configs, _curve([10.0, 12.0, 14.0]), ratios, backends)
    assert checks["met"] == {"step_fps": True, "bdm_overhead_pct": False, "bdm_decision_pct": True,
                             "pruned_block_ratio": False, "cost_curve_deviation_pct": True, "max_abs_auc_diff": False}
    assert checks["measured"]["max_abs_auc_diff"] == pytest.approx(0.7)


def test_interleaved_stats_time_calls_in_turn():
    calls = []
    fast, slow = interleaved_stats([lambda: calls.append("a"), lambda: calls.append("b") or sum(range(50000))],
                                   iterations=5, warmup=1, watch=Stopwatch(torch.device("cpu")))
    assert calls == ["a", "b"] * 6  # alternating, warm-up included
    assert 0 < fast.median_ms < slow.median_ms and slow.min_ms <= slow.median_ms <= slow.max_ms


def test_bench_json_has_backends_and_speed_checks(tmp_path, capsys):
    # Small crops and 3 blocks keep this fast; the bench prunes the (unpruned) checkpoint itself.
    cfg = ABTrackConfig(model=ModelConfig(template_size=32, search_size=64, depth=3, n_enf=1, bdm=True,
                                          vtp_masks=True, head_channels=32))
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, build_model(cfg.model), cfg)
    assert main(["bench", "--json", "--quick", "--threads", "1", "--checkpoint", str(path),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("configs", "cost_curve", "per_block_ms", "weights", "versions", "backend"):  # existing keys stay
        assert key in report
    section = report["backends"]
    assert section["config"] == "bdm_vtp" and section["reference"] == "torch_fp32"
    names = [v["name"] for v in section["variants"]]
    assert names == ["torch_fp32", "torch_bf16", "onnxruntime_fp32", "onnxruntime_int8"]
    for variant in section["variants"]:
        assert variant["step_ms_min"] <= variant["step_ms_median"] <= variant["step_ms_max"]
        assert variant["fps"] == pytest.approx(1000.0 / variant["step_ms_median"])
        assert 0.0 <= variant["auc"] <= 100.0
    assert section["variants"][0]["auc_diff"] == 0.0
    onnx_fp32 = section["variants"][2]
    assert abs(onnx_fp32["auc_diff"]) <= 0.5  # fp32 parity: the same boxes
    assert list((tmp_path / "cache" / "onnx").iterdir())  # graphs cached where asked
    checks = report["speed_checks"]
    assert set(checks["measured"]) == {"step_fps", "bdm_overhead_pct", "bdm_decision_pct", "bypass_token_pct",
                                       "pruned_block_ratio", "cost_curve_deviation_pct", "max_abs_auc_diff"}
    assert set(checks["met"]) == set(checks["measured"]) - {"bypass_token_pct"}
    assert checks["measured"]["pruned_block_ratio"] > 0
