"""Training throughput (generator steps/s) per spec at crop 256, batch 1 and 8, on this machine.

One step = G forward, ``critic_steps`` WGAN-GP critic updates, one generator update (L1 content),
EMA update: exactly ``Trainer.train_step``. Data loading is excluded (random tensors), so this is
the compute ceiling. Prints a Markdown table with median and p99 seconds per step.

    python benchmarks/train_throughput.py [--specs deblurgan-pico,deblurgan-nano] [--batches 1,8] [--steps 5]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from deblur.train.config import TrainConfig
from deblur.train.trainer import Trainer


def measure(spec: str, batch: int, crop: int, steps: int, critic_steps: int, ndf: int = 0) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(spec=spec, batch=batch, crop=crop, content="l1", out=tmp, critic_steps=critic_steps,
                          tensorboard=False, device="cpu", ndf=ndf)
        t = Trainer(cfg, train_set=None)
        data = {"blur": torch.rand(batch, 3, crop, crop) * 2 - 1, "sharp": torch.rand(batch, 3, crop, crop) * 2 - 1}
        t.train_step(data)  # warm-up
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            t.train_step(data)
            times.append(time.perf_counter() - t0)
        return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--specs", default="deblurgan-pico,deblurgan-nano,deblurgan-lite,deblurgan")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--critic-steps", type=int, default=5)
    p.add_argument("--ndf", type=int, default=0, help="critic width (0 = the spec's, 64)")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, crop {args.crop}, critic_steps {args.critic_steps}, ndf {args.ndf or 64}\n")
    print("| spec | batch | median s/step | p99 s/step | steps/s | images/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for spec in args.specs.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            ts = measure(spec, batch, args.crop, args.steps, args.critic_steps, args.ndf)
            med, p99 = float(np.median(ts)), float(np.percentile(ts, 99))
            print(f"| {spec} | {batch} | {med:.3f} | {p99:.3f} | {1 / med:.2f} | {batch / med:.2f} |", flush=True)


if __name__ == "__main__":
    main()
