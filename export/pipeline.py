"""The export pipeline: checkpoint -> ONNX -> FP16 graph -> OpenVINO IR -> TensorRT engine -> parity gate -> publish.

Each stage is one function over an ``ExportRun``; every artifact (the parity reports and the engine
manifest included) is written into a hidden staging folder inside ``workdir`` and renamed to its final
name only after the parity gate passes, all of them or none (``deblur.export.staging``), so an
interrupted or failed export never leaves a file under a final name, nor a report claiming success.
One log line per stage, with its time and the artifact's size. Every artifact is run through the runtime's own backends
(``deblur.runtime.backends``): the gate checks exactly what ``Deblurrer`` will run.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deblur.export import parity as P
from deblur.export import staging
from deblur.runtime.backends.base import Backend
from deblur.runtime.compare import compare
from deblur.runtime.contract import OnnxContract, is_fp16, load_onnx, read_onnx_props
from deblur.runtime.errors import DeblurError, EngineRequiredError, InputError, ParityError
from deblur.runtime.fileio import check_writable_folder, disk_full
from deblur.runtime.frames import is_flat
from deblur.runtime.images import list_images, read_rgb
from deblur.runtime.prepost import centre_crop, to_float_image, to_tensor
from deblur.runtime.shapes import parse_hw, round_up
from deblur.runtime.zoo import PARITY_IMAGES

log = logging.getLogger("deblur")
HALF_PROXY_CROP = 96  # the FP16 proxy computes convolutions in FP16 on the CPU: slow, so small crops


@dataclass
class ExportOptions:
    ckpt: str | None = None
    onnx: Path | None = None
    fp16: bool = False
    workdir: Path | None = None
    opset: int = 17
    min_shape: str | None = None
    opt_shape: str | None = None
    max_shape: str | None = None
    static: str | None = None
    parity_images: Path | None = None
    require_engine: bool = False
    device: str = "cuda:0"
    fp16_tool: str = "onnxconverter"
    debug_parity: bool = False
    spec: str | None = None
    openvino: bool = False


@dataclass
class ExportResult:
    published: dict[str, Path] = field(default_factory=dict)
    parity: list[P.ArtifactResult] = field(default_factory=list)
    engine_skipped: str | None = None
    engine_command: str | None = None  # when skipped: the command that builds the engine on the target


@dataclass
class Candidate:
    """One artifact the gate runs against the reference; ``gating=False`` is reported, never blocking."""

    artifact: str
    backend: Backend
    precision: str  # fp32 | fp16
    label: str  # backend and device, for the report
    gating: bool = True
    small_crops: bool = False  # centre crops only (the slow FP16 proxy)


@dataclass
class ExportRun:
    """The state one export builds up, stage by stage."""

    opts: ExportOptions
    workdir: Path
    tmp: Path
    images: list[tuple[str, np.ndarray]]
    engine_reason: str | None
    model: Any = None  # the PyTorch generator, when a checkpoint was given
    weights: Any = None
    stem: str = ""
    fp32: Path | None = None
    contract: OnnxContract | None = None
    source_fp16: bool = False  # the --onnx given is already the FP16 graph
    fp16: Path | None = None
    fp16_report: Any = None
    profile: Any = None
    static_hw: tuple[int, int] | None = None
    engine: Path | None = None
    engine_info: dict | None = None
    openvino_ir: Path | None = None
    staged: dict[str, Path] = field(default_factory=dict)  # final name -> temp path
    report_header: dict = field(default_factory=dict)  # parity.json's header, once the gate ran
    result: ExportResult = field(default_factory=ExportResult)

    @property
    def precision(self) -> str:
        return "fp16" if (self.fp16 or self.source_fp16) else "fp32"

    @property
    def engine_source(self) -> Path:
        """The graph TensorRT builds from: the FP16 graph when there is one."""
        return self.fp16 or self.fp32

    def final(self, path: Path) -> Path:
        """Where a staged file will be published (files given by the user stay where they are)."""
        return self.workdir / path.name if path.parent == self.tmp else path


@contextlib.contextmanager
def stage(name: str) -> Iterator[dict]:
    """Times a stage and logs one line: ``NAME: what (1.2 s, 3.4 MB)``."""
    info: dict = {}
    t0 = time.perf_counter()
    yield info
    size = f", {info['path'].stat().st_size / 1e6:.1f} MB" if info.get("path") else ""
    log.info("%-9s %s (%.1f s%s)", name + ":", info.get("what", "done"), time.perf_counter() - t0, size)


# ---------------------------------------------------------------------------------------- inputs


def load_parity_images(extra: Path | None) -> list[tuple[str, np.ndarray]]:
    paths = list_images(PARITY_IMAGES) + (list_images(extra) if extra else [])
    images = []
    for p in paths:
        rgb = read_rgb(p)
        if rgb is None:
            log.warning("parity image %s is unreadable; skipped", p)
            continue
        if is_flat(rgb):  # the runtime returns flat frames unchanged: identical on every backend by rule
            log.warning("parity image %s is flat (under one level of variation, e.g. 1x1); the runtime returns "
                        "such frames unchanged, so there is nothing to compare; skipped", p)
            continue
        images.append((p.name, rgb))
    if not images:
        raise InputError("no usable parity images", extra or PARITY_IMAGES,
                         hint="pass --parity-images DIR with .png/.jpg photos that are not flat")
    return images


def _default_workdir(opts: ExportOptions) -> Path:
    """Next to the source file (as Ultralytics does), except for the bundled model: the current folder."""
    from deblur.runtime.zoo import BUNDLED

    if opts.onnx is not None:
        return opts.onnx.parent
    return Path(".") if opts.ckpt in BUNDLED else Path(opts.ckpt).parent


# ---------------------------------------------------------------------------------------- stages


def load_checkpoint(run: ExportRun) -> None:
    if not run.opts.ckpt:
        return
    from deblur.train.checkpoint import load_generator
    from deblur.train.networks import count_parameters

    with stage("PyTorch") as s:
        run.model, run.weights = load_generator(run.opts.ckpt, spec=run.opts.spec)
        w = run.weights
        s.update(what=f"loaded {w.path.name} ({w.spec.name}, {count_parameters(run.model):,} parameters, {w.layout})",
                 path=w.path)


def export_fp32(run: ExportRun) -> None:
    """The FP32 ONNX: exported from the checkpoint, or the ``--onnx`` given."""
    if run.opts.onnx is not None:
        run.fp32 = run.opts.onnx
        props = read_onnx_props(run.fp32)
        run.contract, run.source_fp16 = OnnxContract.from_props(props, run.fp32), is_fp16(props)
        return
    from deblur.export.onnx_export import export_onnx

    w, opset = run.weights, run.opts.opset
    with stage("ONNX") as s:
        path = run.tmp / f"{run.stem}.onnx"
        export_onnx(run.model, path, source={"checkpoint": w.path.name, "checkpoint_sha256": w.sha256, "layout": w.layout},
                    opset=opset, static_hw=run.static_hw)
        run.fp32, run.staged[path.name] = path, path
        run.contract = OnnxContract.from_props(read_onnx_props(path), path)
        shape = f"static {run.static_hw[0]}x{run.static_hw[1]}" if run.static_hw else "dynamic N, H, W"
        s.update(what=f"exported {path.name}, opset {opset}, {shape}, checker passed", path=path)


def convert_fp16_graph(run: ExportRun) -> None:
    if not run.opts.fp16 or run.source_fp16:
        return
    from deblur.export.fp16 import convert_fp16

    with stage("FP16") as s:
        path = run.tmp / f"{run.stem}_fp16.onnx"
        report = convert_fp16(run.fp32, path, tool=run.opts.fp16_tool)
        run.fp16, run.fp16_report, run.staged[path.name] = path, report, path
        kept = Counter(n.rsplit("/", 1)[-1].rstrip("_0123456789") for n in report.fp32_nodes)
        s.update(what=f"{path.name} with {run.opts.fp16_tool}: {report.fp16_nodes} FP16 nodes, "
                      f"{', '.join(f'{v} {k}' for k, v in kept.items()) or 'no node'} kept FP32, FP32 I/O", path=path)


def build_engine(run: ExportRun) -> None:
    """The TensorRT engine and its manifest, both staged, so the gate loads it as the runtime will."""
    from deblur.export import tensorrt_build as T
    from deblur.runtime.contract import build_command

    name = f"{run.stem}_fp16.engine" if run.precision == "fp16" else f"{run.stem}.engine"
    if run.engine_reason:
        run.result.engine_skipped = run.engine_reason
        run.result.engine_command = build_command(run.final(run.engine_source), run.opts.fp16, run.profile)
        log.info("%-9s skipped: %s; on the target run: %s", "TensorRT:", run.engine_reason, run.result.engine_command)
        return
    with stage("TensorRT") as s:
        path = run.tmp / name
        run.engine_info = T.build_engine(run.engine_source, path, run.profile,
                                         timing_cache=run.workdir / f"{run.stem}.timing.cache")
        run.engine, run.staged[name] = path, path
        _write_engine_manifest(run, [])
        run.staged[name + ".json"] = run.tmp / (name + ".json")
        s.update(what=f"built {name}, strongly typed, profile {run.profile}", path=path)


def convert_openvino(run: ExportRun) -> None:
    """OpenVINO IR (``<stem>.xml`` + ``.bin``) from the FP32 graph, our contract in its rt_info; FP32
    weights, since OpenVINO picks the compute precision when it compiles (the gate runs each one)."""
    if not run.opts.openvino:
        return
    from deblur.runtime.backends import openvino_backend as ovb

    with stage("OpenVINO") as s:
        xml = run.tmp / f"{run.stem}.xml"
        ovb.save_ir(run.fp32, xml)
        run.openvino_ir = xml
        run.staged[xml.name], run.staged[xml.with_suffix(".bin").name] = xml, xml.with_suffix(".bin")
        weights = "the FP16 graph's weights" if run.source_fp16 else "FP32 weights"
        s.update(what=f"{xml.name} + {xml.with_suffix('.bin').name} (IR, {weights})", path=xml.with_suffix(".bin"))


def _openvino_candidates(run: ExportRun) -> list[Candidate]:
    """The IR at f32 (the FP32 bounds) and at the CPU's native bf16/f16, if it has one (the FP16 bounds)."""
    from deblur.runtime.backends import openvino_backend as ovb

    out = []
    for precision in ("f32", ovb.native_low_precision()):
        if precision is None:
            log.info("%-9s bf16/f16 not gated: this CPU computes neither natively (OpenVINO would run f32)", "OpenVINO:")
            continue
        b = ovb.OpenVinoBackend(run.openvino_ir, "cpu", precision=precision)
        gate_as = "fp16" if run.source_fp16 or b.precision != "fp32" else "fp32"
        out.append(Candidate(f"{run.openvino_ir.name} ({b.precision})", b, gate_as, f"openvino {b.version} cpu"))
    return out


