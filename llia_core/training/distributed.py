"""Data-parallel training on ``torch.distributed``: one process per device, launched by torchrun.

``torchrun --nproc-per-node N -m llia_core train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; each
rank draws its own batches, DistributedDataParallel averages the gradients (gloo on CPUs, NCCL on
GPUs), so every rank takes the same optimizer step and the weights stay identical, which
:func:`DistContext.check_in_sync` verifies exactly at every save. Rank 0 alone writes checkpoints,
logs and the progress bar; every rank resumes from the same state file. Without torchrun this is a
single process and nothing changes.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this context started the process group (and ends it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel around ``module`` (unchanged in one process)."""
        if not self.active:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        # parts of the model get no gradient in a step (the ReferenceNet's output layers, heads of other
        # stages), so DDP has to look for them
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)

    def any(self, flag: bool) -> bool:
        """True on every rank if it is True on one (a time budget must stop all ranks at the same step)."""
        if not self.active:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self._wire)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks (for the log)."""
        if not self.active:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self._wire)
        dist.all_reduce(t)
        return float(t.item()) / self.world

    def check_in_sync(self, model: torch.nn.Module) -> float:
        """Largest difference of a weight fingerprint between ranks (0.0 when in step); raises if not 0."""
        if not self.active:
            return 0.0
        with torch.no_grad():
            mine = torch.stack([torch.stack([p.double().sum(), p.double().square().sum()])
                                for p in model.parameters()]).flatten().to(self._wire)
        every = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(every, mine)
        spread = max(float((e - every[0]).abs().max()) for e in every)
        if spread != 0.0:
            raise RuntimeError(f"the {self.world} training ranks' weights differ by {spread:g}; they must be "
                               "identical after every step (a rank ran different code or a non-deterministic reduce)")
        return spread

    @property
    def _wire(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            from ..errors import LLIAError

            raise LLIAError("--device cuda but PyTorch sees no CUDA GPU; use --device cpu or a CUDA build of torch")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def start(device: str = "auto") -> DistContext:
    """Join the process group torchrun describes (if any) and pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local)
    owns = False
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=datetime.timedelta(minutes=30))
        owns = True
    return DistContext(rank, world, local, dev, owns)
