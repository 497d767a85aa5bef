"""The functional checks of ``deblur-doctor``: each proves one path works on this machine, or says why it cannot run here.

A check is a plain function of the run's ``Context`` that returns what it measured (the row's
detail), raises ``Skip`` when this machine cannot run it (no GPU, a package not installed: the
reason says which and how to install it), and fails by raising anything else. ``run_checks`` turns
each into a ``Row`` (name, status pass/fail/skip, detail, seconds). The table and JSON are
runtime/doctor_cli.py; the environment table is runtime/doctor_env.py.

Everything is reused, not re-implemented: NVRTC compiles the shipped ``prepost.cu``
(runtime/cuda/nvrtc.py); the GPU kernels are compared bit for bit with the CPU reference
(runtime/prepost.py) through ``CudaPrePost``; the bundled model goes through the real export pipeline
and its parity gate (export/pipeline.py) into a temporary folder; the timings open the runtime's own
backends as ``deblur-bench`` does (runtime/bench.py). Torch, ONNX Runtime, OpenVINO, TensorRT,
cuda-python and PyAV are imported inside the checks that need them, so the doctor runs on a robot
with none of them.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deblur.runtime.doctor_env import HINTS, Gpu, module_available
from deblur.runtime.errors import DeblurError

log = logging.getLogger("deblur")

TIME_HW = (720, 1280)
EXPORT_HINT = "pip install 'deblur-edge[export]'"
TORCH_MISSING = f"torch not installed ({EXPORT_HINT})"


class Skip(Exception):
    """This machine cannot run the check; the message says why and what to install."""


class Failed(Exception):
    """The check ran and the path does not work; the message says what was wrong."""


@dataclass
class Row:
    name: str
    title: str
    status: str  # pass | fail | skip
    detail: str  # what was measured, why it failed, or why it was skipped
    seconds: float = 0.0
    needs: str = "cpu"  # "gpu": can only pass where a CUDA GPU is
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """What one doctor run shares between checks: the model, the temp folder, the GPU, what the export made."""

    workdir: Path  # a temporary folder the caller removes
    model: str = "default"  # the bundled model, or a checkpoint / .onnx path
    runs: int = 5  # timed runs per backend (after ``warmup``)
    warmup: int = 1
    gpus: list[Gpu] = field(default_factory=list)
    gpu_reason: str | None = "not probed"
    gpu_index: int = 0
    artifacts: dict[str, Path] = field(default_factory=dict)  # "onnx", "engine": published by the export check
    export_rows: dict[str, tuple[str, str, dict]] | None = None  # name -> (status, detail, data), filled once

    @property
    def gpu(self) -> Gpu | None:
        return self.gpus[self.gpu_index] if self.gpu_index < len(self.gpus) else None


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    needs: str
    run: Callable[[Context], str | tuple[str, dict]]


# -------------------------------------------------------------------------------------------- helpers


def _need_gpu(ctx: Context) -> Gpu:
    if ctx.gpu is None:
        raise Skip(f"needs a CUDA GPU: {ctx.gpu_reason}")
    return ctx.gpu


def _need_module(name: str, why: str) -> None:
    if module_available(name) is not None:
        raise Skip(why)


def _is_onnx(model: str) -> bool:
    return model.lower().endswith(".onnx")


def _bundled(model: str) -> bool:
    from deblur.runtime.zoo import BUNDLED

    return model in BUNDLED


# --------------------------------------------------------------------------------------------- NVRTC


def check_nvrtc(ctx: Context) -> str:
    """NVRTC compiles the shipped ``prepost.cu``: for this GPU's own architecture where there is one
    (CUBIN, or PTX the driver JIT-compiles for a GPU newer than this NVRTC), else PTX for Jetson Orin."""
    _need_module("cuda.bindings", f"cuda-python not installed ({HINTS['cuda']}); only the GPU pre/post path needs it")
    from deblur.runtime.cuda import nvrtc
    from deblur.runtime.errors import CudaCompileError

    try:
        major, minor = nvrtc.nvrtc_version()
    except CudaCompileError as e:
        if ctx.gpu is None:
            raise Skip(f"{e.line()} (and no GPU here)") from None
        raise
    archs = nvrtc.supported_archs()
    gpu = ctx.gpu
    if gpu is None:
        sm = 87 if 87 in archs else max(archs)
        image, what = nvrtc.compile_ptx(f"compute_{sm}"), f"PTX for compute_{sm} (Jetson Orin; no GPU here to target)"
    elif gpu.sm in archs:
        image, what = nvrtc.compile_cubin(f"sm_{gpu.sm}"), f"CUBIN for sm_{gpu.sm}, this GPU ({gpu.name})"
    elif any(a <= gpu.sm for a in archs):
        sm = max(a for a in archs if a <= gpu.sm)
        image, what = nvrtc.compile_ptx(f"compute_{sm}"), f"PTX for compute_{sm}, JIT-compiled by the driver for {gpu.name}"
    else:
        raise Failed(f"NVRTC {major}.{minor} cannot generate code for compute {gpu.compute_capability} ({gpu.name}); "
                     f"it supports sm {', '.join(map(str, archs))}: install a cuda-toolkit[nvrtc] that does")
    missing = [k for k in nvrtc.KERNELS if k.encode() not in image]
    if missing:
        raise Failed(f"{what}: kernels {', '.join(missing)} missing from the output")
    return f"{what}: {len(nvrtc.KERNELS)} kernels, {len(image) / 1024:.0f} KiB, NVRTC {major}.{minor}, --fmad=false"


# ----------------------------------------------------------------------------------------- GPU kernels

KERNEL_SIZES = [(720, 1280), (241, 319), (7, 3), (1, 1)]  # a camera frame, an odd size, sizes that edge-pad


def check_kernels(ctx: Context) -> tuple[str, dict]:
    """The CUDA pre/post kernels on this GPU equal the CPU reference bit for bit on random frames
    (FP32 and FP16 tensors, BGR frames, padded sizes), then one timed 720p pre+post with its copies."""
    gpu = _need_gpu(ctx)
    _need_module("cuda.bindings", f"cuda-python not installed ({HINTS['cuda']})")
    import numpy as np

    from deblur.runtime.cuda.prepost_gpu import CudaPrePost
    from deblur.runtime.prepost import to_tensor, to_uint8
    from deblur.runtime.timing import stats, time_step

    # values on the rounding boundaries and the clamps, where an off-by-one-ulp shows
    edge = np.float32([-1.0, 1.0, -1.5, 2.0, 0.0, 1 / 255 - 1, 0.5 / 127.5 - 1, 1.5 / 127.5 - 1, 127.5 / 127.5 - 1])
    rng = np.random.default_rng(2018)
    bad: list[str] = []
    cases = 0
    with CudaPrePost(gpu.index) as pp:
        for h, w in KERNEL_SIZES:
            frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            ref32 = to_tensor(np.ascontiguousarray(frame[..., ::-1]), 4)
            ph, pw = ref32.shape[2:]
            y32 = rng.uniform(-1.1, 1.1, (1, 3, ph, pw)).astype(np.float32)
            y32.reshape(-1)[: edge.size] = edge[: y32.size]
            for fp16 in (False, True):
                kind = "fp16" if fp16 else "fp32"
                ref = ref32.astype(np.float16) if fp16 else ref32  # round to nearest even, like __float2half_rn
                got = pp.download(pp.preprocess(frame, bgr=True, padded_hw=(ph, pw), fp16=fp16), ref.shape, ref.dtype)
                bits = np.uint16 if fp16 else np.uint32
                n = int(np.count_nonzero(got.view(bits) != ref.view(bits)))
                if n:
                    bad.append(f"pre {kind} {w}x{h}: {n} of {ref.size} values differ")
                y = y32.astype(np.float16) if fp16 else y32
                want = to_uint8(y.astype(np.float32), h, w)[..., ::-1]  # the GPU widens FP16 to FP32 first
                out = pp.postprocess(pp.upload(y, name="doctor_tensor"), h, w, padded_hw=(ph, pw), fp16=fp16, bgr=True)
                n = int(np.count_nonzero(out != want))
                if n:
                    bad.append(f"post {kind} {w}x{h}: {n} of {want.size} values differ")
                cases += 2
        if bad:
            raise Failed(f"{len(bad)} of {cases} cases differ from the CPU reference on {gpu.name}: {'; '.join(bad[:3])}")
        h, w = TIME_HW
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ms = stats(time_step(lambda: pp.postprocess(pp.preprocess(frame, padded_hw=(h, w)), h, w, padded_hw=(h, w)),
                             runs=20, warmup=3))
    detail = (f"{cases} cases bit-exact (pre and post, FP32 and FP16, {len(KERNEL_SIZES)} sizes from 1x1 to 1280x720) "
              f"on {gpu.name} (compute {gpu.compute_capability}); {w}x{h} pre+post with host copies p50 {ms['p50_ms']:.2f} ms")
    return detail, {"cases": cases, "prepost_720p_p50_ms": ms["p50_ms"]}


# ---------------------------------------------------------------------------------------------- export


def _model_paths(model: str) -> tuple[str | None, Path | None]:
    """(checkpoint for ExportOptions.ckpt, ONNX for ExportOptions.onnx)."""
    if _is_onnx(model):
        return None, Path(model)
    return model, None


def _load_parity_report(path: Path) -> tuple[str, str, list]:
    """The gate's own report (written on success and on failure): reference, spec name, ArtifactResults."""
    from deblur.export.parity import ArtifactResult
    from deblur.runtime.compare import ImageResult

    data = json.loads(path.read_text())
    arts = [ArtifactResult(a["artifact"], a["precision"], a["backend"], [ImageResult(**i) for i in a["images"]], a["skipped"])
            for a in data["artifacts"]]
    return data.get("reference") or "the reference", (data.get("spec") or {}).get("name", "?"), arts


