"""``deblur-bench``: time every backend on the same model and frames in one run, with parity.

The command line only; what it measures and how is in runtime/bench.py (backends, rows, table)
and runtime/timing.py (``time_step``, ``stats``).
"""
from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from deblur.runtime.bench import (
    BACKENDS,
    DEFAULT_SIZES,
    PROG,
    ModelSource,
    add_peak_shares,
    bench_size,
    json_safe,
    make_backends,
    markdown,
    model_ratios,
    parse_backends,
    parse_sizes,
    peak_rows,
    resolve_source,
)
from deblur.runtime.cli import make_parser, run
from deblur.runtime.device import parse_device
from deblur.runtime.errors import InputError
from deblur.runtime.fileio import can_create

log = logging.getLogger("deblur")


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(
        PROG,
        "Time torch, ONNX Runtime, OpenVINO and TensorRT on one model: p50/p99 ms, FPS, pre/post, achieved GMAC/s "
        "and share of the CPU's peak, parity against the reference.",
        epilog="examples:\n"
               "  deblur-bench --model g.pth                      # torch vs onnxruntime (exported on the fly)\n"
               "  deblur-bench --model g.onnx --sizes 720x1280 --runs 50\n"
               "  deblur-bench --model default --backends onnxruntime,openvino --sizes 360x640   # the CPU backends\n"
               "  deblur-bench --model default --model pico --backends onnxruntime --sizes 360x640   # two models, one run\n"
               "  deblur-bench --model g.pth --engine g_fp16.engine --json bench.json\n"
               "  deblur-bench --spec deblurgan-pico,deblurgan-nano --backends onnxruntime --sizes 360x640   # choose a spec",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", action="append", help="checkpoint (.pth/.safetensors/'default'/'pico'), .onnx, OpenVINO .xml, "
                                                        "or .engine/.plan; repeat it to time several models in one run")
    which.add_argument("--spec", help="comma list of spec names: untrained models of those specs (speed only; "
                                      "parity still compares the backends)")
    p.add_argument("--engine", help="a TensorRT engine to add to a checkpoint/ONNX comparison")
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma list from torch,onnxruntime,openvino,tensorrt (default: all)")
    p.add_argument("--sizes", default=DEFAULT_SIZES, help=f"HxW list (default {DEFAULT_SIZES})")
    p.add_argument("--runs", type=int, default=20, help="timed runs per backend and size (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    p.add_argument("--threads", type=int, help="CPU threads for torch, onnxruntime and openvino (default: each one's own)")
    p.add_argument("--no-peak", action="store_true", help="skip the peak probes (GMAC/s are still reported)")
    p.add_argument("--device", default="cpu", help="torch/onnxruntime device: cpu, cuda[:N] or auto (default cpu)")
    p.add_argument("--json", type=Path, help="also write the rows as a JSON list to this file")
    return p


def _sources(args: argparse.Namespace) -> list[tuple[str, ModelSource]]:
    """(label, source) per model: each --model, or one untrained model per --spec name."""
    if args.model is not None:
        if args.engine and len(args.model) > 1:
            raise InputError("--engine adds an engine to one model's comparison; give one --model with it")
        return [(m, resolve_source(m, args.engine)) for m in args.model]
    from deblur.runtime.spec import get_spec

    names = [n.strip() for n in args.spec.split(",") if n.strip()]
    for n in names:
        get_spec(n)  # unknown names fail before any work
    return [(f"{n} (untrained)", ModelSource(untrained=n)) for n in names]


def _main(args: argparse.Namespace) -> int:
    if args.runs < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        raise InputError("--runs must be >= 1, --warmup >= 0 and --threads >= 1")
    if args.json and not can_create(args.json):  # before minutes of timing, not after
        raise InputError("cannot write the JSON here (a folder, or an unwritable place)", args.json,
                         hint="name a file in a writable folder, e.g. --json bench.json")
    sizes = parse_sizes(args.sizes)
    names = parse_backends(args.backends)
    device = parse_device(args.device, allow_auto=True)
    sources = _sources(args)  # bad models and spec names fail here, before any timing
    rows: list[dict[str, Any]] = []
    probes: list[dict[str, Any]] = []
    measure_peak = not args.no_peak and device == "cpu"
    if measure_peak:  # at the start and again at the end: this machine's speed drifts during a long run
        from deblur.runtime.peak import probes as run_probes

        probes = [{**p, "when": "start"} for p in run_probes(args.threads)]
    for label, src in sources:
        with ExitStack() as stack:
            backends, skipped = make_backends(src, names, device, args.threads, stack)
            for s in skipped:
                log.info("%s: %s skipped: %s", PROG, s.name, s.reason)
            if not backends:
                raise InputError("no backend can run this model here", label,
                                 hint="; ".join(f"{s.name}: {s.reason}" for s in skipped))
            for hw in sizes:
                rows += [{"model": label, **r} for r in bench_size(backends, skipped, src.spec, hw, args.runs, args.warmup)]
    if measure_peak:
        from deblur.runtime.peak import peaks

        probes += [{**p, "when": "end"} for p in run_probes(args.threads)]
        add_peak_shares(rows, peaks(probes))
        print(peak_rows(probes) + "\n")
    print(markdown(rows))
    if ratios := model_ratios(rows):
        print("\n" + ratios)
    failed = [f"{r['model']}: {r['backend']} at {r['size']}" for r in rows if r.get("error")]
    if args.json:
        from deblur.runtime.fileio import atomic_write_text

        atomic_write_text(args.json, json.dumps(json_safe(rows + [{"kind": "peak", **p} for p in probes]), indent=2) + "\n")
        log.info("%s: wrote %s", PROG, args.json)
    if failed:
        log.error("%s: %d run(s) failed: %s", PROG, len(failed), ", ".join(failed))
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(PROG, build_parser(), _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
