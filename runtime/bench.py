"""The pieces of ``deblur-bench`` (the CLI is runtime/bench_cli.py; timing is runtime/timing.py).

For each backend and size: warm-up, then ``runs`` timed runs of the model alone (wall clock on
CPU, where the call returns only when the output is in host memory; CUDA events around the
forward when torch runs on a GPU; TensorRT wall clock with its copies in and out), p50/p99 ms and
FPS; the CPU pre- and post-processing (``Deblurrer``'s own path, runtime/frames.py, on a uint8
BGR frame of that size) timed as their own rows, and an end-to-end estimate (pre + model + post).
Parity against torch (else ONNX Runtime) in the same run: PSNR and max |d| in [0, 1] on a real
photo (``zoo.PARITY_IMAGES``) resized to the size, judged by the export gate's bounds for the
precision each backend computes in (``runtime.compare``). Speed as ratios against ONNX Runtime and
torch timed in the same run, and as achieved GMAC/s (``runtime.macs``) with its share of the CPU's
peak measured by dense probes in the same run (``runtime.peak``).

Every model runs through the runtime's own backends (``TorchBackend``, ``OnnxBackend``,
``OpenVinoBackend``, ``TensorRTBackend``), so an engine gets the manifest, profile and host-code checks and an ONNX file
the runtime's session options and CPU rewrites, exactly as ``Deblurrer`` runs them. The model's
pad multiple and minimum size come from its ``ModelSpec`` (checkpoint, ONNX contract or manifest).

Imports of other parts of the package, all lazy and only where a run needs them:

- a checkpoint opens through ``deblur.runtime.backends.torch_backend`` (torch and ``deblur.train``:
  the ``train`` extra); ``--spec NAME`` builds an untrained ``deblur.train.networks.Generator``
  (the ``train`` extra too);
- turning a checkpoint (or an untrained model) into the ONNX file ONNX Runtime runs is the one
  step that needs the ``export`` extra: ``deblur.export.onnx_export.export_cpu_onnx`` into a
  temporary folder removed when the run ends.

An ``.onnx`` or engine on its own needs neither torch nor ``deblur.train``/``deblur.export``.
"""
from __future__ import annotations

import importlib.util
import logging
import math
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deblur.runtime import prepost
from deblur.runtime.backends.base import Backend
from deblur.runtime.compare import compare, max_abs_diff, psnr
from deblur.runtime.errors import InputError
from deblur.runtime.frames import FrameInfo, postprocess, preprocess
from deblur.runtime.macs import macs
from deblur.runtime.shapes import parse_hw_list
from deblur.runtime.spec import ModelSpec
from deblur.runtime.timing import stats, time_step
from deblur.runtime.zoo import BUNDLED, BUNDLED_HINT, PARITY_IMAGES, resolve_model

log = logging.getLogger("deblur")

PROG = "deblur-bench"
BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")
DEFAULT_SIZES = "360x640,720x1280"
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")
ENGINE_SUFFIXES = (".engine", ".plan")
PARITY_PHOTO = "srn01_241x319.png"  # real camera blur, the largest of the set


@dataclass
class Skipped:
    name: str
    reason: str


@dataclass
class ModelSource:
    """The model the user gave, resolved: a checkpoint, an ONNX file and/or a TensorRT engine."""

    checkpoint: Path | None = None
    untrained: str | None = None  # a spec name: random weights, for speed only (--spec)
    onnx: Path | None = None
    openvino_ir: Path | None = None  # an OpenVINO .xml (else OpenVINO reads the ONNX)
    engine: Path | None = None
    spec: ModelSpec | None = None  # set by make_backends: the model's own (checkpoint, ONNX contract, manifest)


