"""``deblur-train``: train a DeblurGAN generator with the paper's recipe (see ``--help``)."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from deblur.runtime.cli import make_parser, run
from deblur.runtime.errors import InputError
from deblur.runtime.fileio import check_writable_folder
from deblur.runtime.spec import list_specs
from deblur.runtime.zoo import BUNDLED_HINT
from deblur.train.config import TrainConfig, check_ranges, load_yaml, parse_set, set_value, validate

log = logging.getLogger("deblur")

EPILOG = """examples:
  # synthetic pairs from sharp photos, L1 content loss (no VGG weights needed)
  deblur-train --sharp photos/ --val-sharp held_out/ --spec deblurgan-nano --content l1 --steps 20000 --out runs/nano
  # the paper's recipe on GoPro (perceptual loss needs vgg19-dcbb9e9d.pth)
  deblur-train --pairs GOPRO_Large/ --vgg-weights vgg19-dcbb9e9d.pth --set halve=true --out runs/paper
  # continue after Ctrl-C or a crash; or change any setting
  deblur-train --out runs/nano --resume
  # start from trained weights with a fresh optimiser (a new run of a release; fine-tune on your camera)
  deblur-train --init default --sharp my_camera_frames/ --content l1 --steps 2000 --out runs/mine
  deblur-train --out runs/nano --resume
  deblur-train --config runs/nano/config.yaml --set lr=5e-5 --set blur_methods="{trajectory: 2, gopro: 1}"
  # two processes (gloo on CPU, NCCL on GPU)
  torchrun --nproc_per_node 2 -m deblur.train.train_cli --sharp photos/ --out runs/ddp

Writes OUT/config.yaml, OUT/ckpt_*.pth (last --set keep=K), OUT/g.pth (the EMA generator, for
deblur-export --ckpt and deblur-eval --model), OUT/metrics.jsonl, OUT/tb/ (TensorBoard),
OUT/curves.png with --curves. Exit codes: 0 done, 130 interrupted by Ctrl-C or SIGTERM (checkpoint saved),
2 bad input, 5 diverged (non-finite loss after the allowed rollbacks).
"""

# flag -> config key, for the settings users set most
_FLAGS = {"spec": "spec", "crop": "crop", "batch": "batch", "steps": "steps", "content": "content", "out": "out",
          "vgg_weights": "vgg_weights", "seed": "seed", "device": "device", "workers": "workers", "init": "init"}


def build_parser() -> argparse.ArgumentParser:
    p = make_parser("deblur-train", "Train a DeblurGAN generator (WGAN-GP + content loss), resumable and distributed.", EPILOG)
    p.add_argument("--config", type=Path, help="YAML file of settings (e.g. a previous OUT/config.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any setting, e.g. --set lr=2e-4 (repeatable)")
    p.add_argument("--sharp", action="append", metavar="DIR", help="folder of sharp photos: synthetic pairs on the fly (repeatable)")
    p.add_argument("--pairs", action="append", metavar="DIR", help="paired folder (blur/, sharp/) or GoPro layout (repeatable)")
    p.add_argument("--val-sharp", action="append", metavar="DIR", help="held-out sharp photos for validation")
    p.add_argument("--val-pairs", action="append", metavar="DIR", help="held-out pairs for validation")
    p.add_argument("--spec", help=f"model spec: {', '.join(list_specs())} (the bundled default is deblurgan-unet-s)")
    p.add_argument("--crop", type=int, help="random crop size (default 256)")
    p.add_argument("--batch", type=int, help="batch size per process (default 1, as the paper)")
    p.add_argument("--steps", type=int, help="generator steps (default 1000)")
    p.add_argument("--content", choices=["perceptual", "l1", "l2", "charbonnier"],
                   help="content loss (default perceptual, needs --vgg-weights)")
    p.add_argument("--init", metavar="WEIGHTS", help="start the generator from these weights with a fresh optimiser "
                                                     "(g.pth, a training checkpoint, the authors' file) or " + BUNDLED_HINT)
    p.add_argument("--vgg-weights", help="torchvision's vgg19-dcbb9e9d.pth (default: torchvision's cache)")
    p.add_argument("--out", help="output folder (default runs/deblur)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1 (default auto)")
    p.add_argument("--workers", type=int, help="data loader processes (default 2)")
    p.add_argument("--curves", action="store_true", help="also write OUT/curves.png at every checkpoint")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    return p


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults < --config file (or OUT/config.yaml when resuming) < flags < --set."""
    cfg = TrainConfig()
    config_file = args.config
    if config_file is None and args.resume and args.out and (Path(args.out) / "config.yaml").is_file():
        config_file = Path(args.out) / "config.yaml"
    if config_file is not None:
        for k, v in load_yaml(config_file).items():
            set_value(cfg, k, v)
    for flag, key in _FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            set_value(cfg, key, value)
    for flag in ("sharp", "pairs", "val_sharp", "val_pairs"):
        if getattr(args, flag):
            set_value(cfg, flag, getattr(args, flag))
    if args.curves:
        cfg.curves = True
    sets = parse_set(args.set)
    for k, v in sets.items():
        set_value(cfg, k, v)
    check_ranges(cfg)  # a bad value is named before --init's file is read
    if cfg.init and args.spec is None and "spec" not in sets and config_file is None:
        from deblur.train.checkpoint import load_generator

        cfg.spec = load_generator(cfg.init)[1].spec.name  # --init alone: train the spec of those weights
    validate(cfg)
    return cfg


