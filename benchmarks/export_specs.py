"""Export time per stage and parity per spec on this machine: runs ``deblur-export --fp16`` per spec.

Random-init generators for the specs without trained weights, made so that the residual is not tiny:
the ResNet specs' weights x3 (InstanceNorm rescales each layer, so the outputs become chaotic, a harsh
test), the U-Nets' head at PyTorch's own init instead of x0.01 (without normalisation, x3 on every layer
grows activations 3x per conv, past what any trained network holds, and even FP32 ONNX then differs); ``--ckpt`` adds a trained checkpoint (e.g. ``default``). Prints a Markdown table.

    python benchmarks/export_specs.py [--specs deblurgan-unet-s,deblurgan-pico,deblurgan-nano,deblurgan-lite,deblurgan] [--ckpt default]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import re
import tempfile
from pathlib import Path

import torch

from deblur.export.cli import main as export_main
from deblur.runtime import cli
from deblur.runtime.spec import get_spec
from deblur.runtime.zoo import BUNDLED
from deblur.train.checkpoint import save_generator
from deblur.train.networks import build_generator


class _Stages(logging.Handler):
    def __init__(self):
        super().__init__()
        self.times: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        m = re.match(r"(\w+):\s.*\((\d+\.\d+) s", record.getMessage())
        if m:
            self.times[m.group(1)] = float(m.group(2))


def run(ckpt: Path | str, label: str, work: Path) -> str:
    handler = _Stages()
    setup = cli.setup_logging

    def setup_and_listen(level: str) -> None:  # the CLI replaces the logger's handlers: add ours after
        setup("WARNING")
        logging.getLogger("deblur").setLevel("INFO")
        logging.getLogger("deblur").addHandler(handler)

    cli.setup_logging = setup_and_listen
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            rc = export_main(["--ckpt", str(ckpt), "--fp16", "--workdir", str(work)])
    finally:
        cli.setup_logging = setup
        logging.getLogger("deblur").removeHandler(handler)
    report = json.loads((work / "parity.json").read_text())
    arts = {a["artifact"]: a for a in report["artifacts"]}
    worst = {k: min(r["psnr"] for r in a["images"]) for k, a in arts.items()}
    maxd = {k: max(r["max"] for r in a["images"]) for k, a in arts.items()}
    fp32 = next(k for k in arts if k.endswith(".onnx") and "_fp16" not in k)
    fp16 = next(k for k in arts if k.endswith("_fp16.onnx"))
    proxy = next(k for k in arts if "proxy" in k)
    t = handler.times
    return (f"| {label} | {rc} | {t.get('ONNX', 0):.1f} | {t.get('FP16', 0):.1f} | {t.get('Parity', 0):.1f} | "
            f"{maxd[fp32]:.1e} | {worst[fp16]:.1f} | {maxd[fp16]:.1e} | {worst[proxy]:.1f} |")


def harsh_random_init(g: torch.nn.Module, family: str) -> str:
    """Make an untrained generator's residual large (see the module docstring); returns the row label."""
    from deblur.train.unet import HEAD_INIT_SCALE

    with torch.no_grad():
        if family == "unet":
            g.head[0].weight.div_(HEAD_INIT_SCALE)
            return "random init, head unscaled"
        for prm in g.parameters():
            prm.mul_(3.0)
    return "random init x3"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--specs", default="deblurgan-unet-s,deblurgan-pico,deblurgan-nano,deblurgan-lite,deblurgan")
    p.add_argument("--ckpt", action="append", default=[], help="trained checkpoints to add (a file, or a bundled name: default, pico)")
    args = p.parse_args()
    print("| model | exit | ONNX s | FP16 s | parity s | ONNX FP32 max abs diff | FP16 graph worst PSNR dB | FP16 graph max abs diff | "
          "half() proxy worst PSNR dB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for ckpt in args.ckpt:
            work = Path(tmp) / f"w-{len(list(Path(tmp).iterdir()))}"
            print(run(ckpt if ckpt in BUNDLED else Path(ckpt), f"{ckpt} (trained)", work), flush=True)
        for name in filter(None, args.specs.split(",")):
            torch.manual_seed(0)
            g = build_generator(get_spec(name))
            label = harsh_random_init(g, get_spec(name).family)
            work = Path(tmp) / name
            work.mkdir()
            print(run(save_generator(work / f"{name}.pth", g, get_spec(name)), f"{name} ({label})", work), flush=True)


if __name__ == "__main__":
    main()
