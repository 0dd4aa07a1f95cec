"""The speed part of `abtrack bench`: interleaved rounds and their statistics (pure, deterministic),
the speed checks, and one toy-size run for the JSON keys (backends comparison included)."""
import json
import math

import pytest

from abtrack_ros.cli import main
from abtrack_ros.config import ABTrackConfig, ModelConfig
from abtrack_ros.evaluation.bench.measure import optional_patterns
from abtrack_ros.evaluation.bench.report import (GOAL_COST_CURVE_DEVIATION_PCT, GOAL_STEP_FPS, cost_curve_deviation_pct,
                                                 fixed_cost, goal_spreads, linear_fit, speed_checks)
from abtrack_ros.evaluation.bench.timing import (SPREAD_LIMIT, Job, Rounds, per_round_ratios, round_orders, spread,
                                                 spread_warnings, time_in_rounds)
from abtrack_ros.model import build_model, save_checkpoint


def _curve(times, step_times=None):
    step_times = step_times or times
    return [{"blocks_executed": 2 + i, "model_ms_median": t, "step_ms_median": s}
            for i, (t, s) in enumerate(zip(times, step_times))]


class FakeWatch:
    """A clock whose every call costs ``costs[job]`` times a load that grows by ``drift`` per call."""

    def __init__(self, costs, drift=0.0):
        self.costs, self.drift, self.calls, self.log = costs, drift, 0, []

    def sample_ms(self, fn):
        name = fn()
        self.log.append(name)
        self.calls += 1
        return self.costs[name] * (1.0 + self.drift * self.calls)


def _jobs(names):
    return [Job(name, lambda name=name: name) for name in names]


def test_round_orders_are_seeded_permutations():
    orders = round_orders(4, 12, seed=3)
    assert orders == round_orders(4, 12, seed=3)  # same seed, same orders
    assert orders != round_orders(4, 12, seed=4)
    assert all(sorted(order) == [0, 1, 2, 3] for order in orders)  # every job once per round
    assert len({tuple(order) for order in orders}) > 1  # not one fixed order
    assert len({order[0] for order in orders}) > 1  # no job is always first


def test_time_in_rounds_calls_jobs_in_the_rounds_order():
    watch = FakeWatch({"a": 1.0, "b": 2.0, "c": 3.0})
    timed = time_in_rounds(_jobs("abc"), rounds=4, per_round=2, warmup=1, watch=watch, seed=7)
    expected = ["a", "b", "c"]  # warm-up, in job order
    for order in round_orders(3, 4, seed=7):
        expected += [name for index in order for name in ["abc"[index]] * 2]
    assert watch.log == expected
    assert [len(r) for r in timed["b"].samples] == [2, 2, 2, 2]
    assert timed["c"].round_medians() == [3.0] * 4
    with pytest.raises(ValueError, match="rounds"):
        time_in_rounds(_jobs("a"), rounds=0, per_round=1, warmup=0, watch=watch, seed=0)


def test_untimed_before_runs_before_every_call():
    watch, seen = FakeWatch({"a": 1.0}), []
    time_in_rounds([Job("a", lambda: seen.append("run") or "a", before=lambda: seen.append("before"))],
                   rounds=2, per_round=2, warmup=1, watch=watch, seed=0)
    assert seen == ["before", "run"] * 5


def test_rounds_cancel_a_drifting_load():
    # Two equally fast jobs while the machine slows down by 1 % per call: timed one after the other
    # the second looks far slower; in rounds their per-round ratio stays near 1.
    costs = {"a": 1.0, "b": 1.0}
    sequential = time_in_rounds(_jobs("ab"), rounds=1, per_round=100, warmup=0, watch=FakeWatch(costs, 0.01), seed=0)
    interleaved = time_in_rounds(_jobs("ab"), rounds=20, per_round=5, warmup=0, watch=FakeWatch(costs, 0.01), seed=0)

    def ratio(timed):
        return spread(per_round_ratios(timed["b"].round_medians(), timed["a"].round_medians()), pivot=1.0)

    assert abs(math.log(ratio(sequential)["median"])) > 0.3
    assert ratio(interleaved)["median"] == pytest.approx(1.0, abs=0.05)