def _row_of(artifact: Any) -> str | None:
    """Which doctor row an artifact of the gate belongs to (the non-gating PyTorch half proxy: none)."""
    if artifact.backend.startswith("tensorrt"):
        return "export-tensorrt"
    if artifact.backend.startswith("onnxruntime"):
        return "export-fp16" if artifact.precision == "fp16" else "export-onnx"
    return None


def _summarise(arts: list, reference: str) -> tuple[str, str, dict]:
    from deblur.export.parity import first_failure

    images = {r.image for a in arts for r in a.images}
    parts = []
    for a in arts:
        worst = min((r.psnr for r in a.images), default=math.inf)
        biggest = max((r.max for r in a.images), default=0.0)
        psnr = "" if math.isinf(worst) else f"worst PSNR {worst:.1f} dB, "
        on = f" on {a.backend}" if not a.backend.startswith("onnxruntime") else ""
        parts.append(f"{a.artifact}{on}: {psnr}max |d| {biggest:.1e}")
    failure = first_failure(arts)
    data = {"artifacts": [{"artifact": a.artifact, "precision": a.precision, "passed": a.passed} for a in arts]}
    if failure:
        return "fail", f"parity gate failed: {failure}", data
    return "pass", f"parity gate passed on {len(images)} photos vs {reference}; " + "; ".join(parts), data


