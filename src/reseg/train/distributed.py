"""Training across processes started by `torchrun` (DistributedDataParallel): the same code, more machines.

`torchrun --nproc_per_node N` sets WORLD_SIZE, RANK and LOCAL_RANK; without them training runs as one process
and nothing here does anything. CPUs talk over gloo, CUDA GPUs over nccl (one GPU per process). Every rank
draws its own batches and DDP averages the gradients, so all ranks hold identical weights after every step;
only rank 0 validates and writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from reseg.devices import resolve_device


@dataclass(frozen=True)
class ProcessGroup:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    joined_here: bool = False  # this call started the group, so it also ends it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self, choice: str) -> torch.device:
        """The training device of this process: its own GPU under torchrun with CUDA, else the usual choice."""
        device = resolve_device(choice)
        if self.distributed and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def wrap(self, network: nn.Module, device: torch.device) -> nn.Module:
        """The module to train: DDP around `network` when distributed (its gradients are averaged)."""
        if not self.distributed:
            return network
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(network, device_ids=ids)

    def synchronize_buffers(self, network: nn.Module) -> None:
        """Make the ranks' buffers equal: average the statistics (batch-norm running means and variances, code
        usage), take rank 0's counters. DDP averages gradients only, and the last step updates every rank's
        statistics from its own batch."""
        if not self.distributed:
            return
        for buffer in network.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
                buffer /= self.world_size
            else:
                dist.broadcast(buffer, src=0)

    def leave(self) -> None:
        if self.joined_here and dist.is_initialized():
            dist.destroy_process_group()


def is_main_process() -> bool:
    """False in the torchrun processes other than rank 0, which must not write or report."""
    return int(os.environ.get("RANK", "0")) == 0


def join(device_choice: str) -> ProcessGroup:
    """Join the torchrun process group if there is one (starting it if nobody has), else a one-process group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return ProcessGroup()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    joined_here = False
    if not dist.is_initialized():
        backend = "nccl" if resolve_device(device_choice).type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
        joined_here = True
    return ProcessGroup(rank, world_size, local_rank, joined_here)
