"""Training throughput (generator steps/s) per spec at crop 256, batch 1 and 8, on this machine.

One step = G forward, ``critic_steps`` WGAN-GP critic updates, one generator update (L1 content),
EMA update: exactly ``Trainer.train_step``. Data loading is excluded (random tensors), so this is
the compute ceiling. Prints a Markdown table with median and p99 seconds per step.

    python benchmarks/train_throughput.py [--specs deblurgan-pico,deblurgan-nano] [--batches 1,8] [--steps 5]

With ``--data DIR`` (sharp photos; repeatable) it measures the synthetic data pipeline instead, for
each ``--variant NAME="key=value ..."`` of the synthesis settings (TrainConfig keys, default: the
paper's synthesis, the kernel bank, a realistic recipe, and that recipe with pair reuse), in
alternating rounds: samples/s of the dataset alone in one process, samples/s through the trainer's
DataLoader (``StepBatches`` over ``EpochItems``, ``--workers`` processes), and the full step (waiting
for the next batch + ``Trainer.train_step``) with that loader feeding the first spec:

    python benchmarks/train_throughput.py --data ../shared/data/sharp/kodak24 --specs deblurgan-pico --batches 8 --crop 128
"""
from __future__ import annotations

import argparse
import itertools
import shlex
import tempfile
import time

import numpy as np
import torch

from deblur.train.config import TrainConfig, parse_set, set_value
from deblur.train.trainer import Trainer

REALISTIC = ("kernel_bank=2000 blur_min_len=4 linear_light=true camera_curve=srgb highlights=0.25 "
             "noise_model=poisson-gaussian jpeg_prob=0.5 jpeg_min_quality=60 shake_max_step=0.5 shake_pan_max=1000 "
             "blur_methods='{trajectory: 2, gopro: 1}'")
VARIANTS = ("paper=", "paper-gopro=blur_methods='{trajectory: 2, gopro: 1}'", "bank=kernel_bank=2000",
            f"realistic={REALISTIC}", f"realistic-reuse2={REALISTIC} pair_reuse=2")


def measure(spec: str, batch: int, crop: int, steps: int, critic_steps: int, ndf: int = 0, settings: str = "") -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _config(settings, spec, batch, crop, critic_steps, ndf, 0, tmp, [])
        t = Trainer(cfg, train_set=None)
        data = {"blur": torch.rand(batch, 3, crop, crop) * 2 - 1, "sharp": torch.rand(batch, 3, crop, crop) * 2 - 1}
        t.train_step(data)  # warm-up
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            t.train_step(data)
            times.append(time.perf_counter() - t0)
        return times


def _config(settings: str, spec: str, batch: int, crop: int, critic_steps: int, ndf: int, workers: int,
            out: str, sharp: list[str]) -> TrainConfig:
    cfg = TrainConfig(spec=spec, batch=batch, crop=crop, content="l1", out=out, critic_steps=critic_steps,
                      tensorboard=False, device="cpu", ndf=ndf, workers=workers, sharp=sharp)
    for k, v in parse_set(shlex.split(settings)).items():
        set_value(cfg, k, v)
    return cfg


def _dataset(cfg: TrainConfig, length: int):
    from deblur.train.datasets import SyntheticDataset, synthesis_options

    methods, sensor, synth = synthesis_options(cfg)
    t0 = time.perf_counter()
    ds = SyntheticDataset(cfg.sharp, crop=cfg.crop, methods=methods, seed=cfg.seed, length=length, sensor=sensor,
                          max_side=cfg.max_side or None, synth=synth)
    return ds, time.perf_counter() - t0


def _loader(cfg: TrainConfig, ds, start_step: int, steps: int):
    from torch.utils.data import DataLoader

    from deblur.train.distributed import EpochItems, StepBatches

    sampler = StepBatches(len(ds), cfg.batch, cfg.seed, start_step, start_step + steps)
    return DataLoader(EpochItems(ds), batch_sampler=sampler, num_workers=cfg.workers, persistent_workers=False,
                      generator=torch.Generator().manual_seed(cfg.seed))


