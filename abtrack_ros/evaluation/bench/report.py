"""The bench's verdicts and tables: speed goals (docs/speed.md), the cost curve's line and fixed
part, and the markdown rendering of a report."""
from __future__ import annotations

from typing import Optional

import numpy as np

from .timing import spread

# The speed goals of docs/speed.md, checked on ratios measured in one run.
GOAL_STEP_FPS = 60.0
GOAL_BDM_OVERHEAD_PCT = 3.0
GOAL_PRUNED_BLOCK_RATIO = 0.75
GOAL_COST_CURVE_DEVIATION_PCT = 10.0
GOAL_AUC_DIFF_POINTS = 0.5
# The value each goal is compared with, for deciding whether its per-round values straddle it.
GOAL_PIVOTS = {"step_fps": GOAL_STEP_FPS, "bdm_overhead_pct": GOAL_BDM_OVERHEAD_PCT,
               "bdm_decision_pct": GOAL_BDM_OVERHEAD_PCT, "pruned_block_ratio": GOAL_PRUNED_BLOCK_RATIO}


def linear_fit(blocks: list[float], times: list[float]) -> tuple[float, float]:
    """Least-squares ``time = intercept + slope * blocks``: (intercept, slope)."""
    slope, intercept = np.polyfit(np.asarray(blocks, float), np.asarray(times, float), 1)
    return float(intercept), float(slope)


def cost_curve_deviation_pct(curve: list[dict]) -> float:
    """Largest deviation of a cost-curve point from the least-squares line, in % of the line."""
    if len(curve) < 3:
        return 0.0  # two points always lie on a line
    blocks = [p["blocks_executed"] for p in curve]
    times = np.array([p["model_ms_median"] for p in curve], float)
    intercept, slope = linear_fit(blocks, times)
    fitted = intercept + slope * np.asarray(blocks, float)
    return float(np.max(np.abs(times - fitted) / fitted) * 100.0)


def fixed_cost(curve: list[dict], head: dict[str, float], stages: dict[str, float],
               confidence_ms: float) -> dict[str, float]:
    """The part of a step that no bypass removes: the cost curve's intercepts (0 blocks run), the
    time per executed block, the head, the tracker's pre- and post-processing, and the
    confidence's share of the post-processing."""
    blocks = [p["blocks_executed"] for p in curve]
    step_intercept, step_slope = linear_fit(blocks, [p["step_ms_median"] for p in curve])
    model_intercept, model_slope = linear_fit(blocks, [p["model_ms_median"] for p in curve])
    return {"step_intercept_ms": step_intercept, "step_ms_per_block": step_slope,
            "model_intercept_ms": model_intercept, "model_ms_per_block": model_slope, **head,
            "preprocess_ms": stages["preprocess"], "postprocess_ms": stages["postprocess"],
            "confidence_ms": confidence_ms}


def goal_spreads(per_round: dict[str, list[float]]) -> dict[str, dict]:
    """Per goal, the spread of its per-round values around the goal (inconclusive if straddled)."""
    return {key: spread(values, pivot=GOAL_PIVOTS[key], relative_limit=None)
            for key, values in per_round.items() if key in GOAL_PIVOTS}


def speed_checks(configs: list[dict], cost_curve: list[dict], ratios: dict[str, float], backends: dict,
                 spreads: Optional[dict[str, dict]] = None) -> dict:
    """The speed goals and whether this run met them (all from ratios of this one run).

    With ``spreads`` (``goal_spreads``), ``conclusive`` says per goal whether the rounds agree on
    which side of the goal the value lies.
    """
    step_fps = next(c["fps"] for c in configs if c["name"] == "bdm_vtp")
    deviation = cost_curve_deviation_pct(cost_curve)
    measured = {"step_fps": step_fps, **ratios, "cost_curve_deviation_pct": deviation}
    met = {"step_fps": step_fps >= GOAL_STEP_FPS,
           "bdm_overhead_pct": ratios["bdm_overhead_pct"] < GOAL_BDM_OVERHEAD_PCT,
           "bdm_decision_pct": ratios["bdm_decision_pct"] < GOAL_BDM_OVERHEAD_PCT,
           "pruned_block_ratio": ratios["pruned_block_ratio"] <= GOAL_PRUNED_BLOCK_RATIO,
           "cost_curve_deviation_pct": deviation <= GOAL_COST_CURVE_DEVIATION_PCT}
    ran = [v for v in backends.get("variants", []) if "skipped" not in v]
    if ran:
        measured["max_abs_auc_diff"] = max(abs(v["auc_diff"]) for v in ran)
        met["max_abs_auc_diff"] = measured["max_abs_auc_diff"] <= GOAL_AUC_DIFF_POINTS
    goals = {"step_fps": f">= {GOAL_STEP_FPS}", "bdm_overhead_pct": f"< {GOAL_BDM_OVERHEAD_PCT}",
             "bdm_decision_pct": f"< {GOAL_BDM_OVERHEAD_PCT} (the decision alone)",
             "bypass_token_pct": "(informative: the bypass token's share of the overhead)",
             "pruned_block_ratio": f"<= {GOAL_PRUNED_BLOCK_RATIO}",
             "cost_curve_deviation_pct": f"<= {GOAL_COST_CURVE_DEVIATION_PCT}",
             "max_abs_auc_diff": f"<= {GOAL_AUC_DIFF_POINTS} (points, every backend vs torch fp32)"}
    checks = {"measured": measured, "goals": goals, "met": met}
    if spreads is not None:
        checks["spread"] = spreads
        checks["conclusive"] = {key: s["conclusive"] for key, s in spreads.items()}
    return checks


