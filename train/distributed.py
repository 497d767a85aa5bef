"""torchrun support and the deterministic batch stream that makes resume exact.

Which sample a rank sees at global step ``s`` is a pure function of (seed, s, rank, world size):
there is no sampler state to save, and a run resumed at step ``s`` sees the same data as one that
never stopped.
"""
from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_world(device: str) -> World:
    """Join the torchrun process group (gloo on CPU, NCCL on CUDA) when WORLD_SIZE > 1."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def close_world(world: World) -> None:
    """Destroy the group, then free what still held it while the interpreter is whole: a gloo group
    freed during interpreter finalisation ends in SIGABRT (``terminate called without an active
    exception``)."""
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
        gc.collect()


def average_gradients(module: torch.nn.Module, world: World) -> None:
    """All-reduce the critic's gradients in one flat buffer.

    The critic is not wrapped in DistributedDataParallel: DDP's reducer does not support the
    double backward of the gradient penalty, so its gradients are averaged here instead.
    """
    if not world.distributed:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world.size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def any_rank(flags: list[bool], world: World, device: torch.device) -> list[bool]:
    """OR of per-rank flags, so every rank takes the same branch (stop, roll back)."""
    if not world.distributed:
        return flags
    t = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def broadcast_module(module: torch.nn.Module, world: World) -> None:
    if world.distributed:
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def replicas_identical(modules: list[torch.nn.Module], world: World) -> bool:
    """Gather every rank's weights and compare them bit for bit with rank 0's."""
    if not world.distributed:
        return True
    flat = torch.cat([p.detach().reshape(-1).float() for m in modules for p in m.state_dict().values()])
    gathered = [torch.empty_like(flat) for _ in range(world.size)]
    dist.all_gather(gathered, flat)
    return all(torch.equal(gathered[0], g) for g in gathered[1:])


class StepBatches:
    """Batch sampler: lists of ``(epoch, index)`` for global steps ``start .. steps - 1``.

    Global position p = step * batch * world + rank * batch + j; epoch = p // n; index = a
    permutation of range(n) seeded by (seed, epoch).
    """

    def __init__(self, n: int, batch: int, seed: int, start: int, steps: int, world: World = World()):
        self.n, self.batch, self.seed, self.start, self.steps, self.world = n, batch, seed, start, steps, world
        self._perm: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n))
        return self._perm[1]

    def batch_at(self, step: int) -> list[tuple[int, int]]:
        base = (step * self.world.size + self.world.rank) * self.batch
        out = []
        for p in range(base, base + self.batch):
            epoch, k = divmod(p, self.n)
            out.append((epoch, int(self._permutation(epoch)[k])))
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.steps):
            yield self.batch_at(step)

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


class EpochItems(Dataset):
    """Index a dataset by ``(epoch, index)`` so per-item randomness depends on the epoch too."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[index]