def write_config(cfg: TrainConfig) -> None:
    import yaml

    from deblur.runtime.fileio import atomic_write_text

    atomic_write_text(Path(cfg.out) / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def build_data(cfg: TrainConfig):
    from deblur.train.datasets import build_dataset, build_validation, synthesis_options

    methods, sensor, synth = synthesis_options(cfg)
    train_set = build_dataset(pairs=cfg.pairs[0] if cfg.pairs else None, sharp=cfg.sharp or None, crop=cfg.crop, flip=cfg.flip,
                              halve=cfg.halve, seed=cfg.seed, synthetic_ratio=cfg.synthetic_ratio, methods=methods, sensor=sensor,
                              max_side=cfg.max_side or None, synth=synth)
    val_set = None
    if cfg.val_sharp or cfg.val_pairs:
        val_set = build_validation(pairs=cfg.val_pairs[0] if cfg.val_pairs else None, sharp=cfg.val_sharp or None, crop=cfg.val_crop,
                                   seed=cfg.seed, limit=cfg.val_limit, methods=methods, sensor=sensor,
                                   max_side=cfg.max_side or None, synth=synth)
    return train_set, val_set


RUN_FILES = ("config.yaml", "metrics.jsonl", "g.pth", "ckpt_*.pth")


def _check_out(out: Path, resume: bool) -> None:
    """Writable (checked before the data loads), and no mixing of runs. Starting a new run over an old one mixed them (metric rows twice, the old run's checkpoints kept, and a
    later --resume continuing the old run): refused unless the user says --resume."""
    if os.environ.get("RANK", "0") == "0":  # torchrun: one process tests (the test makes and removes folders)
        check_writable_folder(out, "--out")
    if resume:
        return
    found = sorted({p.name for pattern in RUN_FILES for p in out.glob(pattern)})
    if found:
        raise InputError(f"holds a previous run ({', '.join(found[:4])}{', ...' if len(found) > 4 else ''})", out,
                         hint="continue it with --resume, or choose a new --out")


def train(args: argparse.Namespace) -> int:
    """SIGTERM is Ctrl-C throughout: before the loop it interrupts (exit 130), in the loop the trainer
    finishes the step and saves a checkpoint first (``Trainer.fit``)."""
    from deblur.runtime.interrupts import sigterm_as_interrupt

    with sigterm_as_interrupt():
        return _train(args)


def _train(args: argparse.Namespace) -> int:
    from deblur.train.trainer import Trainer

    cfg = resolve_config(args)
    _check_out(Path(cfg.out), args.resume)
    if cfg.content == "perceptual":
        from deblur.train.losses import load_vgg19_weights

        load_vgg19_weights(cfg.vgg_weights)  # refuse now, not after the data is loaded
    train_set, val_set = build_data(cfg)
    trainer = Trainer(cfg, train_set, val_set)
    if args.resume:
        trainer.resume()  # a refusal (every checkpoint damaged, --steps behind the checkpoint) comes before any write
    if trainer.world.is_main:
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        write_config(cfg)
        log.info("training %s on %d samples (%s), %d steps, batch %d x %d process(es), device %s -> %s",
                 cfg.spec, len(train_set), type(train_set).__name__, cfg.steps, cfg.batch, trainer.world.size,
                 trainer.device, cfg.out)
    else:
        logging.getLogger("deblur").setLevel(logging.WARNING)
    try:
        result = trainer.fit(resume=args.resume)
    finally:
        trainer.close()
    if result.interrupted:
        return 130
    if trainer.world.is_main:
        log.info("done: %d steps, generator %s", result.step, Path(cfg.out) / "g.pth")
        print(f"next: deblur-eval --model {Path(cfg.out) / 'g.pth'} --blur BLUR_DIR --sharp SHARP_DIR")
    if not result.replicas_identical:
        raise InputError("the replicas' weights differ after distributed training", hint="report this with OUT/config.yaml")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run("deblur-train", build_parser(), train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
