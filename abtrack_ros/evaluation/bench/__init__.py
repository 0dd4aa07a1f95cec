"""`abtrack bench`: speed of the model and of the whole tracker step, for the three configurations
of the paper's ablation (baseline, +BDM, +BDM+VTP), the cost curve over the number of executed
blocks and its fixed part, the per-block costs of Table 4, the head, and every backend.

All timings are at batch 1, after warm-up, in interleaved rounds (``timing.py``): the things a
ratio compares are timed in the same rounds, and each ratio comes with the spread of its
per-round values. How the three models are obtained from one checkpoint is in docs/tracking.md.

Modules: ``timing`` (rounds and spread statistics, pure), ``subjects`` (models and sequence),
``measure`` (the measurements), ``compare`` (backends, with accuracy), ``report`` (goals, fits,
tables), ``run`` (``run_benchmark``).
"""
from .measure import BenchSettings
from .report import format_table
from .run import run_benchmark

__all__ = ["BenchSettings", "format_table", "run_benchmark"]
