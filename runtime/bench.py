"""``deblur-bench``: time every backend on the same model and frames in one run, with parity.

For each backend and size: warm-up, then ``--runs`` timed runs of the model alone (wall clock on
CPU, where the call returns only when the output is in host memory; CUDA events around the
forward when torch runs on a GPU), p50/p99 ms and FPS; the CPU pre- and post-processing
(``Deblurrer``'s own path, runtime/frames.py, on a uint8 BGR frame of that size) timed as their own rows, and an
end-to-end estimate (pre + model + post). Parity against torch in the same run: PSNR and max |d|
in [0, 1] on a real photo (``export/parity_images``) resized to the size.

Backend creation (``make_backends``) is kept apart from timing (``time_step``, ``bench_backend``)
so the runtime's ``Deblurrer`` can replace the former without touching the latter.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deblur.runtime import prepost
from deblur.runtime.frames import FrameInfo, postprocess, preprocess
from deblur.train.cli import make_parser, run
from deblur.train.errors import InputError

log = logging.getLogger("deblur")

PROG = "deblur-bench"
BACKENDS = ("torch", "onnxruntime", "tensorrt")
DEFAULT_SIZES = "360x640,720x1280"
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")
ENGINE_SUFFIXES = (".engine", ".plan")
PARITY_IMAGES = Path(__file__).resolve().parent.parent / "export" / "parity_images"
PARITY_PHOTO = "srn01_241x319.png"  # real camera blur, the largest of the set

Runner = Callable[[np.ndarray], np.ndarray]  # NCHW float32 in [-1, 1] -> NCHW float32
Step = Callable[[], Any]


@dataclass
class BenchBackend:
    """What the timing code needs from a backend; nothing else about how it was built.

    ``infer``: numpy in, numpy out (parity). ``prepare(x)``: a zero-argument step that runs the
    model on ``x`` with the input already where the backend wants it (device memory for GPUs).
    """

    name: str
    infer: Runner
    prepare: Callable[[np.ndarray], Step]
    cuda_events: bool = False
    note: str = ""
    spec: dict[str, Any] | None = None  # where the artifact carries one (ONNX metadata, manifest)
    close: Callable[[], None] = lambda: None


@dataclass
class Skipped:
    name: str
    reason: str


@dataclass
class ModelSource:
    """The model the user gave, resolved: a checkpoint, an ONNX file and/or a TensorRT engine."""

    checkpoint: str | None = None
    untrained: str | None = None  # a spec name: random weights, for speed only (--spec)
    onnx: Path | None = None
    engine: Path | None = None
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def multiple(self) -> int:
        return int(self.spec.get("pad_multiple", 4))

    @property
    def min_size(self) -> int:
        return int(self.spec.get("min_size", 2 * self.multiple))


# ------------------------------------------------------------------------------------- arguments


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"360x640,720x1280"`` -> [(360, 640), (720, 1280)] (H x W); anything else is an InputError."""
    sizes = []
    for item in (s.strip() for s in text.split(",")):
        h, sep, w = item.lower().partition("x")
        if not sep or not h.isdigit() or not w.isdigit() or int(h) < 1 or int(w) < 1:
            raise InputError(f"bad --sizes entry {item!r}", hint="give HxW pairs, e.g. --sizes 360x640,720x1280")
        sizes.append((int(h), int(w)))
    return sizes


def parse_backends(text: str) -> list[str]:
    names = [b.strip().lower() for b in text.split(",") if b.strip()]
    bad = [b for b in names if b not in BACKENDS]
    if bad or not names:
        raise InputError(f"unknown backend(s) {', '.join(bad) or '(none)'}", hint=f"choose from {', '.join(BACKENDS)}")
    return names


