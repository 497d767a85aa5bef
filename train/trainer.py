"""The DeblurGAN training loop: WGAN-GP critic steps, then one generator step, durable and resumable.

Per generator step (the authors' recipe): G(blur) once, ``critic_steps`` critic updates on that
same batch, then one generator update on adversarial + content loss; EMA of G after each step.
Durability: checkpoints are atomic, the last ``keep`` are kept, ``--resume`` continues exactly,
SIGINT or SIGTERM saves and stops, and a non-finite loss rolls back to the last good checkpoint with half
the learning rate, at most ``max_rollbacks`` times.
"""
from __future__ import annotations

import copy
import dataclasses
import gc
import json
import logging
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from deblur.runtime.errors import CheckpointError, InputError, TrainingDivergedError
from deblur.runtime.prepost import unit_to_u8
from deblur.runtime.spec import get_spec
from deblur.train import distributed as D
from deblur.train.checkpoint import (
    load_training_state,
    save_generator,
    save_training_state,
)
from deblur.train.config import TrainConfig
from deblur.train.losses import content_loss, critic_loss, fft_loss, generator_adv_loss
from deblur.train.networks import Critic, Generator, build_generator

log = logging.getLogger("deblur")
TERMS = ("g_adv", "g_content", "d", "gp")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # each asks for a clean stop: finish the step, save, exit 130


@dataclass
class Result:
    step: int
    interrupted: bool = False
    rollbacks: int = 0
    replicas_identical: bool = True
    val: dict[str, float] = field(default_factory=dict)


def lr_factor(step: int, steps: int, decay_start: float) -> float:
    """Constant, then linear decay to 0 at ``steps`` (the paper: over the second half)."""
    start = int(steps * decay_start)
    return 1.0 if step < start else max(0.0, (steps - step) / max(1, steps - start))