def open_engine(path: Path, device: str) -> Backend:
    """The runtime's TensorRT backend (manifest, profile and host-code checks included)."""
    from deblur.runtime.backends.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(path, device)


def candidates(run: ExportRun) -> tuple[Backend, str, list[Candidate]]:
    """The reference and every artifact the gate runs, as the runtime's backends."""
    from deblur.runtime.backends.onnx_backend import OnnxBackend
    from deblur.runtime.backends.torch_backend import TorchBackend

    if run.model is not None:
        reference, ref_name = TorchBackend(run.model), "PyTorch FP32 (CPU)"
    else:
        reference, ref_name = OnnxBackend(run.fp32, cpu_rewrites=False), f"ONNX Runtime FP32 of {run.fp32.name} (no --ckpt given)"
    out: list[Candidate] = []
    if run.opts.onnx is None or run.model is not None:
        plain = OnnxBackend(run.fp32, cpu_rewrites=False)
        out.append(Candidate(run.fp32.name, plain, "fp16" if run.source_fp16 else "fp32", "onnxruntime-cpu"))
        rewritten = OnnxBackend(run.fp32)  # what Deblurrer runs on a CPU: gate it too
        if rewritten.rewrites and not plain.rewrites:
            out.append(Candidate(f"{run.fp32.name} + CPU rewrites ({', '.join(rewritten.rewrites)})", rewritten, "fp32",
                                 "onnxruntime-cpu"))
        else:
            rewritten.close()
    if run.fp16:
        out.append(Candidate(run.fp16.name, OnnxBackend(run.fp16, cpu_rewrites=False), "fp16", "onnxruntime-cpu"))
    if run.engine is not None:
        out.append(Candidate(run.engine.name, open_engine(run.engine, run.opts.device), run.precision,
                             f"tensorrt {run.engine_info.get('tensorrt_version', '')}"))
    if run.openvino_ir is not None:
        out += _openvino_candidates(run)
    if run.opts.fp16 and run.model is not None:
        from deblur.export.fp16 import half_reference

        out.append(Candidate("PyTorch .half() proxy (reported, not gating)", TorchBackend(half_reference(run.model)), "fp16",
                             "torch-cpu", gating=False, small_crops=True))
    return reference, ref_name, out