def resolve_source(model: str, engine: str | None) -> ModelSource:
    """Tell what ``--model`` is from its suffix; a missing file is one clear error."""
    src = ModelSource()
    path = Path(model)
    if model != "default" and not path.exists():
        raise InputError("model not found", model, hint="pass a .pth/.safetensors checkpoint, an .onnx, an engine, or 'default'")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        src.onnx = path
    elif suffix in ENGINE_SUFFIXES:
        src.engine = path
    elif model == "default" or suffix in CHECKPOINT_SUFFIXES:
        src.checkpoint = model
    else:
        raise InputError(f"cannot tell the model type from {path.name!r}",
                         hint="use a .pth/.pt/.safetensors checkpoint, an .onnx file or a .engine/.plan engine")
    if engine:
        if not Path(engine).is_file():
            raise InputError("engine not found", engine, hint="build one with deblur-export, or drop --engine")
        src.engine = Path(engine)
    return src


# ------------------------------------------------------------------------------------- backends


def _torch_backend(model: Any, device: str) -> BenchBackend:
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: torch sees no CUDA GPU here", hint="use --device cpu (or auto)")
    model = model.to(dev).eval()

    def infer(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x).to(dev)).float().cpu().numpy()

    def prepare(x: np.ndarray) -> Step:
        xt = torch.from_numpy(x).to(dev)

        def step() -> Any:
            with torch.inference_mode():
                return model(xt)

        return step

    return BenchBackend("torch", infer, prepare, cuda_events=dev.type == "cuda", note=f"eager FP32, {device}")


def _ort_backend(path: Path, device: str, threads: int | None) -> BenchBackend:
    """The runtime's own ONNX backend (the session ``Deblurrer`` runs, CPU rewrites included)."""
    import onnxruntime as ort

    from deblur.runtime.backends.onnx_backend import OnnxBackend

    cuda = device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers()
    backend = OnnxBackend(path, device if cuda else "cpu", threads)  # no CUDA provider: the CPU, as noted in the table
    sess = backend.session
    used = sess.get_providers()[0].replace("ExecutionProvider", "").lower()

    def prepare(x: np.ndarray) -> Step:
        feed = {"input": np.ascontiguousarray(x, dtype=np.float32)}
        return lambda: sess.run(["output"], feed)

    note = f"{path.name}, {used}, {sess.get_session_options().intra_op_num_threads} threads"
    if backend.rewrites:
        note += f", rewrites: {'+'.join(backend.rewrites)}"
    return BenchBackend("onnxruntime", backend.infer, prepare, note=note, spec=dict(backend.spec), close=backend.close)


def _trt_backend(engine: Path) -> BenchBackend:
    from deblur.export.runners import tensorrt_runner
    from deblur.runtime.manifest import read_manifest

    spec = dict(read_manifest(engine).spec or {})
    runner = tensorrt_runner(engine)
    # The runner copies in and out and synchronises its stream: wall time, transfers included.
    return BenchBackend("tensorrt", runner, lambda x: (lambda: runner(x)), note=f"{engine.name}, incl. H2D/D2H",
                        spec=spec)


def make_backends(src: ModelSource, names: Sequence[str], device: str, threads: int | None,
                  stack: ExitStack) -> tuple[list[BenchBackend], list[Skipped]]:
    """Build the requested backends (exporting the ONNX a checkpoint needs into a temp folder)."""
    made: list[BenchBackend] = []
    skipped: list[Skipped] = []
    generator = None
    if src.checkpoint is not None:
        from deblur.train.checkpoint import load_generator

        generator, weights = load_generator(src.checkpoint)
        src.spec = weights.spec.to_dict()
        log.info("%s: checkpoint %s, spec %s", PROG, weights.path, weights.spec.name)
    elif src.untrained is not None:
        from deblur.train.networks import Generator
        from deblur.train.specs import get_spec

        generator = Generator(get_spec(src.untrained)).eval()
        src.spec = generator.spec.to_dict()
        log.info("%s: untrained %s (random weights: speed does not depend on them)", PROG, src.untrained)
    if "onnxruntime" in names and src.onnx is None and generator is not None:
        src.onnx = _export_temp_onnx(generator, src, stack)
    for name in names:
        if name == "torch":
            if generator is None:
                skipped.append(Skipped(name, "needs a checkpoint (.pth/.safetensors/default); this model is "
                                             f"{(src.onnx or src.engine).suffix}"))
                continue
            made.append(_torch_backend(generator, device))
            if threads:
                import torch

                torch.set_num_threads(threads)
        elif name == "onnxruntime":
            if src.onnx is None:
                skipped.append(Skipped(name, "needs an .onnx file or a checkpoint to export one from"))
                continue
            made.append(_ort_backend(src.onnx, device, threads))
        elif name == "tensorrt":
            from deblur.export.tensorrt_build import tensorrt_unavailable_reason

            reason = tensorrt_unavailable_reason()
            if reason is None and src.engine is None:
                reason = "no engine given (pass --engine FILE or --model FILE.engine; build one with deblur-export)"
            if reason is not None:
                skipped.append(Skipped(name, reason))
                continue
            made.append(_trt_backend(src.engine))
    for b in made:
        stack.callback(b.close)
        if not src.spec and b.spec:
            src.spec = {k: v for k, v in b.spec.items() if v is not None}
    return made, skipped


