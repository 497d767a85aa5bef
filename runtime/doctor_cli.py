"""``deblur-doctor``: the first command on a new robot or workstation (and the one to run on a GPU machine).

It prints the environment (GPU, driver, CUDA, TensorRT, cuda-python, ONNX Runtime, OpenVINO, torch,
OpenCV and PyAV codecs, CPU flags, memory), then one pass/fail/skip row per functional check
(runtime/doctor.py): NVRTC compiles the kernels, the kernels equal the CPU reference on this GPU, the
model exports and passes the parity gate (FP32, FP16 graph, TensorRT engine), H.264 recording works,
and one timed 1280x720 row per backend. A check this machine cannot run is skipped with the reason.
Exit 0 when nothing failed, 1 naming the failed checks on the last line, 2 for bad arguments.
Nothing is written outside a temporary folder except the ``--json`` file.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from deblur.runtime.cli import make_parser, package_version, run
from deblur.runtime.doctor import CHECKS, GROUPS, NAMES, Context, Row, as_dict, run_checks
from deblur.runtime.doctor_env import environment, gpus
from deblur.runtime.errors import InputError
from deblur.runtime.fileio import atomic_write_text, can_create

PROG = "deblur-doctor"
log = logging.getLogger("deblur")


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(
        PROG,
        "Check this machine end to end: environment, NVRTC and the CUDA kernels, export and parity of the bundled "
        "model, H.264 recording, and one timed 1280x720 row per backend. Checks that need what this machine lacks "
        "are skipped with the reason.",
        epilog="examples:\n"
               "  deblur-doctor                          # the table; exit 1 names the failed checks\n"
               "  deblur-doctor --json doctor.json       # the table, and the same rows as JSON\n"
               "  deblur-doctor --json -                 # JSON only, on stdout\n"
               "  deblur-doctor --model g.pth            # check your own checkpoint (or .onnx) instead of the bundled one\n"
               "  deblur-doctor --skip time,video        # leave out groups or single checks\n\n"
               f"checks: {', '.join(NAMES)}\ngroups: {', '.join(GROUPS)}",
    )
    p.set_defaults(log_level="WARNING")  # the table is the output; --log-level INFO shows the export's stages
    for action in p._actions:
        if action.dest == "log_level":
            action.help = "how much to log (default: WARNING; INFO shows the export's stages)"
    p.add_argument("--json", metavar="PATH", help="also write the environment and rows as JSON to PATH; '-': JSON on stdout "
                                                  "instead of the table")
    p.add_argument("--model", default="default",
                   help="checkpoint (.pth/.pt/.safetensors) or .onnx to export and time (default: the bundled 'default')")
    p.add_argument("--skip", default="", metavar="NAMES", help="comma list of checks or groups to leave out")
    p.add_argument("--runs", type=int, default=5, help="timed runs per backend after one warm-up (default 5)")
    p.add_argument("--gpu", type=int, default=0, help="which CUDA GPU the GPU checks use (default 0)")

    def one_line_error(message: str) -> NoReturn:  # argparse prints usage too: one line, as every error here
        print(f"{PROG}: error: {message}; see {PROG} --help", file=sys.stderr)
        raise SystemExit(2)

    p.error = one_line_error  # type: ignore[method-assign]
    return p


def _skips(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in NAMES and s not in GROUPS]
    if bad:
        raise InputError(f"--skip: unknown check(s) {', '.join(bad)}", hint=f"choose from {', '.join(NAMES + GROUPS)}")
    return names


def _check_args(args: argparse.Namespace) -> list[str]:
    """Every argument problem is one line before any work starts."""
    if args.runs < 1 or args.gpu < 0:
        raise InputError("--runs must be >= 1 and --gpu >= 0")
    if args.json and args.json != "-" and not can_create(args.json):
        raise InputError("cannot write the JSON here (a folder, or an unwritable place)", args.json,
                         hint="name a file in a writable folder, e.g. --json doctor.json")
    from deblur.runtime.zoo import BUNDLED, BUNDLED_HINT, resolve_model

    if args.model in BUNDLED:
        resolve_model(args.model)  # the bundled files are part of the install: missing ones are one line now
    elif not Path(args.model).is_file():
        raise InputError("model not found", args.model,
                         hint=f"pass a .pth/.safetensors checkpoint, an .onnx file, or {BUNDLED_HINT}")
    return _skips(args.skip)


def table(env: dict[str, str], rows: list[Row]) -> str:
    """Plain-text columns: the environment, then one line per check."""
    width = max(map(len, env), default=0)
    lines = ["environment"] + [f"  {k:<{width}}  {v}" for k, v in env.items()]
    name_w = max(len(r.name) for r in rows)
    lines += ["", "checks", f"  {'status':<6}  {'check':<{name_w}}  {'seconds':>7}  detail"]
    lines += [f"  {r.status:<6}  {r.name:<{name_w}}  {r.seconds:>7.1f}  {r.detail}" for r in rows]
    return "\n".join(lines)


def summary(rows: list[Row], seconds: float) -> str:
    """The last line: what failed by name, or that nothing did."""
    count = {s: sum(r.status == s for r in rows) for s in ("pass", "fail", "skip")}
    tally = f"{count['pass']} passed, {count['skip']} skipped, {count['fail']} failed in {seconds:.1f} s"
    failed = [r.name for r in rows if r.status == "fail"]
    return f"{PROG}: FAILED {', '.join(failed)} ({tally})" if failed else f"{PROG}: all checks passed or skipped ({tally})"


def report(env: dict[str, str], rows: list[Row], seconds: float) -> dict[str, Any]:
    return {"tool": PROG, "version": package_version(), "environment": env, "checks": [as_dict(r) for r in rows],
            "failed": [r.name for r in rows if r.status == "fail"], "seconds": seconds,
            "exit_code": 1 if any(r.status == "fail" for r in rows) else 0}


def _progress():
    """A progress bar on a terminal only (logs and pipes get the table alone)."""
    from tqdm import tqdm

    bar = tqdm(total=len(CHECKS), disable=not sys.stderr.isatty(), leave=False, file=sys.stderr, unit="check")

    def step(name: str) -> None:
        bar.set_description_str(f"{PROG}: {name}")
        bar.update(1)

    return bar, step


def _main(args: argparse.Namespace) -> int:
    skip = _check_args(args)
    t0 = time.perf_counter()
    env = environment()
    found, why = gpus()
    if found and args.gpu >= len(found):
        raise InputError(f"--gpu {args.gpu}: this machine has {len(found)} GPU(s)", hint=f"use --gpu 0..{len(found) - 1}")
    bar, step = _progress()
    try:
        with tempfile.TemporaryDirectory(prefix="deblur-doctor-") as tmp:
            ctx = Context(Path(tmp), args.model, args.runs, 1, found, why, args.gpu)
            rows = run_checks(ctx, skip, step)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    doc = report(env, rows, seconds)
    text = json.dumps(doc, indent=2, default=str, allow_nan=False) + "\n"
    if args.json == "-":
        sys.stdout.write(text)
        print(summary(rows, seconds), file=sys.stderr)
    else:
        if args.json:
            atomic_write_text(args.json, text)
        print(table(env, rows))
        print(summary(rows, seconds))
    return doc["exit_code"]


def main(argv: Sequence[str] | None = None) -> int:
    return run(PROG, build_parser(), _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