# ------------------------------------------------------------------------------------- arguments


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"360x640,720x1280"`` -> [(360, 640), (720, 1280)] (H x W); anything else is an InputError."""
    return parse_hw_list(text, "--sizes")


def parse_backends(text: str) -> list[str]:
    names = [b.strip().lower() for b in text.split(",") if b.strip()]
    bad = [b for b in names if b not in BACKENDS]
    if bad or not names:
        raise InputError(f"unknown backend(s) {', '.join(bad) or '(none)'}", hint=f"choose from {', '.join(BACKENDS)}")
    return names


def resolve_source(model: str, engine: str | None) -> ModelSource:
    """Tell what ``--model`` is from its suffix (``default``: the bundled checkpoint); a missing file is one clear error."""
    src = ModelSource()
    path = Path(model)
    if model in BUNDLED:
        src.checkpoint = resolve_model(model, "torch")
    elif not path.exists():
        raise InputError("model not found", model,
                         hint=f"pass a .pth/.safetensors checkpoint, an .onnx, an engine, or {BUNDLED_HINT}")
    elif path.suffix.lower() == ".onnx":
        src.onnx = path
    elif path.suffix.lower() in ENGINE_SUFFIXES:
        src.engine = path
    elif path.suffix.lower() == ".xml":
        src.openvino_ir = path
    elif path.suffix.lower() in CHECKPOINT_SUFFIXES:
        src.checkpoint = path
    else:
        raise InputError(f"cannot tell the model type from {path.name!r}",
                         hint="use a .pth/.pt/.safetensors checkpoint, an .onnx file, an OpenVINO .xml or a .engine/.plan engine")
    if engine:
        if not Path(engine).is_file():
            raise InputError("engine not found", engine, hint="build one with deblur-export, or drop --engine")
        src.engine = Path(engine)
    return src


# ------------------------------------------------------------------------------------- backends


def _generator(src: ModelSource) -> Any:
    """The model in memory on the CPU (for torch and the temp ONNX export), or None for an .onnx/engine."""
    if src.checkpoint is not None:
        try:
            from deblur.runtime.backends.torch_backend import load  # the runtime's checkpoint loader (train extra)
        except ImportError as e:
            raise InputError(f"checkpoints need torch ({e.name} is missing)", src.checkpoint,
                             hint="pip install 'deblur-edge[train]', or pass an .onnx file or an engine") from None
        generator = load(src.checkpoint, "cpu").model
        log.info("%s: checkpoint %s, spec %s", PROG, src.checkpoint, generator.spec.name)
        return generator
    if src.untrained is not None:
        from deblur.runtime.spec import get_spec
        from deblur.train.networks import build_generator  # --spec: untrained models need the train extra

        generator = build_generator(get_spec(src.untrained)).eval()
        log.info("%s: untrained %s (random weights: speed does not depend on them)", PROG, src.untrained)
        return generator
    return None


def _export_temp_onnx(generator: Any, src: ModelSource, stack: ExitStack) -> Path:
    """The one step that needs the export extra: the CPU ONNX (graph rewrites applied) into a temp
    folder removed when the run ends."""
    from deblur.export.onnx_export import export_cpu_onnx

    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="deblur-bench-")))
    path = folder / "model.onnx"
    t0 = time.perf_counter()
    export_cpu_onnx(generator, path, source={"checkpoint": str(src.checkpoint or f"untrained {src.untrained}")})
    log.info("%s: exported ONNX for onnxruntime in %.1f s (temporary)", PROG, time.perf_counter() - t0)
    return path


def _ort_device(device: str) -> str:
    """ONNX Runtime's CUDA provider for a CUDA device where this ONNX Runtime has it; else the CPU (the note says which)."""
    if not device.startswith("cuda"):
        return "cpu"
    import onnxruntime as ort

    return device if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"


def _tensorrt(engine: Path | None, device: str) -> Backend | str:
    """The engine's backend, or why it cannot run here (the backend's own InputError: no TensorRT,
    no torch CUDA, no GPU). A bad manifest or engine is an error, not a skip."""
    if engine is None:
        if importlib.util.find_spec("tensorrt") is None:
            return "TensorRT is not installed (pip install tensorrt needs NVIDIA's index / JetPack ships it)"
        return "no engine given (pass --engine FILE or --model FILE.engine; build one with deblur-export)"
    from deblur.runtime.backends.tensorrt_backend import TensorRTBackend

    try:
        return TensorRTBackend(engine, device)
    except InputError as e:
        return e.line()


def _openvino(path: Path | None, threads: int | None) -> Backend | str:
    """OpenVINO on the CPU at its ``auto`` precision (the CPU's native bf16/f16, else f32), or why not."""
    from deblur.runtime.backends import openvino_backend as ovb

    if not ovb.available():
        return f"OpenVINO is not installed ({ovb.HINT})"
    if path is None:
        return "needs an .onnx, an OpenVINO .xml or a checkpoint to export one from"
    try:
        return ovb.OpenVinoBackend(path, "cpu", threads)
    except InputError as e:  # it cannot read or compile this model (or cannot start): a row that says why
        return e.line()