def run_parity(reference: Backend, cands: list[Candidate], images: list[tuple[str, np.ndarray]],
               static_hw: tuple[int, int] | None = None) -> list[P.ArtifactResult]:
    """Every candidate against ``reference`` on every image, outputs compared in [0, 1].

    Static-shape models see each image centre-cropped to at most their size and padded up to it.
    """
    spec = reference.spec
    results = []
    for c in cands:
        res = P.ArtifactResult(c.artifact, c.precision, c.label)
        for name, rgb in images:
            img = centre_crop(rgb, HALF_PROXY_CROP, spec.pad_multiple) if c.small_crops else rgb
            if static_hw and max(img.shape[:2]) > min(static_hw):
                img = centre_crop(img, min(static_hw), spec.pad_multiple)
            h, w = img.shape[:2]
            x = to_tensor(img, spec.pad_multiple, spec.min_size, size=static_hw)
            ref = to_float_image(reference.infer(x), h, w)
            raw = c.backend.infer(x)
            out = to_float_image(np.where(np.isfinite(raw), raw, np.nan), h, w)  # Inf must not clip to 0/1
            res.images.append(compare(name if not c.small_crops else f"{name} (centre {w}x{h})", ref, out, c.precision))
        results.append(res)
    return results


def gate(run: ExportRun) -> None:
    """Run the parity gate and write its reports; raises ParityError (nothing published) on failure."""
    with stage("Parity") as s:
        reference, ref_name, cands = candidates(run)
        try:
            run.result.parity = run_parity(reference, cands, run.images, run.contract.static_hw)
        finally:
            for b in [reference, *(c.backend for c in cands)]:
                b.close()
        gating = [r for r, c in zip(run.result.parity, cands, strict=True) if c.gating]
        s["what"] = f"{len(run.images)} images vs {ref_name}: " + ("passed" if all(a.passed for a in gating) else "FAILED")
    opts = run.opts
    run.report_header = {"checkpoint": str(opts.ckpt) if opts.ckpt else None, "onnx": str(opts.onnx) if opts.onnx else None,
                         "reference": ref_name, "spec": run.contract.spec.to_dict(),
                         "engine_skipped": run.result.engine_skipped, "engine_command": run.result.engine_command}
    failure = P.first_failure(gating)
    if failure:  # a report of the failure is published on its own (it claims nothing); a passing one by publish()
        P.write_reports(run.result.parity, run.workdir, run.report_header)
        detail = _debug(run, any(a.artifact == getattr(run.engine, "name", None) and not a.passed for a in gating)) \
            if opts.debug_parity else ""
        raise ParityError(f"parity gate failed: {failure}{detail}", run.workdir / "parity.md",
                          hint="nothing was published; see parity.md (rerun with --debug-parity to find the first diverging node)")


