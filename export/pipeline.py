"""The export pipeline: checkpoint -> ONNX -> FP16 graph -> TensorRT engine -> parity gate -> publish.

Every artifact is written into a hidden temp folder inside ``workdir`` and renamed to its final
name only after the parity gate passes, so an interrupted or failed export never leaves a file
under a final name. One log line per stage, with its time and the artifact's size.
"""
from __future__ import annotations

import contextlib
from collections import Counter
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deblur.export import parity as P
from deblur.train.errors import DeblurError, InputError
from deblur.train.images import list_images, read_rgb

log = logging.getLogger("deblur")
BUNDLED_PARITY = Path(__file__).resolve().parent / "parity_images"
HALF_PROXY_CROP = 96  # the FP16 proxy computes convolutions in FP16 on the CPU: slow, so small crops


class ParityError(DeblurError):
    exit_code = 3


class EngineRequiredError(DeblurError):
    exit_code = 4


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


@dataclass
class ExportResult:
    published: dict[str, Path] = field(default_factory=dict)
    parity: list[P.ArtifactResult] = field(default_factory=list)
    engine_skipped: str | None = None


@contextlib.contextmanager
def stage(name: str) -> Iterator[dict]:
    """Times a stage and logs one line: ``NAME: what (1.2 s, 3.4 MB)``."""
    info: dict = {}
    t0 = time.perf_counter()
    yield info
    size = f", {_mb(info['path'])}" if info.get("path") else ""
    log.info("%-9s %s (%.1f s%s)", name + ":", info.get("what", "done"), time.perf_counter() - t0, size)


def _mb(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB"


def parse_static(text: str) -> tuple[int, int]:
    from deblur.export.tensorrt_build import round_shape

    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"bad --static {text!r}", hint="write HxW, e.g. --static 720x1280") from None
    (_, _, h2, w2), warning = round_shape((1, 3, h, w))
    if warning:
        log.warning("--static %s rounded up to %dx%d: H and W must be multiples of 4", text, h2, w2)
    return h2, w2


def _check_workdir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".deblur-write-test"):
            pass
    except OSError as e:
        raise InputError(f"cannot write to the work folder ({e.strerror})", folder, hint="pass a writable --workdir") from None


