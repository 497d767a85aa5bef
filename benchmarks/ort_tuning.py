"""ONNX Runtime CPU tuning: which session options and export rewrites make the generator fastest.

For each spec (random init, scaled x3 so the output is not trivially the input: speed does not
depend on the weights, the parity column does) and size, times PyTorch eager FP32 (the reference,
``torch.inference_mode``, default threads) and ONNX Runtime variants in the *same* run, and prints
a Markdown table: median and p99 ms, the speed-up over torch, max |d| vs torch, and the 1-minute
load average before/after. ``--profile`` adds ORT's per-op-type time for the baseline and the
recommended configuration (which ops dominate).

Timing: variants run in blocks (warm-up, then ``--block`` timed runs) with a pause before each
block so the previous variant's threads are asleep, and the blocks of all variants are
interleaved over ``--passes`` passes, so background load hits every variant alike.

    python benchmarks/ort_tuning.py --specs deblurgan-pico,deblurgan-nano --sizes 360x640
    python benchmarks/ort_tuning.py --specs deblurgan --sizes 720x1280 --variants torch,ort-default,recommended --passes 1 --block 3
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from deblur.export.onnx_export import export_onnx
from deblur.runtime.onnx_optimize import optimize
from deblur.runtime.ort_options import default_threads, session_options
from deblur.runtime.spec import get_spec
from deblur.train.networks import Generator

Runner = Callable[[np.ndarray], np.ndarray]
ALL = ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def _opts(threads: int | None = None, level=ALL, config: dict[str, str] | None = None, arena: bool = True):
    """The current ``runtime.ort_options.session`` settings, with one thing changed at a time."""
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.intra_op_num_threads = threads or min(os.cpu_count() or 1, 8)
    so.enable_cpu_mem_arena = arena
    so.log_severity_level = 3
    for k, v in (config or {}).items():
        so.add_session_config_entry(k, v)
    return so


# variant -> (export flavour, session options factory)
VARIANTS: dict[str, tuple[str, Callable[[], ort.SessionOptions]]] = {
    "ort-default": ("o17", lambda: _opts()),
    "ort-1thread": ("o17", lambda: _opts(threads=1)),
    "ort-nospin": ("o17", lambda: _opts(config={"session.intra_op.allow_spinning": "0"})),
    "ort-daz": ("o17", lambda: _opts(config={"session.set_denormal_as_zero": "1"})),
    "ort-noarena": ("o17", lambda: _opts(arena=False)),
    "ort-extended": ("o17", lambda: _opts(level=ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)),
    "ort-basic": ("o17", lambda: _opts(level=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)),
    "opset18": ("o18", lambda: _opts()),
    "static-shape": ("static", lambda: _opts()),
    "rw-tail": ("tail", lambda: _opts()),
    "rw-phase": ("phase", lambda: _opts()),
    "recommended": ("phase", lambda: session_options()),
    "recommended-1thread": ("phase", lambda: session_options(1)),
}
DEFAULT_VARIANTS = ["torch", *VARIANTS]


def build_generator(spec_name: str) -> Generator:
    torch.manual_seed(0)
    g = Generator(get_spec(spec_name)).eval()
    with torch.no_grad():
        for p in g.parameters():
            p.mul_(3.0)  # "trained-like": a residual that is not tiny
    return g.requires_grad_(False)


def export_flavour(g: Generator, flavour: str, hw: tuple[int, int], folder: Path) -> Path:
    """One ONNX file per export flavour: plain opset 17/18, static shape, or rewritten."""
    path = folder / f"{g.spec.name}_{flavour}_{hw[0]}x{hw[1]}.onnx"
    if path.exists():
        return path
    opset = 18 if flavour == "o18" else 17
    static = hw if flavour == "static" else None
    base = folder / f"{g.spec.name}_o{opset}{'_static' if static else ''}_{hw[0]}x{hw[1]}.plain.onnx"
    if not base.exists():
        export_onnx(g, base, source={"benchmark": "ort_tuning"}, opset=opset, static_hw=static)
    if flavour in ("o17", "o18", "static"):
        return base
    model = optimize(onnx.load(str(base)), phase_tail=flavour == "phase", subpixel_tail="tail" in flavour or flavour == "phase")
    onnx.save(model, str(path))
    return path


def ort_runner(path: Path, so: ort.SessionOptions) -> Runner:
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(["output"], {"input": x})[0]


def torch_runner(g: Generator) -> Runner:
    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return g(torch.from_numpy(x)).numpy()

    return run


def measure(runners: dict[str, Runner], x: np.ndarray, passes: int, block: int, warmup: int, gap: float) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(passes):
        for name, run in runners.items():
            time.sleep(gap)  # let the previous variant's pool threads go to sleep
            for _ in range(warmup):
                run(x)
            for _ in range(block):
                t0 = time.perf_counter()
                run(x)
                times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def op_profile(path: Path, so: ort.SessionOptions, x: np.ndarray, runs: int, folder: Path) -> dict[str, float]:
    """ms per run by op type, from ORT's profiler (the layout reorders NCHWc adds show up too)."""
    so.enable_profiling = True
    so.profile_file_prefix = str(folder / "prof")
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    sess.run(None, {"input": x})
    for _ in range(runs):
        sess.run(None, {"input": x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    agg: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            agg[e["args"]["op_name"]] += e["dur"] / 1e3 / (runs + 1)
    return dict(sorted(agg.items(), key=lambda kv: -kv[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--specs", default="deblurgan-pico,deblurgan-nano,deblurgan-lite,deblurgan")
    p.add_argument("--sizes", default="360x640,720x1280")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"from: {', '.join(DEFAULT_VARIANTS)}")
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--block", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--gap", type=float, default=0.3, help="seconds of pause before each block")
    p.add_argument("--profile", action="store_true", help="per-op-type ms for ort-default and recommended")
    args = p.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v != "torch" and v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}")
    if "torch" not in variants:
        variants.insert(0, "torch")
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {ort.__version__}, "
          f"{os.cpu_count()} CPUs, recommended threads {default_threads()}; "
          f"{args.passes} passes x {args.block} runs, batch 1, FP32\n")
    print("| spec | size | variant | median ms | p99 ms | n | speed-up vs torch | max abs diff vs torch | load 1m before/after |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    profiles = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for spec in args.specs.split(","):
            g = build_generator(spec)
            for size in args.sizes.split(","):
                h, w = (int(v) for v in size.lower().split("x"))
                x = (np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32) * 2 - 1).astype(np.float32)
                runners: dict[str, Runner] = {}
                paths: dict[str, Path] = {}
                for v in variants:
                    if v == "torch":
                        runners[v] = torch_runner(g)
                    else:
                        flavour, make = VARIANTS[v]
                        paths[v] = export_flavour(g, flavour, (h, w), folder)
                        runners[v] = ort_runner(paths[v], make())
                ref = runners["torch"](x)
                diffs = {v: float(np.abs(r(x) - ref).max()) for v, r in runners.items()}
                load0 = os.getloadavg()[0]
                times = measure(runners, x, args.passes, args.block, args.warmup, args.gap)
                load1 = os.getloadavg()[0]
                base = float(np.median(times["torch"]))
                for v, ts in times.items():
                    med, p99 = float(np.median(ts)), float(np.percentile(ts, 99))
                    print(f"| {spec} | {h}x{w} | {v} | {med:.1f} | {p99:.1f} | {len(ts)} | {base / med:.2f}x | "
                          f"{diffs[v]:.1e} | {load0:.1f} / {load1:.1f} |", flush=True)
                if args.profile:
                    for v in ("ort-default", "recommended"):
                        flavour, make = VARIANTS[v]
                        path = export_flavour(g, flavour, (h, w), folder)
                        profiles.append((spec, size, v, op_profile(path, make(), x, max(2, args.block), folder)))
                del runners
    for spec, size, v, prof in profiles:
        total = sum(prof.values())
        print(f"\n{spec} {size} {v}: ORT per-op time, {total:.1f} ms per run (profiler on)\n")
        print("| op | ms | share |")
        print("|---|---:|---:|")
        for op, ms in prof.items():
            print(f"| {op} | {ms:.2f} | {100 * ms / total:.1f} % |")


if __name__ == "__main__":
    main()