def run_export(ctx: Context) -> dict[str, tuple[str, str, dict]]:
    """The real export pipeline on the model, into a temp folder: ONNX FP32 (+ FP16 graph where the
    converter is installed, + TensorRT engine where TensorRT and a GPU are) through the parity gate.

    One run feeds three rows (``export-onnx``, ``export-fp16``, ``export-tensorrt``); ``ctx.artifacts``
    gets the published ONNX and engine for the timing rows."""
    if ctx.export_rows is not None:
        return ctx.export_rows
    from deblur.export.tensorrt_build import tensorrt_unavailable_reason

    ckpt, onnx = _model_paths(ctx.model)
    engine_reason = tensorrt_unavailable_reason()
    rows: dict[str, tuple[str, str, dict]] = {}
    ctx.export_rows = rows
    needed = (["torch"] if ckpt else []) + ["onnx", "onnxruntime"]
    missing = [f"{m} not installed ({EXPORT_HINT})" for m in needed if module_available(m)]
    if missing:
        rows["export-onnx"] = ("skip", missing[0], {})
        rows["export-fp16"] = ("skip", missing[0], {})
        rows["export-tensorrt"] = ("skip", engine_reason or missing[0], {})
        return rows
    fp16 = module_available("onnxconverter_common") is None
    if not fp16:
        rows["export-fp16"] = ("skip", f"onnxconverter-common not installed ({EXPORT_HINT})", {})
    from deblur.export.pipeline import ExportOptions, export
    from deblur.runtime.errors import EngineBuildError, Fp16GraphError, ParityError

    workdir = ctx.workdir / "export"
    device = f"cuda:{ctx.gpu.index}" if ctx.gpu is not None else "cpu"
    result, stopped = None, None  # stopped: (row, why) when the export ended before its gate
    try:
        result = export(ExportOptions(ckpt=ckpt, onnx=onnx, fp16=fp16, workdir=workdir, device=device))
    except ParityError:
        pass  # the gate wrote its report: the rows below say which artifact failed
    except EngineBuildError as e:
        stopped = ("export-tensorrt", e.line())
    except Fp16GraphError as e:
        stopped = ("export-fp16", e.line())
    except Exception as e:  # noqa: BLE001 - a bad checkpoint, a broken package: this row fails
        log.debug("export failed", exc_info=True)
        stopped = ("export-onnx", _first_line(e))
    if stopped is not None:
        first, line = stopped
        rows[first] = ("fail", line, {})
        if engine_reason:
            rows.setdefault("export-tensorrt", ("skip", engine_reason, {}))
        for name in ("export-onnx", "export-fp16", "export-tensorrt"):
            rows.setdefault(name, ("skip", f"not gated: {first} failed first", {}))
        return rows
    reference, spec, arts = _load_parity_report(workdir / "parity.json")
    for name in ("export-onnx", "export-fp16", "export-tensorrt"):
        mine = [a for a in arts if _row_of(a) == name]
        if mine:
            rows[name] = _summarise(mine, reference)
        elif name == "export-tensorrt":
            rows[name] = ("skip", (result.engine_skipped if result else None) or engine_reason or "no engine was built", {})
        elif name == "export-fp16" and fp16:
            rows[name] = ("fail", "the export made no FP16 graph", {})
    rows.setdefault("export-onnx", ("skip", "no FP32 ONNX to gate: the model given is an FP16 graph", {}))
    src = f"bundled model {ckpt!r}" if ckpt and _bundled(ckpt) else Path(ckpt or onnx).name
    status, detail, data = rows["export-onnx"]
    rows["export-onnx"] = (status, f"{src} (spec {spec}) -> ONNX; {detail}", data)
    if result is not None:
        for name, path in result.published.items():
            if name.endswith(".engine"):
                ctx.artifacts["engine"] = path
            elif name.endswith(".onnx") and not name.endswith("_fp16.onnx"):
                ctx.artifacts["onnx"] = path
        if onnx is not None:
            ctx.artifacts.setdefault("onnx", onnx)
    return rows