def make_backends(src: ModelSource, names: Sequence[str], device: str, threads: int | None,
                  stack: ExitStack) -> tuple[list[Backend], list[Skipped]]:
    """Build the requested backends (exporting the ONNX a checkpoint needs into a temp folder); ``stack`` closes them.

    Sets ``src.spec`` to the model's ``ModelSpec`` (a warning when the backends' specs differ)."""
    made: list[Backend] = []
    skipped: list[Skipped] = []
    generator = _generator(src)
    if {"onnxruntime", "openvino"} & set(names) and src.onnx is None and generator is not None:
        src.onnx = _export_temp_onnx(generator, src, stack)  # before torch may move the generator to a GPU
    for name in names:
        backend: Backend | str
        if name == "torch":
            if generator is None:
                backend = f"needs a checkpoint (.pth/.safetensors/default); this model is {(src.onnx or src.openvino_ir or src.engine).suffix}"
            else:
                from deblur.runtime.backends.torch_backend import TorchBackend

                backend = TorchBackend(generator, device, threads, path=src.checkpoint)
        elif name == "onnxruntime":
            if src.onnx is None:
                backend = "needs an .onnx file or a checkpoint to export one from"
            else:
                from deblur.runtime.backends.onnx_backend import OnnxBackend

                backend = OnnxBackend(src.onnx, _ort_device(device), threads)
        elif name == "openvino":
            backend = _openvino(src.openvino_ir or src.onnx, threads)
        else:
            backend = _tensorrt(src.engine, device)
        if isinstance(backend, str):
            skipped.append(Skipped(name, backend))
            continue
        made.append(stack.enter_context(backend))
    for b in made:
        if src.spec is None:
            src.spec = b.spec
        elif b.spec != src.spec:
            log.warning("%s: %s runs spec %s, the model's is %s", PROG, b.name, b.spec.name, src.spec.name)
    return made, skipped


def _cuda_timed(b: Backend) -> bool:
    """Torch on a GPU returns before the forward ends: time it with CUDA events. The others copy
    their output back to the host (wall time, transfers included)."""
    return b.name == "torch" and str(b.device).startswith("cuda")


# --------------------------------------------------------------------------------------- frames


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


# --------------------------------------------------------------------------------------- rows


def bench_size(backends: list[Backend], skipped: list[Skipped], spec: ModelSpec, hw: tuple[int, int],
               runs: int, warmup: int) -> list[dict[str, Any]]:
    """All rows for one size: pre, post, each backend, each skip.

    Each backend row has its speed against ONNX Runtime and torch in this run, achieved GMAC/s (the
    spec's multiply-adds over the p50; ``add_peak_shares`` relates them to the probes), and parity
    against the reference (torch, else ONNX Runtime) judged by the export gate's bounds."""
    h, w = hw
    size = f"{h}x{w}"
    frame = photo(h, w)
    multiple, min_size = spec.pad_multiple, spec.min_size
    x = pre(frame, multiple, min_size)
    pre_ms = time_step(lambda: pre(frame, multiple, min_size), runs, warmup)
    post_ms = time_step(lambda: post(x, h, w), runs, warmup)  # x has the model output's shape
    rows: list[dict[str, Any]] = [
        {"backend": "pre (cpu)", "size": size, **stats(pre_ms), "runs": runs, "kind": "pre"},
        {"backend": "post (cpu)", "size": size, **stats(post_ms), "runs": runs, "kind": "post"},
    ]
    pre_p50, post_p50 = rows[0]["p50_ms"], rows[1]["p50_ms"]
    gmac = macs(spec, h, w) / 1e9
    outputs: dict[str, np.ndarray] = {}
    for b in backends:
        log.info("%s: %s at %s: %d warm-up + %d timed runs", PROG, b.name, size, warmup, runs)
        try:
            y = b.infer(x)
            ms = time_step(b.prepare(x), runs, warmup, _cuda_timed(b))
        except Exception as e:  # noqa: BLE001 - e.g. a static-shape model or an engine profile too small
            reason = f"failed at this size: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
            log.warning("%s: %s %s", PROG, b.name, reason)
            rows.append({"backend": b.name, "size": size, "p50_ms": None, "p99_ms": None, "fps": None,
                         "kind": "model", "error": reason})
            continue
        outputs[b.name] = prepost.to_float_image(y, h, w)
        row = {"backend": b.name, "precision": b.precision, "size": size, **stats(ms), "runs": runs, "warmup": warmup,
               "kind": "model", "input_shape": list(x.shape), "note": b.note}
        row["e2e_p50_ms"] = pre_p50 + row["p50_ms"] + post_p50
        row["e2e_fps"] = 1e3 / row["e2e_p50_ms"]
        row["gmacs"] = gmac / (row["p50_ms"] / 1e3)
        row["cpu"] = not str(b.device).startswith("cuda")
        if not np.isfinite(y).all():
            row["note"] += "; output has NaN/Inf"
        rows.append(row)
    timed = {r["backend"]: r for r in rows if r["kind"] == "model" and r["p50_ms"]}
    ref_name = "torch" if "torch" in timed else "onnxruntime" if "onnxruntime" in timed else None
    for row in timed.values():
        for other in ("onnxruntime", "torch"):
            if other in timed:
                row[f"vs_{other}"] = timed[other]["p50_ms"] / row["p50_ms"]
        if ref_name is not None:
            a, ref = outputs[row["backend"]], outputs[ref_name]
            row["parity_ref"] = ref_name
            row["psnr_db"], row["max_abs_diff"] = psnr(a, ref), max_abs_diff(a, ref)
            if row["backend"] != ref_name:
                bounds = "fp32" if row["precision"] == "fp32" and timed[ref_name]["precision"] == "fp32" else "fp16"
                failures = compare(size, ref, a, bounds).failures
                row["gate"] = "pass" if not failures else "FAIL: " + "; ".join(failures[:2])
    for s in skipped:
        rows.append({"backend": s.name, "size": size, "p50_ms": None, "p99_ms": None, "fps": None, "kind": "model",
                     "skipped": s.reason})
    return rows