def measure_data(cfg: TrainConfig, ds, items: int, batches: int, steps: int, start: int) -> dict[str, float]:
    """Samples/s of the dataset alone (1 process), of the trainer's loader, and the full step (s)."""
    from deblur.train.distributed import StepBatches

    order = [k for b in itertools.islice(iter(StepBatches(len(ds), 1, cfg.seed, start, start + items)), items) for k in b]
    t0, c0 = time.perf_counter(), time.process_time()
    for epoch, index in order:
        ds.set_epoch(epoch)
        ds[index]
    single, cpu_ms = items / (time.perf_counter() - t0), (time.process_time() - c0) / items * 1e3
    t0 = time.perf_counter()  # worker start-up included: timing after the first batch would count prefetched ones
    for _ in _loader(cfg, ds, start, batches):
        pass
    loader = batches * cfg.batch / (time.perf_counter() - t0)
    if steps == 0:  # data only
        return {"cpu_ms": cpu_ms, "single": single, "loader": loader, "step": float("nan"), "step_mean": float("nan")}
    trainer = Trainer(cfg, train_set=None)
    it = iter(_loader(cfg, ds, start + 10 * batches, steps + 2))
    trainer.train_step(next(it))  # warm-up
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        trainer.train_step(next(it))
        times.append(time.perf_counter() - t0)
    return {"cpu_ms": cpu_ms, "single": single, "loader": loader, "step": float(np.median(times[1:])),
            "step_mean": float(np.mean(times[1:]))}


def main_data(args: argparse.Namespace) -> None:
    spec, batch = args.specs.split(",")[0], int(args.batches.split(",")[0])
    variants = [v.partition("=")[::2] for v in (args.variant or VARIANTS)]
    with tempfile.TemporaryDirectory() as tmp:
        cfgs = {name: _config(f"{args.common} {settings}", spec, batch, args.crop, args.critic_steps, args.ndf,
                              args.workers, tmp, args.data) for name, settings in variants}
        built = {name: _dataset(cfg, 10**6) for name, cfg in cfgs.items()}
        ceiling = float(np.median(measure(spec, batch, args.crop, args.steps, args.critic_steps, args.ndf, args.common))
                        if args.steps else "nan")
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {spec}, batch {batch}, crop {args.crop}, "
              f"critic_steps {args.critic_steps}, {args.workers} loader workers, common settings: {args.common or '-'}; "
              f"model step on random tensors: {ceiling:.3f} s\n", flush=True)
        rows: dict[str, list[dict[str, float]]] = {name: [] for name in cfgs}
        for r in range(args.rounds):  # alternate the variants: the machine's load drifts
            for name, cfg in cfgs.items():
                rows[name].append(measure_data(cfg, built[name][0], args.items, args.loader_batches, args.steps,
                                               start=1000 * r))
        print("| synthesis | setup s | data CPU ms/sample | data samples/s, 1 process | loader samples/s | "
              "full step s (median) | full step s (mean) | images/s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, rs in rows.items():
            med = {k: float(np.median([x[k] for x in rs])) for k in rs[0]}
            print(f"| {name} | {built[name][1]:.1f} | {med['cpu_ms']:.1f} | {med['single']:.1f} | {med['loader']:.1f} | {med['step']:.3f} | "
                  f"{med['step_mean']:.3f} | {batch / med['step_mean']:.1f} |", flush=True)
        for name, settings in variants:
            print(f"\n{name}: {settings or '(defaults)'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--specs", default="deblurgan-pico,deblurgan-nano,deblurgan-lite,deblurgan")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--steps", type=int, default=5, help="timed steps (with --data, 0 = time the data only)")
    p.add_argument("--critic-steps", type=int, default=5)
    p.add_argument("--ndf", type=int, default=0, help="critic width (0 = the spec's, 64)")
    p.add_argument("--data", action="append", metavar="DIR", help="sharp photos: measure data loading too (repeatable)")
    p.add_argument("--variant", action="append", metavar='NAME="k=v ..."', help="synthesis settings to compare (repeatable)")
    p.add_argument("--common", default="", metavar='"k=v ..."',
                   help='settings for every run, e.g. "adv_weight=0" (the WGAN-GP critic otherwise dominates a CPU step)')
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers with --data")
    p.add_argument("--items", type=int, default=64, help="items timed in one process with --data")
    p.add_argument("--loader-batches", type=int, default=24, help="batches timed through the loader with --data")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds with --data")
    args = p.parse_args()
    if args.data:
        main_data(args)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, crop {args.crop}, critic_steps {args.critic_steps}, ndf {args.ndf or 64}\n")
    print("| spec | batch | median s/step | p99 s/step | steps/s | images/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for spec in args.specs.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            ts = measure(spec, batch, args.crop, args.steps, args.critic_steps, args.ndf, args.common)
            med, p99 = float(np.median(ts)), float(np.percentile(ts, 99))
            print(f"| {spec} | {batch} | {med:.3f} | {p99:.3f} | {1 / med:.2f} | {batch / med:.2f} |", flush=True)


if __name__ == "__main__":
    main()