def test_rounds_stats_are_medians_over_rounds():
    stats = Rounds([[1.0, 9.0, 2.0], [3.0, 3.0, 3.0], [4.0, 0.5, 5.0]]).stats()
    assert (stats.median_ms, stats.min_ms, stats.max_ms) == (3.0, 0.5, 9.0)  # round medians 2, 3, 4
    assert per_round_ratios([2.0, 3.0], [1.0, 4.0]) == [2.0, 0.75]
    with pytest.raises(ValueError, match="rounds"):
        per_round_ratios([1.0], [1.0, 2.0])


def test_spread_rule():
    steady = spread([0.70, 0.71, 0.72, 0.73, 0.74], pivot=1.0)
    assert steady["conclusive"] and steady["median"] == pytest.approx(0.72)
    assert (steady["q1"], steady["q3"]) == (pytest.approx(0.71), pytest.approx(0.73))
    straddling = spread([0.9, 0.95, 1.02, 1.05, 1.1], pivot=1.0)  # which is faster depends on the round
    assert not straddling["conclusive"] and "straddles 1" in straddling["why_inconclusive"]
    wide = spread([0.5, 0.6, 0.7, 0.8, 0.9], pivot=1.0)  # IQR 0.6..0.8 = 29 % of 0.7
    assert wide["iqr_rel"] > SPREAD_LIMIT and not wide["conclusive"] and "%" in wide["why_inconclusive"]
    # a small share: wide relative to itself, clearly below its goal
    assert spread([1.0, 1.5, 2.0, 2.5, 3.0], pivot=3.5, relative_limit=None)["conclusive"]
    warnings = spread_warnings({"steady": steady, "wide": wide})
    assert len(warnings) == 1 and warnings[0].startswith("wide: too noisy")


def test_cost_curve_fit_deviation_and_fixed_cost():
    assert linear_fit([2, 3, 4], [10.0, 12.0, 14.0]) == (pytest.approx(6.0), pytest.approx(2.0))
    assert cost_curve_deviation_pct(_curve([10.0, 12.0, 14.0, 16.0])) == pytest.approx(0.0, abs=1e-9)
    assert cost_curve_deviation_pct(_curve([10.0, 15.0, 14.0, 16.0])) > GOAL_COST_CURVE_DEVIATION_PCT  # a kink
    assert cost_curve_deviation_pct(_curve([5.0, 9.0])) == 0.0
    fixed = fixed_cost(_curve([10.0, 12.0, 14.0], [11.0, 13.5, 16.0]), {"head_ms": 1.0, "head_unfused_ms": 2.0},
                       {"preprocess": 0.3, "postprocess": 0.4}, 0.05)
    assert fixed["model_intercept_ms"] == pytest.approx(6.0) and fixed["model_ms_per_block"] == pytest.approx(2.0)
    assert fixed["step_intercept_ms"] == pytest.approx(6.0) and fixed["step_ms_per_block"] == pytest.approx(2.5)
    assert (fixed["head_ms"], fixed["preprocess_ms"], fixed["postprocess_ms"], fixed["confidence_ms"]) == (1.0, 0.3, 0.4, 0.05)


def test_optional_patterns():
    assert optional_patterns(4, 1) == [[True, False, False, False], [True, True, False, False],
                                       [True, True, True, False], [True, True, True, True]]


def test_speed_checks_flags_each_goal():
    configs = [{"name": "bdm_vtp", "fps": 61.0}]
    backends = {"variants": [{"auc_diff": 0.0}, {"auc_diff": -0.7}, {"skipped": "no package"}]}
    ratios = {"bdm_overhead_pct": 3.5, "bdm_decision_pct": 0.5, "bypass_token_pct": 3.0, "pruned_block_ratio": 0.8}
    checks = speed_checks(configs, _curve([10.0, 12.0, 14.0]), ratios, backends)
    assert checks["met"] == {"step_fps": True, "bdm_overhead_pct": False, "bdm_decision_pct": True,
                             "pruned_block_ratio": False, "cost_curve_deviation_pct": True, "max_abs_auc_diff": False}
    assert checks["measured"]["max_abs_auc_diff"] == pytest.approx(0.7)
    assert "conclusive" not in checks
    spreads = goal_spreads({"step_fps": [55.0, 58.0, 61.0, 64.0, 66.0], "bdm_decision_pct": [0.4, 0.5, 0.6, 0.5, 0.5],
                            "bypass_token_pct": [1.0, 2.0, 3.0, 4.0, 5.0]})
    assert set(spreads) == {"step_fps", "bdm_decision_pct"}  # the token share has no goal
    assert spreads["step_fps"]["pivot"] == GOAL_STEP_FPS
    checks = speed_checks(configs, _curve([10.0, 12.0, 14.0]), ratios, backends, spreads)
    assert checks["conclusive"] == {"step_fps": False, "bdm_decision_pct": True}