def add_peak_shares(rows: list[dict[str, Any]], peaks: dict[str, float]) -> None:
    """Each CPU row's achieved GMAC/s as a share of the peak of the precision it computes in."""
    for r in rows:
        peak = peaks.get(r.get("precision", "")) if r.get("cpu") and r.get("gmacs") else None
        r["peak_share"] = r["gmacs"] / peak if peak else None


def peak_rows(peak_probes: list[dict[str, Any]]) -> str:
    """The probes as a small Markdown table (printed above the backends' table)."""
    lines = ["| peak probe | precision | GMAC/s | when |", "|---|---|---:|---|"]
    lines += [f"| {r['probe']} | {r['precision']} | {r['gmacs']:.1f} | {r.get('when', 'start')} |" for r in peak_probes]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------- output


def _fmt(v: Any, spec: str = ".1f") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return format(v, spec)


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table; one table per model, each under its name, when there are several."""
    if len({r.get("model") for r in rows}) > 1:
        models = list(dict.fromkeys(r.get("model") for r in rows))
        return "\n\n".join(f"{m}:\n\n" + markdown([r for r in rows if r.get("model") == m]) for m in models)
    head = ("| backend | precision | size | p50 ms | p99 ms | FPS | vs onnxruntime | vs torch | pre+model+post p50 ms | e2e FPS "
            "| GMAC/s | % of peak | PSNR dB | max abs diff | gate | note |\n"
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    lines = [head]
    for r in rows:
        note = (f"skipped: {r['skipped']}" if r.get("skipped") else r.get("error") or r.get("note", ""))
        ratios = [f"{r[k]:.2f}x" if r.get(k) is not None else "-" for k in ("vs_onnxruntime", "vs_torch")]
        is_ref = r.get("parity_ref") == r["backend"]
        psnr_cell = "ref" if is_ref else _fmt(r.get("psnr_db"))
        share = f"{100 * r['peak_share']:.0f} %" if r.get("peak_share") else "-"
        lines.append(f"| {r['backend']} | {r.get('precision', '-')} | {r['size']} | {_fmt(r['p50_ms'], '.2f')} | "
                     f"{_fmt(r['p99_ms'], '.2f')} | {_fmt(r['fps'])} | {ratios[0]} | {ratios[1]} | "
                     f"{_fmt(r.get('e2e_p50_ms'), '.2f')} | {_fmt(r.get('e2e_fps'))} | {_fmt(r.get('gmacs'))} | {share} | "
                     f"{psnr_cell} | {_fmt(r.get('max_abs_diff'), '.1e')} | {'ref' if is_ref else r.get('gate', '-')} | {note} |")
    return "\n".join(lines)


def model_ratios(rows: list[dict[str, Any]]) -> str:
    """p50 of each model against the first, per backend, precision and size: the ratio a speed budget
    between two models is stated in ("the new default at most 1.5x the old one"), from one run. Only the
    model rows: pre and post do not depend on the model."""
    rows = [r for r in rows if r.get("kind", "model") == "model"]
    models = list(dict.fromkeys(r.get("model") for r in rows))
    if len(models) < 2:
        return ""
    key = lambda r: (r["backend"], r.get("precision"), r["size"])  # noqa: E731
    first = {key(r): r.get("p50_ms") for r in rows if r.get("model") == models[0]}
    lines = [f"| model | backend | precision | size | p50 ms | vs {models[0]} |", "|---|---|---|---|---:|---:|"]
    for r in rows:
        ref, p50 = first.get(key(r)), r.get("p50_ms")
        if r.get("model") == models[0] or ref is None or p50 is None or not math.isfinite(p50) or not ref:
            continue
        lines.append(f"| {r['model']} | {r['backend']} | {r.get('precision', '-')} | {r['size']} | {p50:.2f} | {p50 / ref:.2f}x |")
    return "\n".join(lines) if len(lines) > 2 else ""


def json_safe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with inf/NaN as None (JSON has neither)."""
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in rows]
