"""Mixed precision of the training forward pass: CUDA autocast (``train.amp``, ``amp_dtype``) and
bf16 autocast on CPU (``train.amp_cpu``).

Only the forward pass runs under autocast: the master weights, the gradients and the optimizer
state stay float32, and the losses are computed in float32 (``losses.TrackingCriterion`` casts its
inputs; the trainer decodes the boxes from the maps in float32).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from abtrack_ros.config import TrainConfig

AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
# Linux CPU feature flags of native bf16 arithmetic: x86 AVX-512 BF16 and AMX-BF16, Arm BF16.
# Without them PyTorch emulates bf16, which trains slower than float32.
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
# /proc/cpuinfo names the flag list "flags" on x86 and "Features" on Arm.
CPUINFO_FLAG_KEYS = ("flags", "Features")
CPUINFO = Path("/proc/cpuinfo")


class PrecisionError(ValueError):
    """Mixed precision asked for on a device that cannot run it."""


def cpu_has_native_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """True when the CPU lists a native bf16 instruction set (False where there is no cpuinfo)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in CPUINFO_FLAG_KEYS:
            flags.update(value.split())
    return not flags.isdisjoint(CPU_BF16_FLAGS)


def autocast_dtype(train: TrainConfig, device: torch.device) -> Optional[torch.dtype]:
    """The dtype the forward pass runs in under autocast on ``device``; None = float32.

    CUDA: ``amp_dtype`` when ``amp`` (bfloat16 falls back to float16 on GPUs without it).
    CPU: bfloat16 when ``amp_cpu``; a CPU without native bf16 is an error, not a silent fallback,
    so the resolved config saved beside the checkpoints always says how the run trained.
    """
    if device.type == "cuda":
        if not train.amp:
            return None
        if train.amp_dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return AMP_DTYPES[train.amp_dtype]
    if device.type == "cpu" and train.amp_cpu:
        if not cpu_has_native_bf16():
            raise PrecisionError(
                "train.amp_cpu: true needs a CPU with native bf16 (flags "
                f"{', '.join(sorted(CPU_BF16_FLAGS))} in {CPUINFO}); this one has none, and "
                "emulated bf16 trains slower than float32: set train.amp_cpu: false")
        return torch.bfloat16
    return None