def test_bench_json_keys_at_toy_size(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    # Small crops and 3 blocks keep this fast; the bench prunes the (unpruned) checkpoint itself.
    cfg = ABTrackConfig(model=ModelConfig(template_size=32, search_size=64, depth=3, n_enf=1, bdm=True,
                                          vtp_masks=True, head_channels=32))
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, build_model(cfg.model), cfg)
    assert main(["bench", "--json", "--quick", "--rounds", "3", "--threads", "1", "--checkpoint", str(path),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    for key in ("configs", "cost_curve", "per_block_ms", "weights", "versions", "backend", "settings",
                "speed_checks", "backends"):  # the keys the bench always had
        assert key in report
    assert report["settings"]["rounds"] == 3 and "interleaved rounds" in report["timing_method"]
    for config in report["configs"]:
        assert config["model_ms_min"] <= config["model_ms_median"] <= config["model_ms_max"]
        assert config["step_ms_min"] <= config["step_ms_median"] <= config["step_ms_max"]
    assert all(p["step_ms_median"] > 0 for p in report["cost_curve"])
    assert set(report["fixed_cost"]) == {"step_intercept_ms", "step_ms_per_block", "model_intercept_ms",
                                         "model_ms_per_block", "head_ms", "head_unfused_ms", "preprocess_ms",
                                         "postprocess_ms", "confidence_ms"}
    # The confidence is a part of the post-processing.
    assert 0 < report["fixed_cost"]["confidence_ms"] < report["fixed_cost"]["postprocess_ms"]
    ratios = report["ratios"]
    assert {"step_bdm_vs_baseline", "step_bdm_vtp_vs_baseline", "model_bdm_vtp_vs_baseline",
            "head_fused_vs_unfused", "step_onnxruntime_fp32_vs_torch_fp32"} <= set(ratios)
    for value in ratios.values():
        assert value["rounds"] == 3 and value["min"] <= value["q1"] <= value["median"] <= value["q3"] <= value["max"]
    for warning in report["warnings"]:  # each one is also on stderr
        assert warning in captured.err
    section = report["backends"]
    assert section["config"] == "bdm_vtp" and section["reference"] == "torch_fp32"
    assert [v["name"] for v in section["variants"]] == ["torch_fp32", "torch_bf16", "onnxruntime_fp32",
                                                        "onnxruntime_int8"]
    for variant in section["variants"]:
        assert variant["step_ms_min"] <= variant["step_ms_median"] <= variant["step_ms_max"]
        assert variant["fps"] == pytest.approx(1000.0 / variant["step_ms_median"])
        assert 0.0 <= variant["auc"] <= 100.0
    assert section["variants"][0]["auc_diff"] == 0.0
    assert abs(section["variants"][2]["auc_diff"]) <= 0.5  # onnxruntime fp32 parity: the same boxes
    assert list((tmp_path / "cache" / "onnx").iterdir())  # graphs cached where asked
    checks = report["speed_checks"]
    assert set(checks["measured"]) == {"step_fps", "bdm_overhead_pct", "bdm_decision_pct", "bypass_token_pct",
                                       "pruned_block_ratio", "cost_curve_deviation_pct", "max_abs_auc_diff"}
    assert set(checks["met"]) == set(checks["measured"]) - {"bypass_token_pct"}
    assert set(checks["conclusive"]) == {"step_fps", "bdm_overhead_pct", "bdm_decision_pct", "pruned_block_ratio"}
    assert checks["measured"]["pruned_block_ratio"] > 0