def _spread_cell(s: dict) -> str:
    verdict = "" if s["conclusive"] else " (inconclusive)"
    return f"{s['median']:.3f} [{s['q1']:.3f}, {s['q3']:.3f}] ({s['min']:.3f}..{s['max']:.3f}){verdict}"


def format_table(report: dict) -> str:
    """Markdown tables of a report (configs, ratios, cost curve, fixed cost, per-block costs, backends, checks)."""
    lines = [f"weights: {report['weights']}",
             f"device: {report['device']} ({report['device_name']}), {report['dtype']}, threads {report['threads']}, "
             f"backbone {report['backbone']}", "",
             "| config | model ms (median [min, max]) | step ms (median [min, max]) | FPS | blocks run |",
             "|---|---|---|---|---|"]
    for c in report["configs"]:
        lines.append(f"| {c['name']} | {c['model_ms_median']:.2f} [{c['model_ms_min']:.2f}, {c['model_ms_max']:.2f}] | "
                     f"{c['step_ms_median']:.2f} [{c['step_ms_min']:.2f}, {c['step_ms_max']:.2f}] | {c['fps']:.1f} | "
                     f"{c['blocks_executed_mean']:.2f} |")
    if report.get("ratios"):
        lines += ["", "| per-round ratio | median [IQR] (min..max) |", "|---|---|"]
        lines += [f"| {name} | {_spread_cell(s)} |" for name, s in report["ratios"].items()]
    lines += ["", "| blocks executed | model ms (median) | step ms (median) |", "|---|---|---|"]
    lines += [f"| {p['blocks_executed']} | {p['model_ms_median']:.2f} | {p.get('step_ms_median', float('nan')):.2f} |"
              for p in report["cost_curve"]]
    if report.get("fixed_cost"):
        lines += ["", "| fixed cost | ms |", "|---|---|"]
        lines += [f"| {key} | {value:.3f} |" for key, value in report["fixed_cost"].items()]
    b = report["per_block_ms"]
    lines += ["", "| ViT block | + BDM | + BDM + VTP |", "|---|---|---|",
              f"| {b['block']:.3f} ms | {b['block_bdm']:.3f} ms | {b['block_bdm_vtp']:.3f} ms |"]
    if report.get("backends"):
        section = report["backends"]
        lines += ["", f"backends ({section['config']}; AUC on {section['accuracy_dataset']}):", "",
                  "| backend | step ms (median [min, max]) | FPS | AUC | AUC diff vs " + section["reference"] + " |",
                  "|---|---|---|---|---|"]
        for r in section["variants"]:
            if "skipped" in r:
                lines.append(f"| {r['name']} | skipped: {r['skipped']} | | | |")
                continue
            step = f"{r['step_ms_median']:.2f} [{r['step_ms_min']:.2f}, {r['step_ms_max']:.2f}]"
            lines.append(f"| {r['name']} | {step} | {r['fps']:.1f} | {r['auc']:.2f} | {r['auc_diff']:+.2f} |")
    if report.get("speed_checks"):
        checks = report["speed_checks"]
        conclusive = checks.get("conclusive", {})
        lines += ["", "| speed check | measured | goal | met |", "|---|---|---|---|"]
        verdict = {True: "yes", False: "NO", None: "-"}
        lines += [f"| {key} | {value:.3f} | {checks['goals'][key]} | {verdict[checks['met'].get(key)]}"
                  f"{'' if conclusive.get(key, True) else ' (inconclusive)'} |"
                  for key, value in checks["measured"].items()]
    if report.get("warnings"):
        lines += ["", "warnings:", *(f"- {w}" for w in report["warnings"])]
    return "\n".join(lines)