def _export_row(name: str) -> Callable[[Context], tuple[str, dict]]:
    def check(ctx: Context) -> tuple[str, dict]:
        status, detail, data = run_export(ctx)[name]
        if status == "skip":
            raise Skip(detail)
        if status == "fail":
            raise Failed(detail)
        return detail, data

    check.__name__ = f"check_{name.replace('-', '_')}"
    return check


# ----------------------------------------------------------------------------------------------- video


def check_h264(ctx: Context) -> tuple[str, dict]:
    """What ``deblur-video --output-save`` records with: libx264 through PyAV into MKV, decoded back."""
    _need_module("av", f"PyAV not installed ({HINTS['video']}): deblur-video records H.264 through it")
    import av
    import numpy as np

    h, w, n = 240, 320, 12
    yy, xx = np.mgrid[0:h, 0:w]
    frames = [np.dstack([(xx + 8 * i) % 256, (yy + 4 * i) % 256, np.full((h, w), 128)]).astype(np.uint8) for i in range(n)]
    path = ctx.workdir / "h264.mkv"
    with av.open(str(path), "w", format="matroska") as out:
        try:
            stream = out.add_stream("libx264", rate=30)
        except Exception as e:  # noqa: BLE001 - UnknownCodecError: a PyAV built without libx264
            raise Failed(f"this PyAV has no libx264 encoder ({type(e).__name__}); deblur-video records H.264 with it: "
                         "record with --output-codec mjpg, or install a PyAV wheel with libx264") from None
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with av.open(str(path)) as inp:
        decoded = [fr.to_ndarray(format="bgr24") for fr in inp.decode(video=0)]
    if len(decoded) != n or any(d.shape != (h, w, 3) for d in decoded):
        raise Failed(f"encoded {n} frames {w}x{h}, decoded {len(decoded)} of shapes {sorted({d.shape for d in decoded})}")
    err = float(np.mean([np.abs(a.astype(np.int16) - b).mean() for a, b in zip(frames, decoded, strict=True)]))
    if err > 8:
        raise Failed(f"decoded frames differ from the encoded ones by {err:.1f} levels on average (expected under 8)")
    return (f"libx264 -> MKV -> h264 decoder: {n} frames {w}x{h}, {path.stat().st_size / 1024:.0f} KiB, mean |d| {err:.1f} levels",
            {"mean_abs_diff": err})