def _export_temp_onnx(generator: Any, src: ModelSource, stack: ExitStack) -> Path:
    """Export (and apply the CPU graph rewrites) into a temp folder removed when the run ends."""
    from deblur.export.onnx_export import contract, export_cpu_onnx

    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="deblur-bench-")))
    path = folder / "model.onnx"
    t0 = time.perf_counter()
    meta = contract(generator.spec, None, {"checkpoint": str(src.checkpoint or f"untrained {src.untrained}")}, 17)
    export_cpu_onnx(generator, path, metadata=meta)
    log.info("%s: exported ONNX for onnxruntime in %.1f s (temporary)", PROG, time.perf_counter() - t0)
    return path


def resolve_device(device: str) -> str:
    """``auto``: CUDA when torch (or, without torch, ONNX Runtime) can use a GPU here, else CPU."""
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        import onnxruntime as ort

        return "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"


# --------------------------------------------------------------------------------------- timing


def time_step(step: Step, runs: int, warmup: int, cuda_events: bool = False) -> list[float]:
    """Milliseconds of ``runs`` calls after ``warmup`` calls; every sample is synchronised."""
    for _ in range(warmup):
        step()
    out: list[float] = []
    if cuda_events:
        import torch

        torch.cuda.synchronize()
        for _ in range(runs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            out.append(float(start.elapsed_time(end)))
        return out
    for _ in range(runs):
        t0 = time.perf_counter()
        step()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def stats(ms: list[float]) -> dict[str, float]:
    p50 = float(np.percentile(ms, 50))
    return {"p50_ms": p50, "p99_ms": float(np.percentile(ms, 99)), "fps": 1e3 / p50 if p50 > 0 else math.inf}


def photo(h: int, w: int) -> np.ndarray:
    """The parity photo as a uint8 BGR frame of exactly h x w (OpenCV's convention)."""
    import cv2

    img = cv2.imread(str(PARITY_IMAGES / PARITY_PHOTO), cv2.IMREAD_COLOR)
    if img is None:
        raise InputError("parity photo missing from this install", PARITY_IMAGES / PARITY_PHOTO, hint="reinstall deblur-edge")
    interp = cv2.INTER_AREA if h * w < img.shape[0] * img.shape[1] else cv2.INTER_CUBIC
    return cv2.resize(img, (w, h), interpolation=interp)


def pre(frame_bgr: np.ndarray, multiple: int, min_size: int) -> np.ndarray:
    """The CPU path a frame takes in ``Deblurrer`` (runtime/frames.py): BGR -> padded NCHW RGB in [-1, 1]."""
    return preprocess(frame_bgr, multiple, min_size)[0]


def post(y: np.ndarray, h: int, w: int) -> np.ndarray:
    """And back, as ``Deblurrer`` does: crop, clamp, round, RGB -> BGR uint8 HxWx3."""
    return postprocess(y, FrameInfo(h, w, (h, w, 3), np.dtype(np.uint8), False, False, None))


def psnr_maxdiff(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    d = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return (math.inf if mse == 0 else 10 * math.log10(1.0 / mse)), d


def bench_size(backends: list[BenchBackend], skipped: list[Skipped], src: ModelSource, hw: tuple[int, int],
               runs: int, warmup: int) -> list[dict[str, Any]]:
    """All rows for one size: pre, post, each backend (with parity vs torch), each skip."""
    h, w = hw
    size = f"{h}x{w}"
    frame = photo(h, w)
    x = pre(frame, src.multiple, src.min_size)
    pre_ms = time_step(lambda: pre(frame, src.multiple, src.min_size), runs, warmup)
    post_ms = time_step(lambda: post(x, h, w), runs, warmup)  # x has the model output's shape
    rows: list[dict[str, Any]] = [
        {"backend": "pre (cpu)", "size": size, **stats(pre_ms), "runs": runs, "kind": "pre"},
        {"backend": "post (cpu)", "size": size, **stats(post_ms), "runs": runs, "kind": "post"},
    ]
    pre_p50, post_p50 = rows[0]["p50_ms"], rows[1]["p50_ms"]
    outputs: dict[str, np.ndarray] = {}
    for b in backends:
        log.info("%s: %s at %s: %d warm-up + %d timed runs", PROG, b.name, size, warmup, runs)
        try:
            y = b.infer(x)
            ms = time_step(b.prepare(x), runs, warmup, b.cuda_events)
        except Exception as e:  # noqa: BLE001 - e.g. a static-shape model or an engine profile too small
            reason = f"failed at this size: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
            log.warning("%s: %s %s", PROG, b.name, reason)
            rows.append({"backend": b.name, "size": size, "p50_ms": None, "p99_ms": None, "fps": None,
                         "kind": "model", "error": reason})
            continue
        outputs[b.name] = prepost.to_float_image(y, h, w)
        row = {"backend": b.name, "size": size, **stats(ms), "runs": runs, "warmup": warmup, "kind": "model",
               "input_shape": list(x.shape), "note": b.note}
        row["e2e_p50_ms"] = pre_p50 + row["p50_ms"] + post_p50
        row["e2e_fps"] = 1e3 / row["e2e_p50_ms"]
        if not np.isfinite(y).all():
            row["note"] += "; output has NaN/Inf"
        rows.append(row)
    torch_row = next((r for r in rows if r["backend"] == "torch" and r["p50_ms"]), None)
    for row in rows:
        if row["kind"] == "model" and row["p50_ms"] and torch_row is not None:
            row["vs_torch"] = torch_row["p50_ms"] / row["p50_ms"]
            row["psnr_db"], row["max_abs_diff"] = psnr_maxdiff(outputs[row["backend"]], outputs["torch"])
    for s in skipped:
        rows.append({"backend": s.name, "size": size, "p50_ms": None, "p99_ms": None, "fps": None, "kind": "model",
                     "skipped": s.reason})
    return rows


# -------------------------------------------------------------------------------------- output


def _fmt(v: Any, spec: str = ".1f") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return format(v, spec)


def markdown(rows: list[dict[str, Any]]) -> str:
    if len({r.get("model") for r in rows}) > 1:  # one table per model, each under its name
        models = list(dict.fromkeys(r.get("model") for r in rows))
        return "\n\n".join(f"{m}:\n\n" + markdown([r for r in rows if r.get("model") == m]) for m in models)
    head = ("| backend | size | p50 ms | p99 ms | FPS | vs torch | pre+model+post p50 ms | e2e FPS | PSNR dB | max abs diff | note |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    lines = [head]
    for r in rows:
        note = (f"skipped: {r['skipped']}" if r.get("skipped") else r.get("error") or r.get("note", ""))
        vs = f"{r['vs_torch']:.2f}x" if r.get("vs_torch") is not None else "-"
        psnr = "ref" if r["backend"] == "torch" and "psnr_db" in r else _fmt(r.get("psnr_db"))
        lines.append(f"| {r['backend']} | {r['size']} | {_fmt(r['p50_ms'], '.2f')} | {_fmt(r['p99_ms'], '.2f')} | "
                     f"{_fmt(r['fps'])} | {vs} | {_fmt(r.get('e2e_p50_ms'), '.2f')} | {_fmt(r.get('e2e_fps'))} | "
                     f"{psnr} | {_fmt(r.get('max_abs_diff'), '.1e')} | {note} |")
    return "\n".join(lines)


def _json_safe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in rows]


# ----------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(
        PROG,
        "Time torch, ONNX Runtime and TensorRT on one model: p50/p99 ms, FPS, pre/post, parity vs torch.",
        epilog="examples:\n"
               "  deblur-bench --model g.pth                      # torch vs onnxruntime (exported on the fly)\n"
               "  deblur-bench --model g.onnx --sizes 720x1280 --runs 50\n"
               "  deblur-bench --model g.pth --engine g_fp16.engine --json bench.json\n"
               "  deblur-bench --spec deblurgan-pico,deblurgan-nano --backends onnxruntime --sizes 360x640   # choose a spec",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="checkpoint (.pth/.safetensors/'default'), .onnx, or .engine/.plan")
    which.add_argument("--spec", help="comma list of spec names: untrained models of those specs (speed only; "
                                      "parity still compares the backends)")
    p.add_argument("--engine", help="a TensorRT engine to add to a checkpoint/ONNX comparison")
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma list from torch,onnxruntime,tensorrt (default: all)")
    p.add_argument("--sizes", default=DEFAULT_SIZES, help=f"HxW list (default {DEFAULT_SIZES})")
    p.add_argument("--runs", type=int, default=20, help="timed runs per backend and size (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    p.add_argument("--threads", type=int, help="CPU threads for torch and onnxruntime (default: each one's own)")
    p.add_argument("--device", default="cpu", help="torch/onnxruntime device: cpu, cuda[:N] or auto (default cpu)")
    p.add_argument("--json", type=Path, help="also write the rows as a JSON list to this file")
    return p


def _sources(args: argparse.Namespace) -> list[tuple[str, ModelSource]]:
    """(label, source) per model: the one --model, or one untrained model per --spec name."""
    if args.model is not None:
        return [(args.model, resolve_source(args.model, args.engine))]
    from deblur.train.specs import get_spec

    names = [n.strip() for n in args.spec.split(",") if n.strip()]
    for n in names:
        get_spec(n)  # unknown names fail before any work
    return [(f"{n} (untrained)", ModelSource(untrained=n)) for n in names]


def _main(args: argparse.Namespace) -> int:
    if args.runs < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        raise InputError("--runs must be >= 1, --warmup >= 0 and --threads >= 1")
    sizes = parse_sizes(args.sizes)
    names = parse_backends(args.backends)
    device = resolve_device(args.device)
    rows: list[dict[str, Any]] = []
    for label, src in _sources(args):
        with ExitStack() as stack:
            backends, skipped = make_backends(src, names, device, args.threads, stack)
            for s in skipped:
                log.info("%s: %s skipped: %s", PROG, s.name, s.reason)
            if not backends:
                raise InputError("no backend can run this model here", label,
                                 hint="; ".join(f"{s.name}: {s.reason}" for s in skipped))
            for hw in sizes:
                rows += [{"model": label, **r} for r in bench_size(backends, skipped, src, hw, args.runs, args.warmup)]
    print(markdown(rows))
    failed = [f"{r['backend']} at {r['size']}" for r in rows if r.get("error")]
    if args.json:
        from deblur.train.fileio import atomic_write_text

        atomic_write_text(args.json, json.dumps(_json_safe(rows), indent=2) + "\n")
        log.info("%s: wrote %s", PROG, args.json)
    if failed:
        log.error("%s: %d run(s) failed: %s", PROG, len(failed), ", ".join(failed))
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(PROG, build_parser(), _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