def check_external_data(onnx_path: Path) -> None:
    """Refuse ONNX files whose external data would be read from outside their own folder."""
    import onnx

    try:
        proto = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"is not a readable ONNX model ({type(e).__name__})", onnx_path, hint="re-export it") from None
    root = onnx_path.resolve().parent
    for init in proto.graph.initializer:
        if init.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in init.external_data if e.key == "location"), "")
        target = (root / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(root):
            raise InputError(
                f"refused: tensor {init.name!r} reads external data from {location!r}, outside the model's folder",
                onnx_path, hint="re-export with weights embedded (deblur-export writes single-file models)")


def load_parity_images(extra: Path | None) -> list[tuple[str, np.ndarray]]:
    paths = list_images(BUNDLED_PARITY) + (list_images(extra) if extra else [])
    images = []
    for p in paths:
        rgb = read_rgb(p)
        if rgb is None:
            log.warning("parity image %s is unreadable; skipped", p)
            continue
        images.append((p.name, rgb))
    if not images:
        raise InputError("no parity images", extra or BUNDLED_PARITY, hint="pass --parity-images DIR with .png/.jpg photos")
    return images


def _centre_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    ch, cw = min(h, size) // 4 * 4 or h, min(w, size) // 4 * 4 or w
    y, x = (h - ch) // 2, (w - cw) // 2
    return rgb[y : y + ch, x : x + cw]


def run_parity(reference, candidates: list[tuple[str, str, str, object, bool]], images, multiple: int, min_size: int,
               static_hw: tuple[int, int] | None = None) -> list[P.ArtifactResult]:
    """``candidates``: (artifact, backend, precision, runner, small_crops_only) against ``reference``.

    Static-shape models see each image centre-cropped to at most their size and padded up to it.
    """
    from deblur.runtime.prepost import to_float_image, to_tensor

    results = []
    for artifact, backend, precision, runner, small in candidates:
        res = P.ArtifactResult(artifact, precision, backend)
        for name, rgb in images:
            img = _centre_crop(rgb, HALF_PROXY_CROP) if small else rgb
            if static_hw:
                img = _centre_crop(img, min(static_hw)) if max(img.shape[:2]) > min(static_hw) else img
            h, w = img.shape[:2]
            x = to_tensor(img, multiple, min_size, size=static_hw)
            ref = to_float_image(reference(x), h, w)
            raw = runner(x)
            out = to_float_image(np.where(np.isfinite(raw), raw, np.nan), h, w)  # Inf must not clip to 0/1
            res.images.append(P.compare(name if not small else f"{name} (centre {w}x{h})", ref, out, precision))
        results.append(res)
    return results


def export(opts: ExportOptions) -> ExportResult:
    """Run every stage; raises ParityError (exit 3) when the gate fails, with nothing published."""
    from deblur.export.tensorrt_build import make_profile, tensorrt_unavailable_reason

    if not opts.ckpt and not opts.onnx:
        raise InputError("nothing to export", hint="pass --ckpt CHECKPOINT (or --onnx MODEL.onnx to build an engine)")
    static_hw = parse_static(opts.static) if opts.static else None
    profile, warnings = make_profile(opts.min_shape, opts.opt_shape, opts.max_shape, static_hw=static_hw)
    for w in warnings:
        log.warning("%s", w)
    engine_reason = tensorrt_unavailable_reason()
    if opts.require_engine and engine_reason:
        raise EngineRequiredError(f"a TensorRT engine is required but cannot be built here: {engine_reason}",
                                  hint="run this on the target (Jetson or GPU workstation) with TensorRT installed")
    if opts.onnx is not None:
        if not opts.onnx.is_file():
            raise InputError("ONNX model not found", opts.onnx, hint="check the path")
        check_external_data(opts.onnx)
    source = Path(opts.ckpt) if opts.ckpt else opts.onnx
    workdir = opts.workdir or _default_workdir(opts)
    _check_workdir(workdir)
    images = load_parity_images(opts.parity_images)
    tmp = Path(tempfile.mkdtemp(prefix=".deblur-export-", dir=workdir))
    try:
        return _export(opts, source, workdir, tmp, profile, static_hw, engine_reason, images)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _export(opts, source, workdir, tmp, profile, static_hw, engine_reason, images) -> ExportResult:
    from deblur.export import runners as R
    from deblur.export.onnx_export import contract, export_onnx, read_metadata, read_props
    from deblur.runtime.onnx_optimize import cpu_rewritten

    result = ExportResult()
    model = weights = None
    if opts.ckpt:
        from deblur.train.checkpoint import load_generator
        from deblur.train.networks import count_parameters

        with stage("PyTorch") as s:
            model, weights = load_generator(opts.ckpt, spec=opts.spec)
            s["what"] = (f"loaded {weights.path.name} ({weights.spec.name}, {count_parameters(model):,} parameters, "
                         f"{weights.layout})")
            s["path"] = weights.path
    stem = (weights.path.stem if weights else opts.onnx.stem).removesuffix("_fp16")
    staged: dict[str, Path] = {}  # final name -> temp path
    if opts.onnx is None:
        with stage("ONNX") as s:
            meta = contract(weights.spec, static_hw, {"checkpoint": weights.path.name, "checkpoint_sha256": weights.sha256,
                                                      "layout": weights.layout}, opts.opset)
            fp32 = export_onnx(model, tmp / f"{stem}.onnx", metadata=meta, opset=opts.opset, static_hw=static_hw)
            staged[f"{stem}.onnx"] = fp32
            s.update(what=f"exported {stem}.onnx, opset {opts.opset}, {'static ' + 'x'.join(map(str, static_hw)) if static_hw else 'dynamic N, H, W'}, checker passed", path=fp32)
    else:
        fp32 = opts.onnx
    props = read_props(fp32)
    meta = read_metadata(fp32, props)
    spec_d = meta["spec"]
    multiple, min_size = int(meta["pad_multiple"]), int(meta.get("min_size", 0))
    fp16_graph = None
    is_fp16_source = "deblur.fp16" in props
    if opts.fp16 and not is_fp16_source:
        from deblur.export.fp16 import convert_fp16

        with stage("FP16") as s:
            fp16_graph = convert_fp16(fp32, tmp / f"{stem}_fp16.onnx", tool=opts.fp16_tool)
            staged[f"{stem}_fp16.onnx"] = tmp / f"{stem}_fp16.onnx"
            kept = Counter(n.rsplit("/", 1)[-1].rstrip("_0123456789") for n in fp16_graph.fp32_nodes)
            s.update(what=f"{stem}_fp16.onnx with {opts.fp16_tool}: {fp16_graph.fp16_nodes} FP16 nodes, "
                          f"{', '.join(f'{v} {k}' for k, v in kept.items()) or 'no node'} kept FP32, FP32 I/O",
                     path=tmp / f"{stem}_fp16.onnx")
    engine_src = (tmp / f"{stem}_fp16.onnx") if fp16_graph else fp32
    precision = "fp16" if (fp16_graph or is_fp16_source) else "fp32"
    engine_name = f"{stem}_fp16.engine" if precision == "fp16" else f"{stem}.engine"
    engine_info = None
    if engine_reason:
        from deblur.export.tensorrt_build import build_command

        result.engine_skipped = engine_reason
        log.info("%-9s skipped: %s; on the target run: %s", "TensorRT:", engine_reason,
                 build_command(workdir / engine_src.name if engine_src.parent == tmp else engine_src, opts.fp16))
    else:
        from deblur.export.tensorrt_build import build_engine

        with stage("TensorRT") as s:
            engine_info = build_engine(engine_src, tmp / engine_name, profile, timing_cache=workdir / f"{stem}.timing.cache")
            staged[engine_name] = tmp / engine_name
            s.update(what=f"built {engine_name}, strongly typed, profile {profile}", path=tmp / engine_name)

    with stage("Parity") as s:
        if model is not None:
            reference, ref_name = R.torch_runner(model), "PyTorch FP32 (CPU)"
        else:
            reference, ref_name = R.ort_runner(fp32), f"ONNX Runtime FP32 of {fp32.name} (no --ckpt given)"
        cands = []
        if opts.onnx is None or model is not None:
            cands.append((fp32.name, "onnxruntime-cpu", "fp16" if is_fp16_source else "fp32", R.ort_runner(fp32), False))
            rewritten = cpu_rewritten(fp32)  # what Deblurrer runs on a CPU: gate it too
            if rewritten is not None:
                cands.append((f"{fp32.name} + CPU rewrites ({', '.join(rewritten[1])})", "onnxruntime-cpu", "fp32",
                              R.ort_runner(rewritten[0]), False))
        if fp16_graph:
            cands.append((f"{stem}_fp16.onnx", "onnxruntime-cpu", "fp16", R.ort_runner(tmp / f"{stem}_fp16.onnx"), False))
        if engine_info is not None:
            cands.append((engine_name, f"tensorrt {engine_info.get('tensorrt_version', '')}", precision,
                          R.tensorrt_runner(tmp / engine_name, opts.device), False))
        static = tuple(meta["static_hw"]) if meta.get("static_hw") else None
        result.parity = run_parity(reference, cands, images, multiple, min_size, static)
        if opts.fp16 and model is not None:
            proxy = run_parity(reference, [("PyTorch .half() proxy", "torch-cpu", "fp16", R.torch_half_runner(model), True)],
                               images, multiple, min_size, static)[0]
            proxy.artifact += " (reported, not gating)"
            result.parity.append(proxy)
        gating = [a for a in result.parity if "not gating" not in a.artifact]
        s["what"] = f"{len(images)} images vs {ref_name}: " + ("passed" if all(a.passed for a in gating) else "FAILED")
    header = {"checkpoint": str(source) if opts.ckpt else None, "onnx": str(opts.onnx) if opts.onnx else None,
              "reference": ref_name, "spec": spec_d, "engine_skipped": result.engine_skipped}
    P.write_reports(result.parity, workdir, header)
    failure = P.first_failure(gating)
    if failure:
        detail = ""
        if opts.debug_parity:
            engine_failed = any(a.artifact == engine_name and not a.passed for a in gating)
            detail = _debug(opts, model, weights, fp32, fp16_graph and tmp / f"{stem}_fp16.onnx", images, multiple, min_size,
                            tmp, static_hw, engine_failed)
        raise ParityError(f"parity gate failed: {failure}{detail}", workdir / "parity.md",
                          hint="nothing was published; see parity.md (rerun with --debug-parity to find the first diverging node)")
    with stage("Publish") as s:
        for final, temp in staged.items():
            temp.replace(workdir / final)
            result.published[final] = workdir / final
        if engine_info is not None:
            built_from = workdir / engine_src.name if engine_src.parent == tmp else engine_src  # the graph TensorRT parsed
            _write_engine_manifest(workdir / engine_name, engine_info, profile, precision, spec_d, built_from, weights, result.parity)
            result.published[engine_name + ".json"] = workdir / (engine_name + ".json")
        s["what"] = ", ".join(result.published) or "nothing new (the source ONNX passed)"
    return result


def _default_workdir(opts: ExportOptions) -> Path:
    """Next to the source file (as Ultralytics does), except for the bundled model: the current folder."""
    from deblur.train.zoo import BUNDLED

    if opts.onnx is not None:
        return opts.onnx.parent
    return Path(".") if opts.ckpt in BUNDLED else Path(opts.ckpt).parent


def _debug(opts, model, weights, fp32, fp16_path, images, multiple, min_size, tmp, static_hw, engine_failed=False) -> str:
    """Re-export the reference and name the first diverging node of each failing graph."""
    from deblur.export.debug_parity import first_divergence
    from deblur.export.onnx_export import contract, export_onnx
    from deblur.runtime.prepost import to_tensor

    img = images[0][1]
    if static_hw:
        img = _centre_crop(img, min(static_hw))
    x = to_tensor(img, multiple, min_size, size=static_hw)
    lines = []
    if model is not None:
        ref = export_onnx(model, tmp / "debug_ref.onnx", metadata=contract(weights.spec, static_hw, {}, opts.opset),
                          opset=opts.opset, static_hw=static_hw)
        lines.append(f"{fp32.name}: " + first_divergence(fp32, ref, x, 1e-4, tmp))
        if fp16_path:
            lines.append(f"{fp16_path.name}: " + first_divergence(fp16_path, ref, x, 1e-2, tmp))
    elif fp16_path:
        lines.append(f"{fp16_path.name}: " + first_divergence(fp16_path, fp32, x, 1e-2, tmp))
    if engine_failed:
        from deblur.export.debug_parity import polygraphy_command

        lines.append("for the engine run: " + polygraphy_command(fp16_path or fp32))
    return " | " + " | ".join(lines) if lines else ""


def _write_engine_manifest(engine: Path, info: dict, profile, precision, spec, onnx_path, weights, results) -> None:
    from deblur.runtime.manifest import EngineManifest, write_manifest
    from deblur.train.cli import package_version
    from deblur.train.fileio import sha256_file

    m = EngineManifest(
        engine_sha256=sha256_file(engine), engine_file=engine.name, tensorrt_version=info.get("tensorrt_version", "unknown"),
        cuda_version=info.get("cuda_version", "unknown"), driver_version=info.get("driver_version", "unknown"),
        gpu_name=info.get("gpu_name", "unknown"), compute_capability=info.get("compute_capability", "unknown"),
        profile={"min": list(profile.min), "opt": list(profile.opt), "max": list(profile.max)}, precision=precision,
        strongly_typed=True, spec=spec, source_onnx=onnx_path.name, source_onnx_sha256=sha256_file(onnx_path),
        source_checkpoint_sha256=weights.sha256 if weights else None,
        parity={"passed": True, "artifacts": [{"artifact": a.artifact, "passed": a.passed} for a in results]},
        exporter_version=package_version(),
    )
    write_manifest(m, engine)