# ---------------------------------------------------------------------------------------------- timing


def _timing_setup(ctx: Context, backend: str) -> tuple[Any, str]:
    """(bench.ModelSource, device) for one backend, or Skip with why it cannot run here."""
    from deblur.runtime.bench import ModelSource
    from deblur.runtime.zoo import resolve_model

    gpu = f"cuda:{ctx.gpu.index}" if ctx.gpu is not None else None
    if backend == "torch":
        if module_available("torch"):
            raise Skip(TORCH_MISSING)
        if _is_onnx(ctx.model):
            raise Skip("--model is an ONNX file; the torch backend runs checkpoints")
        import torch

        device = gpu if gpu and torch.cuda.is_available() else "cpu"
        return ModelSource(checkpoint=resolve_model(ctx.model, "torch")), device
    if backend == "tensorrt":
        from deblur.export.tensorrt_build import tensorrt_unavailable_reason

        reason = tensorrt_unavailable_reason()
        if reason:
            raise Skip(reason)
        if "engine" not in ctx.artifacts:
            raise Skip("no engine to time: export-tensorrt did not build one")
        return ModelSource(engine=ctx.artifacts["engine"]), gpu or "cuda:0"
    if backend == "onnxruntime":
        if module_available("onnxruntime"):
            raise Skip(f"ONNX Runtime not installed ({HINTS['ort']})")
    else:
        from deblur.runtime.backends import openvino_backend as ovb

        if not ovb.available():
            raise Skip(f"OpenVINO not installed ({HINTS['openvino']})")
    onnx = ctx.artifacts.get("onnx") or (resolve_model(ctx.model, backend) if _bundled(ctx.model) else None)
    if onnx is None:
        raise Skip("no ONNX file to time: export-onnx did not make one")
    return ModelSource(onnx=onnx), (gpu or "cpu") if backend == "onnxruntime" else "cpu"