def _device_name(name: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def _device(name: str, world: D.World) -> torch.device:
    """The configured device; under torchrun each rank takes the GPU of its local rank."""
    name = _device_name(name)
    if name.startswith("cuda") and world.distributed:
        name = f"cuda:{world.local_rank}"
    return torch.device(name)


class Trainer:
    """Holds the real state of a run: models, optimizers, schedulers, step and LR scale."""

    def __init__(self, cfg: TrainConfig, train_set: Dataset, val_set: Dataset | None = None):
        self.cfg = cfg
        self.world = D.init_world(_device_name(cfg.device))
        self.device = _device(cfg.device, self.world)
        self.out = Path(cfg.out)
        self.spec = get_spec(cfg.spec)
        if cfg.dropout >= 0:
            self.spec = dataclasses.replace(self.spec, dropout=cfg.dropout)
        torch.manual_seed(cfg.seed)
        self.g = build_generator(self.spec).to(self.device)
        self.d = Critic(cfg.ndf or 64, cfg.n_layers_d).to(self.device)
        if cfg.init:
            self._init_from(cfg.init)
        elif isinstance(self.g, Generator):  # (the U-Net scales its output conv by 0.01 itself)
            with torch.no_grad():
                self.g.model[-2].weight.mul_(cfg.residual_init)  # the output conv: residual starts near 0
        D.broadcast_module(self.g, self.world)
        D.broadcast_module(self.d, self.world)
        torch.manual_seed(cfg.seed + 1000 * self.world.rank)  # ranks draw their own dropout masks and GP alphas
        self.g_ema = copy.deepcopy(self.g).eval().requires_grad_(False) if cfg.ema > 0 else None
        self.g_train = self._wrap(self.g)
        betas = (cfg.beta1, cfg.beta2)
        if cfg.optimizer == "adamw":
            self.opt_g = torch.optim.AdamW(self.g.parameters(), lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)
        else:
            self.opt_g = torch.optim.Adam(self.g.parameters(), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=cfg.lr, betas=betas)
        self.lr_scale = 1.0
        sched = lambda s: self.lr_scale * lr_factor(s, cfg.steps, cfg.decay_start)  # noqa: E731
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, sched)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, sched)
        self.content = content_loss(
            cfg.content, cfg.vgg_weights, after_relu=cfg.perceptual_after_relu, imagenet_norm=cfg.perceptual_imagenet_norm
        ).to(self.device) if cfg.content == "perceptual" else content_loss(cfg.content).to(self.device)
        self.amp_dtype = self._amp_dtype()
        self.step = 0
        self.rollbacks = 0
        self.train_set, self.val_set = train_set, val_set
        self._stop = False
        self._writer = None
        self.resumed_from: Path | None = None

    # ------------------------------------------------------------------------------ set-up
    def _init_from(self, source: str) -> None:
        """Start from a generator's weights (fresh optimiser and schedule): continuing a release over
        several runs, or fine-tuning ``default`` on a user's own camera. The spec must match."""
        from deblur.train.checkpoint import load_generator

        model, weights = load_generator(source)
        if dataclasses.replace(weights.spec, dropout=self.spec.dropout, description=self.spec.description) != self.spec:
            raise InputError(f"--set init: the weights are spec {weights.spec.name!r}, this run trains {self.spec.name!r}",
                             weights.path, hint=f"add --spec {weights.spec.name}")
        self.g.load_state_dict(model.state_dict())
        log.info("initialised the generator from %s (%s, sha256 %s)", weights.path, weights.spec.name, weights.sha256[:16])

    def _wrap(self, g: nn.Module) -> nn.Module:
        if not self.world.distributed:
            return g
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(g, device_ids=ids)

    def close(self) -> None:
        """Leave the process group: the DDP wrapper first, then the group.

        DDP's reducer holds the gloo group and sits in reference cycles, so without this it was
        freed by the interpreter's exit, after ``destroy_process_group``, where gloo's worker threads
        ended in ``terminate called without an active exception`` (SIGABRT) on about a third of
        2-process runs.
        """
        if self.g_train is not self.g:
            self.g_train = self.g
            gc.collect()
        D.close_world(self.world)

    def _amp_dtype(self) -> torch.dtype | None:
        if self.cfg.amp == "off" or self.device.type != "cuda":
            return None
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16  # no loss scaling needed, so the gradient penalty stays exact
        log.warning("AMP off: this GPU has no bfloat16; training in FP32")
        return None

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    # ------------------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "step": self.step,
            "spec": self.spec.to_dict(),
            "config": self.cfg.to_dict(),
            "g": self.g.state_dict(),
            "d": self.d.state_dict(),
            "g_ema": self.g_ema.state_dict() if self.g_ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
            "scaler": None,  # bf16 autocast needs no GradScaler
            "lr_scale": self.lr_scale,
            "rollbacks": self.rollbacks,
            "world_size": self.world.size,
            "rng": rng,
            "torch_version": str(torch.__version__),
        }

    def load_state(self, s: dict[str, Any]) -> None:
        self.g.load_state_dict(s["g"])
        self.d.load_state_dict(s["d"])
        if self.g_ema is not None:
            self.g_ema.load_state_dict(s["g_ema"] if s.get("g_ema") is not None else s["g"])
        self.opt_g.load_state_dict(s["opt_g"])
        self.opt_d.load_state_dict(s["opt_d"])
        self.sched_g.load_state_dict(s["sched_g"])
        self.sched_d.load_state_dict(s["sched_d"])
        self.step, self.lr_scale, self.rollbacks = int(s["step"]), float(s["lr_scale"]), int(s["rollbacks"])
        torch.set_rng_state(s["rng"]["torch"])
        if "cuda" in s["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(s["rng"]["cuda"])
        if self.world.rank:
            torch.manual_seed(self.cfg.seed + 1000 * self.world.rank + self.step)  # rank 0's state was saved

    def checkpoints(self) -> list[Path]:
        return sorted(self.out.glob("ckpt_*.pth"))

    def save(self) -> Path | None:
        path = self.out / f"ckpt_{self.step:08d}.pth"
        if self.world.is_main:
            save_training_state(path, self.state())
            save_generator(self.out / "g.pth", self.g_ema or self.g, self.spec, meta={"step": self.step, "ema": self.g_ema is not None})
            for old in self.checkpoints()[: -self.cfg.keep]:
                old.unlink(missing_ok=True)  # only after the new one is complete
            if self.cfg.curves and (self.out / "metrics.jsonl").is_file():
                from deblur.train.curves import plot_curves

                plot_curves(self.out / "metrics.jsonl", self.out / "curves.png")
        if self.world.distributed:
            torch.distributed.barrier()
        return path

    def resume(self) -> bool:
        """Load the newest readable checkpoint in ``out``; a damaged newest one is skipped with a warning.

        False when there is no checkpoint at all. Refused, touching nothing, when every checkpoint is
        damaged (starting over would let rotation delete them) or when the checkpoint is already past
        ``steps`` (the loop would do nothing and report done).
        """
        if self.resumed_from is not None:
            return True
        damaged: list[tuple[Path, CheckpointError]] = []
        for path in reversed(self.checkpoints()):
            try:
                s = load_training_state(path)
            except CheckpointError as e:
                damaged.append((path, e))
                continue
            for _, e in damaged:  # said only when an older one is used: if none is, the refusal names them all
                log.warning("skipping damaged checkpoint: %s", e)
            if int(s["step"]) > self.cfg.steps:
                raise InputError(f"cannot resume: the checkpoint is at step {int(s['step'])} and --steps is {self.cfg.steps}",
                                 path, hint=f"use --steps > {int(s['step'])} to continue")
            self.load_state(s)
            self._truncate_metrics()
            self.resumed_from = path
            log.info("resumed from %s at step %d (world size %d -> %d)", path, self.step, s.get("world_size", 1), self.world.size)
            return True
        if damaged:
            files = ", ".join(f"{p.name} ({e.message})" for p, e in reversed(damaged))
            raise CheckpointError(f"cannot resume: every checkpoint is damaged: {files}", self.out,
                                  hint="nothing was changed; restore a checkpoint, or move them away to start over")
        return False

    # ------------------------------------------------------------------------------ steps
    def train_step(self, batch: dict[str, Any]) -> torch.Tensor:
        cfg = self.cfg
        blur = batch["blur"].to(self.device, non_blocking=True)
        sharp = batch["sharp"].to(self.device, non_blocking=True)
        with self._autocast():
            fake = self.g_train(blur)
        zero = torch.zeros((), device=self.device)
        parts = {"d": zero, "gp": zero}
        for _ in range(cfg.critic_steps if cfg.adv_weight > 0 else 0):  # weight 0: no critic work at all
            self.opt_d.zero_grad(set_to_none=True)
            with self._autocast():
                loss_d, parts = critic_loss(self.d, sharp, fake, cfg.lambda_gp, per_sample=cfg.gp == "per-sample")
            loss_d.backward()
            D.average_gradients(self.d, self.world)
            self.opt_d.step()
        self.opt_g.zero_grad(set_to_none=True)
        self.d.requires_grad_(False)
        with self._autocast():
            adv = generator_adv_loss(self.d, fake) if cfg.adv_weight > 0 else zero
            content = self.content(fake.float(), sharp)
            if cfg.fft_weight > 0:
                content = content + cfg.fft_weight * fft_loss(fake, sharp)
            loss_g = cfg.adv_weight * adv + cfg.content_weight * content
        loss_g.backward()
        self.d.requires_grad_(True)
        if cfg.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.g.parameters(), cfg.clip_grad)
        self.opt_g.step()
        self.sched_g.step()
        if cfg.adv_weight > 0:
            self.sched_d.step()
        self._update_ema()
        return torch.stack([adv.detach().float(), content.detach().float(), parts["d"].float(), parts["gp"].float()])

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.g_ema is None:
            return
        decay = min(self.cfg.ema, (1 + self.step) / (10 + self.step))  # warm-up: early EMA tracks closely
        for e, p in zip(self.g_ema.parameters(), self.g.parameters(), strict=True):
            e.lerp_(p.detach(), 1 - decay)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        from deblur.train.metrics import psnr, ssim

        if self.val_set is None or not self.world.is_main:
            return {}
        model = self.g_ema or self.g
        was_training = model.training
        model.eval()
        scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "psnr_identity": [], "ssim_identity": []}
        grid = None
        for i in range(len(self.val_set)):
            item = self.val_set[i]
            blur = item["blur"][None].to(self.device)
            out = model(blur)
            u8 = [_to_uint8(t) for t in (blur[0], out[0], item["sharp"])]
            scores["psnr"].append(psnr(u8[1], u8[2]))
            scores["ssim"].append(ssim(u8[1], u8[2]))
            scores["psnr_identity"].append(psnr(u8[0], u8[2]))
            scores["ssim_identity"].append(ssim(u8[0], u8[2]))
            if grid is None:
                grid = torch.cat([blur[0].cpu(), out[0].cpu().float(), item["sharp"]], dim=2)
        model.train(was_training)
        res = {k: float(sum(v) / len(v)) for k, v in scores.items() if v}
        if self._writer is not None and grid is not None:
            self._writer.add_scalar("val/psnr", res["psnr"], self.step)
            self._writer.add_scalar("val/ssim", res["ssim"], self.step)
            if self.step % self.cfg.image_every == 0 or self.step == self.cfg.steps:
                self._writer.add_image("val/blurred|deblurred|sharp", (grid + 1) / 2, self.step)
        return res

    # ------------------------------------------------------------------------------ loop
    def fit(self, resume: bool = False) -> Result:
        if self.world.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        if not (resume and self.resume()):
            if resume:
                log.info("no checkpoint in %s: starting from step 0", self.out)
            self.save()  # step 0: the rollback target before any update
        self._open_writer()
        previous = {s: signal.signal(s, self._on_stop_signal) for s in STOP_SIGNALS}
        try:
            return self._loop()
        finally:
            for s, handler in previous.items():
                signal.signal(s, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
            if self._writer is not None:
                self._writer.close()

    def _loop(self) -> Result:
        cfg = self.cfg
        val: dict[str, float] = {}
        while True:
            loader = self._loader()
            bar = _bar(cfg.steps, self.step, self.world.is_main)
            diverged = None
            t0, n0 = time.perf_counter(), self.step
            for batch in loader:
                losses = self.train_step(batch)
                self.step += 1
                bar.update(1)
                bad = not bool(torch.isfinite(losses).all())
                stop, bad = D.any_rank([self._stop, bad], self.world, self.device)
                if bad:
                    diverged = _first_bad(losses)
                    break
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    rate = (self.step - n0) / max(1e-9, time.perf_counter() - t0)
                    self._log(losses, rate)
                if self.step % cfg.val_every == 0 or self.step == cfg.steps:
                    val = self.validate() or val
                    if val:
                        log.info("step %d val: PSNR %.2f dB (input %.2f), SSIM %.4f (input %.4f)", self.step,
                                 val["psnr"], val["psnr_identity"], val["ssim"], val["ssim_identity"])
                        self._append_metrics({"step": self.step, **{f"val/{k}": v for k, v in val.items()}})
                if stop:
                    path = self.save()
                    bar.close()
                    log.warning("interrupted at step %d: checkpoint %s saved; continue with --resume", self.step, path)
                    return Result(self.step, interrupted=True, rollbacks=self.rollbacks, val=val)
                if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                    self.save()
            bar.close()
            if diverged is None:
                same = D.replicas_identical([self.g, self.d], self.world)
                if self.world.distributed:
                    log.info("replicas %s across %d ranks", "identical" if same else "DIFFER", self.world.size)
                self._write_summary(val, same)
                if self.world.distributed:  # every rank done with the group before any rank tears it down
                    torch.distributed.barrier()
                return Result(self.step, rollbacks=self.rollbacks, replicas_identical=same, val=val)
            self._roll_back(diverged)

    def _roll_back(self, term: str) -> None:
        bad_step = self.step
        good = self.checkpoints()[-1] if self.checkpoints() else None
        if self.rollbacks >= self.cfg.max_rollbacks or good is None:
            raise TrainingDivergedError(
                f"training diverged: non-finite {term} loss at step {bad_step} after {self.rollbacks} rollback(s)",
                path=good,
                hint=f"last good checkpoint {good}; lower --set lr=..., check the data, or resume from it",
            )
        rollbacks = self.rollbacks + 1
        self.load_state(load_training_state(good))
        self.rollbacks, self.lr_scale = rollbacks, 0.5**rollbacks
        for opt, sched in ((self.opt_g, self.sched_g), (self.opt_d, self.sched_d)):
            for group, base in zip(opt.param_groups, sched.base_lrs, strict=True):
                group["lr"] = base * sched.lr_lambdas[0](self.step)  # the lowered scale, from this step on
        log.warning("non-finite %s loss at step %d: rolled back to %s (step %d) with LR x%.3g (%d/%d)",
                    term, bad_step, good.name, self.step, self.lr_scale, rollbacks, self.cfg.max_rollbacks)

    # ------------------------------------------------------------------------------ plumbing
    def _loader(self) -> DataLoader:
        n = len(self.train_set)
        sampler = D.StepBatches(n, self.cfg.batch, self.cfg.seed, self.step, self.cfg.steps, self.world)
        # Its own generator: a DataLoader otherwise draws its worker seed from the global RNG, and a
        # resumed run (which makes a new loader) would then drift from one that never stopped.
        gen = torch.Generator().manual_seed(self.cfg.seed)
        return DataLoader(D.EpochItems(self.train_set), batch_sampler=sampler, num_workers=self.cfg.workers,
                          pin_memory=self.device.type == "cuda", persistent_workers=False, generator=gen)

    def _on_stop_signal(self, signum, frame) -> None:  # noqa: ARG002
        """Ctrl-C and SIGTERM (a scheduler's or ``docker stop``'s request) alike: finish the step, save, exit 130."""
        if self._stop:
            raise KeyboardInterrupt  # the second one: stop now
        self._stop = True
        what = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        log.warning("%s: finishing this step, saving a checkpoint and stopping (send it again to abort)", what)

    def _open_writer(self) -> None:
        if not (self.world.is_main and self.cfg.tensorboard):
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.warning("TensorBoard not installed (pip install tensorboard): logging to metrics.jsonl only")
            return
        self._writer = SummaryWriter(str(self.out / "tb"))

    def _log(self, losses: torch.Tensor, rate: float) -> None:
        if not self.world.is_main:
            return
        vals = dict(zip(TERMS, losses.tolist(), strict=True))
        lr = self.opt_g.param_groups[0]["lr"]
        log.info("step %d/%d | %s | lr %.2e | %.2f it/s", self.step, self.cfg.steps,
                 " | ".join(f"{k} {v:.4g}" for k, v in vals.items()), lr, rate)
        self._append_metrics({"step": self.step, **{f"loss/{k}": v for k, v in vals.items()}, "lr": lr})
        if self._writer is not None:
            for k, v in vals.items():
                self._writer.add_scalar(f"loss/{k}", v, self.step)
            self._writer.add_scalar("lr", lr, self.step)

    def _truncate_metrics(self) -> None:
        """Drop rows logged after the resumed checkpoint: they are replayed, and curves must not double."""
        path = self.out / "metrics.jsonl"
        if not (self.world.is_main and path.is_file()):
            return
        from deblur.runtime.fileio import atomic_write_text

        lines = path.read_text().splitlines()
        kept = []
        for line in lines:
            try:
                if json.loads(line).get("step", 0) > self.step:
                    continue
            except ValueError:  # a half-written last line from a killed run
                continue
            kept.append(line)
        if len(kept) != len(lines):
            atomic_write_text(path, "".join(k + "\n" for k in kept))
            log.info("metrics.jsonl: dropped %d rows after step %d", len(lines) - len(kept), self.step)

    def _append_metrics(self, row: dict[str, Any]) -> None:
        if self.world.is_main:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")

    def _write_summary(self, val: dict[str, float], same: bool) -> None:
        if self.world.is_main:
            from deblur.runtime.fileio import atomic_write_text

            summary = {"step": self.step, "world_size": self.world.size, "replicas_identical": same,
                       "rollbacks": self.rollbacks, "val": val, "g": str(self.out / "g.pth")}
            atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=2) + "\n")


def _to_uint8(t: torch.Tensor):
    return unit_to_u8(t.detach().float().cpu().numpy().transpose(1, 2, 0))


def _first_bad(losses: torch.Tensor) -> str:
    for name, v in zip(TERMS, losses.tolist(), strict=True):
        if not math.isfinite(v):
            return name
    return "unknown"


def _bar(total: int, start: int, main: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="deblur-train", unit="step", disable=not (main and sys.stderr.isatty()))
