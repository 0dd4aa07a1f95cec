"""One process per device: the same command runs alone or under ``torchrun`` on N GPUs.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them the run is a single
process. The backend is NCCL on CUDA and gloo on CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


@dataclass
class DistributedContext:
    """Where this process runs and which share of the work is its own."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, device: str | None = None) -> "DistributedContext":
        """Read torchrun's variables, pick the device, and join the process group if needed.

        ``device``: "cpu", "cuda" or None (CUDA when available).
        """
        rank, world = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
        local_rank = _env_int("LOCAL_RANK", 0)
        if device not in (None, "cpu", "cuda"):
            raise ValueError(f"--device must be cpu or cuda, got {device!r}")
        use_cuda = torch.cuda.is_available() if device is None else device == "cuda"
        if use_cuda and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but CUDA is not available")
        if use_cuda:
            torch.cuda.set_device(local_rank)
            target = torch.device("cuda", local_rank)
        else:
            target = torch.device("cpu")
        if world > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world)
        return cls(rank=rank, world_size=world, local_rank=local_rank, device=target)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP wrapper for training. ``find_unused_parameters=True`` because a stage can leave
        parameters without gradient on a step (frozen or bypassed paths)."""
        if not self.distributed:
            return model
        device_ids = [self.local_rank] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()