def _time_backend(backend: str) -> Callable[[Context], tuple[str, dict]]:
    def check(ctx: Context) -> tuple[str, dict]:
        import numpy as np

        from deblur.runtime import bench
        from deblur.runtime.timing import stats, time_step

        src, device = _timing_setup(ctx, backend)
        h, w = TIME_HW
        with ExitStack() as stack:
            made, skipped = bench.make_backends(src, [backend], device, None, stack)
            if skipped:  # installed, yet it cannot open the model: that is a failure here
                raise Failed(skipped[0].reason)
            b = made[0]
            x = bench.pre(bench.photo(h, w), b.spec.pad_multiple, b.spec.min_size)
            y = b.infer(x)
            if y.shape != x.shape or not np.isfinite(y).all():
                raise Failed(f"output {y.shape} (input {x.shape}), {int(np.size(y) - np.isfinite(y).sum())} NaN/Inf values")
            cuda_events = b.name == "torch" and str(b.device).startswith("cuda")
            s = stats(time_step(b.prepare(x), ctx.runs, ctx.warmup, cuda_events))
            detail = (f"p50 {s['p50_ms']:.1f} ms ({s['fps']:.1f} FPS) at {w}x{h}, model only, {b.precision} on {b.device}, "
                      f"{ctx.runs} runs; {b.note}")
            return detail, {"p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"], "fps": s["fps"], "precision": b.precision,
                            "device": str(b.device), "runs": ctx.runs}

    check.__name__ = f"check_time_{backend}"
    return check


# ---------------------------------------------------------------------------------------------- runner

CHECKS: list[Check] = [
    Check("nvrtc", "NVRTC compiles prepost.cu", "cpu", check_nvrtc),
    Check("cuda-kernels", "CUDA pre/post kernels bit-exact vs the CPU reference", "gpu", check_kernels),
    Check("export-onnx", "model -> ONNX FP32, parity gate", "cpu", _export_row("export-onnx")),
    Check("export-fp16", "FP16 ONNX graph, parity gate (ONNX Runtime)", "cpu", _export_row("export-fp16")),
    Check("export-tensorrt", "TensorRT engine, parity gate", "gpu", _export_row("export-tensorrt")),
    Check("video-h264", "H.264 recording: libx264 encode + decode (PyAV)", "cpu", check_h264),
    Check("time-onnxruntime", "ONNX Runtime at 1280x720", "cpu", _time_backend("onnxruntime")),
    Check("time-openvino", "OpenVINO at 1280x720", "cpu", _time_backend("openvino")),
    Check("time-torch", "PyTorch at 1280x720", "cpu", _time_backend("torch")),
    Check("time-tensorrt", "TensorRT engine at 1280x720", "gpu", _time_backend("tensorrt")),
]
NAMES = [c.name for c in CHECKS]
GROUPS = sorted({n.split("-")[0] for n in NAMES} - set(NAMES))  # "cuda", "export", "video", "time"


def selected(name: str, skip: Iterable[str]) -> bool:
    """False when ``name`` or its group (the part before the first '-') is in ``skip``."""
    return not any(s == name or name.startswith(s + "-") for s in skip)


def _first_line(e: BaseException) -> str:
    if isinstance(e, DeblurError):
        return e.line()
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def run_check(check: Check, ctx: Context) -> Row:
    """One check as a Row; any exception but an interrupt is that check's failure, never the doctor's."""
    t0 = time.perf_counter()
    data: dict = {}
    try:
        out = check.run(ctx)
        detail, data = out if isinstance(out, tuple) else (out, {})
        status = "pass"
    except Skip as e:
        status, detail = "skip", str(e)
    except Failed as e:
        status, detail = "fail", str(e)
    except Exception as e:  # noqa: BLE001 - a broken package or a bug: this row fails, the others still run
        log.debug("%s failed", check.name, exc_info=True)
        status, detail = "fail", _first_line(e)
    return Row(check.name, check.title, status, detail, time.perf_counter() - t0, check.needs, data)


def run_checks(ctx: Context, skip: Iterable[str] = (), progress: Callable[[str], None] | None = None) -> list[Row]:
    skip = list(skip)
    rows = []
    for check in CHECKS:
        if not selected(check.name, skip):
            rows.append(Row(check.name, check.title, "skip", "skipped by --skip", 0.0, check.needs))
            continue
        if progress:
            progress(check.name)
        rows.append(run_check(check, ctx))
    return rows


def as_dict(row: Row) -> dict[str, Any]:
    """The row for JSON: non-finite numbers (an infinite PSNR or FPS) become None, as JSON has neither."""
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return clean(asdict(row))