def publish(run: ExportRun) -> None:
    """Stage the last files (the engine's manifest with the gate's results, the parity reports), then
    rename everything to its final name, all or nothing: the reports say "passed" only beside what passed."""
    with stage("Publish") as s:
        if run.engine is not None:
            _write_engine_manifest(run, run.result.parity)
        P.write_reports(run.result.parity, run.tmp, run.report_header)
        files = {n: p for n, p in run.staged.items() if not n.endswith(".engine")}  # the manifest before its engine
        files |= {n: p for n, p in run.staged.items() if n.endswith(".engine")}
        files |= {"parity.json": run.tmp / "parity.json", "parity.md": run.tmp / "parity.md"}  # the reports last
        staging.publish(files, run.workdir, run.tmp)
        run.result.published = {n: run.workdir / n for n in files if not n.startswith("parity.")}
        s["what"] = ", ".join(run.result.published) or "nothing new (the source ONNX passed)"


# ------------------------------------------------------------------------------------------ main


def export(opts: ExportOptions) -> ExportResult:
    """Run every stage; raises ParityError (exit 3) when the gate fails, with nothing published."""
    from deblur.export.tensorrt_build import tensorrt_unavailable_reason

    if not opts.ckpt and not opts.onnx:
        raise InputError("nothing to export", hint="pass --ckpt CHECKPOINT (or --onnx MODEL.onnx to build an engine)")
    # bad sizes fail before any work; they are rounded to the spec's multiple once the model is loaded
    from deblur.export.tensorrt_build import make_profile

    make_profile(opts.min_shape, opts.opt_shape, opts.max_shape, multiple=1,
                 static_hw=parse_hw(opts.static, "--static") if opts.static else None)
    if opts.openvino:  # fail before any work, like --require-engine
        from deblur.runtime.backends import openvino_backend as ovb

        if not ovb.available():
            raise InputError("--openvino needs OpenVINO, which is not installed", hint=ovb.HINT)
        ovb.core()  # installed but broken: its InputError now
    engine_reason = tensorrt_unavailable_reason()
    if opts.require_engine and engine_reason:
        raise EngineRequiredError(f"a TensorRT engine is required but cannot be built here: {engine_reason}",
                                  hint="run this on the target (Jetson or GPU workstation) with TensorRT installed")
    if opts.onnx is not None:
        if not opts.onnx.is_file():
            raise InputError("ONNX model not found", opts.onnx, hint="check the path")
        load_onnx(opts.onnx, external_data=False)  # unreadable bytes or external data outside its folder: refused now
    workdir = opts.workdir or _default_workdir(opts)
    check_writable_folder(workdir, "--workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    images = load_parity_images(opts.parity_images)
    staging.remove_stale(workdir)  # left by an export that was killed
    tmp = staging.make_staging(workdir)
    run = ExportRun(opts, workdir, tmp, images, engine_reason)
    try:
        with _write_errors(run):
            _stages(run)
        return run.result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _stages(run: ExportRun) -> None:
    """Every stage in order, then the gate and publication."""
    opts = run.opts
    load_checkpoint(run)
    run.stem = (run.weights.path.stem if run.weights else opts.onnx.stem).removesuffix("_fp16")
    _shapes(run, run.weights.spec if run.weights else None)
    export_fp32(run)
    if run.weights is None:
        _shapes(run, run.contract.spec)
    convert_fp16_graph(run)
    convert_openvino(run)
    build_engine(run)
    gate(run)
    publish(run)


@contextlib.contextmanager
def _write_errors(run: ExportRun) -> Iterator[None]:
    """A full disk (or another write failure) while staging is one line naming the file by its final name."""
    try:
        yield
    except DeblurError as e:
        if e.path and Path(e.path).parent == run.tmp:  # atomic_path's own line, about a staged file
            e.path = str(run.final(Path(e.path)))
        raise
    except OSError as e:
        if e.errno != errno.ENOSPC and not disk_full(run.tmp):
            raise
        where = run.final(Path(e.filename)) if e.filename else f"into {run.workdir}"
        raise InputError(f"disk full writing {where}; nothing was published", hint="free space or pass another --workdir") from None
    except Exception:  # writers that wrap ENOSPC in their own error (torch.onnx.export, onnx.save)
        if not disk_full(run.tmp):
            raise
        raise InputError(f"disk full writing into {run.workdir}; nothing was published",
                         hint="free space or pass another --workdir") from None


def _shapes(run: ExportRun, spec: Any) -> None:
    """The static size and engine profile, rounded to the spec's pad multiple (known once the model is)."""
    if spec is None:
        return
    from deblur.export.tensorrt_build import make_profile

    opts, m = run.opts, spec.pad_multiple
    if opts.static:
        h, w = parse_hw(opts.static, "--static")
        run.static_hw = round_up(h, m), round_up(w, m)
        if run.static_hw != (h, w):
            log.warning("--static %s rounded up to %dx%d: H and W must be multiples of %d", opts.static, *run.static_hw, m)
    run.profile, warnings = make_profile(opts.min_shape, opts.opt_shape, opts.max_shape, static_hw=run.static_hw,
                                         multiple=m, min_size=spec.min_size)
    for w in warnings:
        log.warning("%s", w)


def _debug(run: ExportRun, engine_failed: bool) -> str:
    """Re-export the reference and name the first diverging node of each failing graph."""
    from deblur.export.debug_parity import first_divergence

    spec, static = run.contract.spec, run.contract.static_hw
    img = run.images[0][1]
    if static:
        img = centre_crop(img, min(static), spec.pad_multiple)
    x = to_tensor(img, spec.pad_multiple, spec.min_size, size=static)
    lines = []
    if run.model is not None:
        from deblur.export.onnx_export import export_onnx

        ref = export_onnx(run.model, run.tmp / "debug_ref.onnx", opset=run.opts.opset, static_hw=static)
        lines.append(f"{run.fp32.name}: " + first_divergence(run.fp32, ref, x, 1e-4, run.tmp))
        if run.fp16:
            lines.append(f"{run.fp16.name}: " + first_divergence(run.fp16, ref, x, 1e-2, run.tmp))
    elif run.fp16:
        lines.append(f"{run.fp16.name}: " + first_divergence(run.fp16, run.fp32, x, 1e-2, run.tmp))
    if engine_failed:
        from deblur.export.debug_parity import polygraphy_command

        lines.append("for the engine run: " + polygraphy_command(run.fp16 or run.fp32))
    return " | " + " | ".join(lines) if lines else ""


def _write_engine_manifest(run: ExportRun, results: list[P.ArtifactResult]) -> None:
    """The manifest beside the staged engine; ``parity`` holds the gate's per-artifact results once run."""
    from deblur.runtime.contract import EngineManifest, write_manifest
    from deblur.runtime.fileio import sha256_file

    info, source = run.engine_info, run.engine_source
    m = EngineManifest(
        engine_sha256=sha256_file(run.engine), engine_file=run.engine.name,
        tensorrt_version=info.get("tensorrt_version", "unknown"), cuda_version=info.get("cuda_version", "unknown"),
        driver_version=info.get("driver_version", "unknown"), gpu_name=info.get("gpu_name", "unknown"),
        compute_capability=info.get("compute_capability", "unknown"), profile=run.profile.as_dict(),
        precision=run.precision, strongly_typed=True, spec=run.contract.spec.to_dict(), source_onnx=source.name,
        source_onnx_sha256=sha256_file(source), source_checkpoint_sha256=run.weights.sha256 if run.weights else None,
        parity={"artifacts": [P.summary(a) for a in results]} if results else {},
    )
    write_manifest(m, run.engine)
