"""The artifact contract: what every exported file says about itself, written and read here only.

Two carriers, one module:

* **ONNX metadata** (``metadata_props``): key ``deblur`` holds the JSON of ``OnnxContract`` (the
  spec, static size, source, exporter, graph rewrites); key ``deblur.fp16`` marks a mixed-precision
  graph and holds the converter's report. ``to_props``/``from_props`` are the only way in and out;
  ONNX Runtime's ``custom_metadata_map`` and ``onnx``'s ``metadata_props`` are both such maps.
* **Engine manifest** (``g_fp16.engine.json`` beside the engine): the engine file itself stays
  untouched so stock loaders (trtexec, Triton, DeepStream) read it; an engine only runs on the
  TensorRT version and GPU architecture that built it, so the runtime checks the manifest (SHA-256,
  TensorRT major.minor, compute capability) before deserialising, and a mismatch says how to
  rebuild instead of failing inside TensorRT with "magicTag" or "Version tag does not match".

Everything the runtime derives from a model (pad multiple, minimum size, colour order, range) comes
from the ``ModelSpec`` inside; the contract does not repeat it. Torch-, ONNX- and TensorRT-free.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deblur.runtime.cli import package_version
from deblur.runtime.errors import InputError, ManifestError
from deblur.runtime.fileio import atomic_write_text, sha256_file
from deblur.runtime.spec import ModelSpec, is_int

METADATA_KEY = "deblur"
FP16_KEY = "deblur.fp16"
ONNX_FORMAT = "deblur-edge/onnx"
ONNX_FORMAT_VERSION = 1
INPUT_NAME, OUTPUT_NAME = "input", "output"

# ------------------------------------------------------------------------------------ ONNX metadata


@dataclass(frozen=True)
class OnnxContract:
    """What a runtime needs to feed and read an exported graph, stored in the file itself."""

    spec: ModelSpec
    static_hw: tuple[int, int] | None = None
    source: Mapping[str, Any] = field(default_factory=dict)  # checkpoint name, SHA-256, layout
    exporter: Mapping[str, Any] = field(default_factory=dict)  # versions and opset
    graph_rewrites: tuple[str, ...] = ()  # CPU rewrites applied (runtime.onnx_optimize)
    format_version: int = ONNX_FORMAT_VERSION

    def to_json(self) -> str:
        spec = self.spec
        d = {
            "format": ONNX_FORMAT,
            "format_version": self.format_version,
            "spec": spec.to_dict(),
            "input": {"name": INPUT_NAME, "layout": "NCHW", "color_order": spec.color_order, "dtype": "float32",
                      "range": list(spec.input_range)},
            "output": {"name": OUTPUT_NAME, "layout": "NCHW", "color_order": spec.color_order, "dtype": "float32",
                       "range": list(spec.input_range)},
            "dynamic": self.static_hw is None,
            "static_hw": list(self.static_hw) if self.static_hw else None,
            "source": dict(self.source),
            "exporter": dict(self.exporter),
        }
        if self.graph_rewrites:
            d["graph_rewrites"] = sorted(self.graph_rewrites)
        return json.dumps(d, sort_keys=True)

    def to_props(self) -> dict[str, str]:
        return {METADATA_KEY: self.to_json()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], path: str | Path | None = None) -> OnnxContract:
        """Parse the ``deblur`` entry of an ONNX file's metadata; every problem is one InputError."""
        if METADATA_KEY not in props:
            raise InputError("is an ONNX model without deblur-edge metadata", path, hint="export it with deblur-export --ckpt")
        try:
            d = json.loads(props[METADATA_KEY])
        except (ValueError, RecursionError) as e:  # JSONDecodeError, bad surrogates, nesting deeper than the stack
            raise InputError(f"has unreadable deblur-edge metadata (not JSON: {type(e).__name__})", path,
                             hint="re-export it with deblur-export") from None
        problem = _contract_problem(d)
        if problem:
            raise InputError(f"has unreadable deblur-edge metadata ({problem[:200]})", path, hint="re-export it with deblur-export")
        version = d.get("format_version", ONNX_FORMAT_VERSION)
        if version > ONNX_FORMAT_VERSION:
            raise InputError(f"ONNX contract format {version} is newer than this deblur-edge reads ({ONNX_FORMAT_VERSION})",
                             path, hint="upgrade deblur-edge")
        try:
            spec = ModelSpec.from_dict(d["spec"])
        except InputError as e:
            raise InputError(f"has unreadable deblur-edge metadata ({e.line()})", path, hint="re-export it with deblur-export") from None
        static = d.get("static_hw")
        return cls(spec=spec, static_hw=(static[0], static[1]) if static else None, source=d.get("source") or {},
                   exporter=d.get("exporter") or {}, graph_rewrites=tuple(d.get("graph_rewrites", ())), format_version=version)


def _contract_problem(d: Any) -> str | None:
    """What is wrong with the parsed ``deblur`` entry (types only; the spec checks itself), or None."""
    if not isinstance(d, dict):
        return f"not a JSON object but {type(d).__name__}"
    if "spec" not in d:
        return "no 'spec'"
    if not is_int(d.get("format_version", ONNX_FORMAT_VERSION)):
        return f"format_version must be an integer, got {d.get('format_version')!r}"
    static = d.get("static_hw")
    if static and not (isinstance(static, list) and len(static) == 2 and all(is_int(v) and v >= 1 for v in static)):
        return f"static_hw must be [H, W] of positive integers, got {static!r}"
    for key in ("source", "exporter"):
        if d.get(key) and not isinstance(d[key], dict):
            return f"{key} must be an object, got {d[key]!r}"
    rewrites = d.get("graph_rewrites", ())
    if not (isinstance(rewrites, list | tuple) and all(isinstance(r, str) for r in rewrites)):
        return f"graph_rewrites must be a list of names, got {rewrites!r}"
    return None


def is_fp16(props: Mapping[str, str]) -> bool:
    """Whether the graph is the mixed-precision one (its props carry the FP16 converter's report)."""
    return FP16_KEY in props


def onnx_props(model: Any) -> dict[str, str]:
    """The ``metadata_props`` of an ``onnx.ModelProto`` as a plain map."""
    return {p.key: p.value for p in model.metadata_props}


def set_onnx_props(model: Any, props: Mapping[str, str]) -> None:
    """Replace an ``onnx.ModelProto``'s ``metadata_props`` (sorted, so files are reproducible)."""
    del model.metadata_props[:]
    for k in sorted(props):
        model.metadata_props.add(key=k, value=props[k])


def load_onnx(path: str | Path, external_data: bool = True) -> Any:
    """The one ONNX file loader (needs the ``onnx`` package): every tool and backend that opens a
    user's ONNX goes through it, so random bytes, a truncated file, a checkpoint renamed ``.onnx``
    or external data outside the model's folder are one InputError naming the file."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise InputError("model not found", path, hint="check the path")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise InputError(f"is not a readable ONNX model ({type(e).__name__})", path,
                         hint="re-export it (a truncated copy, or another kind of file renamed .onnx?)") from None
    root = path.resolve().parent
    external = [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    for init in external:
        location = next((e.value for e in init.external_data if e.key == "location"), "")
        if not isinstance(location, str) or "\0" in location:  # fuzz: bytes (not UTF-8) or a NUL: no file name
            raise InputError(f"tensor {init.name!r} names its external data with {location!r}, which is not a file name",
                             path, hint="re-export it (a damaged file?)")
        if Path(location).is_absolute() or not (root / location).resolve().is_relative_to(root):
            raise InputError(f"refused: tensor {init.name!r} reads external data from {location!r}, outside the model's folder",
                             path, hint="re-export with weights embedded (deblur-export writes single-file models)")
    if external and external_data:
        from onnx.external_data_helper import load_external_data_for_model

        try:
            load_external_data_for_model(proto, str(root))
        except Exception as e:  # noqa: BLE001
            first = (str(e).splitlines() or [""])[0][:120]  # fuzz: onnx's TypeError text runs over several lines
            raise InputError(f"cannot read its external data ({type(e).__name__}: {first})", path,
                             hint="keep the data files beside the model") from None
    return proto


def read_onnx_props(path: str | Path) -> dict[str, str]:
    """All ``metadata_props`` of an ONNX file, weights not loaded (needs the ``onnx`` package)."""
    return onnx_props(load_onnx(path, external_data=False))


def read_onnx_contract(path: str | Path) -> OnnxContract:
    return OnnxContract.from_props(read_onnx_props(path), path)


def exporter_versions(**versions: str) -> dict[str, str]:
    """The ``exporter`` entry: this package's version plus the tools'."""
    return {"deblur_edge": package_version(), **versions}


# ---------------------------------------------------------------------------------- engine manifest

MANIFEST_FORMAT_VERSION = 1
IO_DTYPES = ("float32", "float16")  # what the pre/post kernels read and write


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class EngineManifest:
    """Facts about one engine file: what built it, for which GPU, from which sources, and its parity."""

    engine_sha256: str
    engine_file: str
    tensorrt_version: str
    cuda_version: str
    driver_version: str
    gpu_name: str
    compute_capability: str  # "8.7"
    profile: dict[str, list[int]]  # {"min": [N,C,H,W], "opt": [...], "max": [...]}
    precision: str  # "fp16" | "fp32"
    strongly_typed: bool = True
    spec: dict[str, Any] = field(default_factory=dict)
    source_onnx: str | None = None  # file name of the ONNX the engine was built from
    source_onnx_sha256: str | None = None
    source_checkpoint_sha256: str | None = None
    parity: dict[str, Any] = field(default_factory=dict)
    # I/O tensors, input first: name -> dtype. Older manifests lack it: the ONNX contract's names, FP32.
    io: dict[str, str] = field(default_factory=lambda: {INPUT_NAME: "float32", OUTPUT_NAME: "float32"})
    created: str = field(default_factory=_now)
    exporter_version: str = field(default_factory=package_version)
    format_version: int = MANIFEST_FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @property
    def model_spec(self) -> ModelSpec:
        return ModelSpec.from_dict(self.spec)

    @classmethod
    def from_json(cls, text: str, source: str | Path | None = None) -> EngineManifest:
        """Parse and validate; every problem is one ManifestError line naming ``source``."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(f"manifest is not valid JSON ({e.msg}, line {e.lineno})", path=source,
                                hint="rebuild the engine to rewrite it") from None
        except RecursionError:
            raise ManifestError("manifest is not valid JSON (nested too deeply)", path=source,
                                hint="rebuild the engine to rewrite it") from None
        if not isinstance(d, dict):
            raise ManifestError("manifest is not a JSON object", path=source, hint="rebuild the engine to rewrite it")
        fmt = d.get("format_version")
        if not isinstance(fmt, int):
            raise ManifestError("manifest has no integer format_version", path=source,
                                hint="rebuild the engine to rewrite it")
        if fmt > MANIFEST_FORMAT_VERSION:
            raise ManifestError(f"manifest format_version {fmt} is newer than this deblur-edge reads "
                                f"({MANIFEST_FORMAT_VERSION})", path=source, hint="upgrade deblur-edge on this machine")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - d.keys())
        if missing:
            raise ManifestError(f"manifest lacks {', '.join(missing)}", path=source,
                                hint="rebuild the engine to rewrite it")
        m = cls(**{k: v for k, v in d.items() if k in names})  # unknown keys: written by a newer minor
        problem = m._problem()
        if problem:
            raise ManifestError(f"invalid manifest: {problem}", path=source, hint="rebuild the engine to rewrite it")
        return m

    def _problem(self) -> str | None:
        sha = self.engine_sha256
        if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
            return "engine_sha256 is not a SHA-256 hex digest"
        if not isinstance(self.profile, dict) or sorted(self.profile) != ["max", "min", "opt"]:
            return "profile must have exactly min, opt and max"
        for k, v in self.profile.items():
            if not (isinstance(v, list) and len(v) == 4 and all(isinstance(x, int) and x > 0 for x in v)):
                return f"profile {k} must be 4 positive integers [N, C, H, W], got {v!r}"
        lo, opt, hi = self.profile["min"], self.profile["opt"], self.profile["max"]
        if not all(a <= b <= c for a, b, c in zip(lo, opt, hi, strict=True)):
            return f"profile must have min <= opt <= max in every dimension, got {lo}, {opt}, {hi}"
        if not isinstance(self.spec, dict) or "name" not in self.spec:
            return "spec must be the model spec object written by deblur-export"
        try:
            ModelSpec.from_dict(self.spec)
        except InputError as e:
            return e.line()
        if self.precision not in ("fp16", "fp32"):
            return f"precision must be 'fp16' or 'fp32', got {self.precision!r}"
        if not (isinstance(self.io, dict) and len(self.io) == 2 and all(isinstance(k, str) and k for k in self.io)
                and all(v in IO_DTYPES for v in self.io.values())):
            return f"io must name one input and one output tensor, each float32 or float16, got {self.io!r}"
        for name in ("tensorrt_version", "compute_capability", "engine_file"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                return f"{name} must be a non-empty string"
        return None


def manifest_path(engine_path: str | Path) -> Path:
    """``g_fp16.engine`` -> ``g_fp16.engine.json``."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def write_manifest(m: EngineManifest, engine_path: str | Path) -> Path:
    path = manifest_path(engine_path)
    atomic_write_text(path, m.to_json())
    return path


def read_manifest(engine_path: str | Path) -> EngineManifest:
    path = manifest_path(engine_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"no manifest beside the engine (expected {path})",
                            hint=f"rebuild it: {build_command(_default_onnx(engine_path), True)}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"cannot read manifest ({getattr(e, 'strerror', None) or e})", path=path) from None
    return EngineManifest.from_json(text, source=path)


def build_command(onnx_path: str | Path, fp16: bool, profile: Any = None) -> str:
    """The exact command that builds (or rebuilds) an engine on the machine that will run it.

    ``profile``: an object with ``as_dict()`` or a ``{"min", "opt", "max"}`` mapping of NCHW lists;
    a static one becomes ``--static HxW``, others the three shape flags (omitted: the defaults).
    """
    parts = ["deblur-export", "--onnx", shlex.quote(str(onnx_path))]
    if fp16:
        parts.append("--fp16")
    shapes = profile.as_dict() if hasattr(profile, "as_dict") else profile
    if shapes:
        if shapes["min"] == shapes["max"] and shapes["min"][0] == 1:  # --static is N=1: a fixed N>1 keeps its flags
            parts += ["--static", f"{shapes['min'][2]}x{shapes['min'][3]}"]
        else:
            for k in ("min", "opt", "max"):
                parts += [f"--{k}-shape", "x".join(str(v) for v in shapes[k])]
    parts.append("--require-engine")
    return " ".join(parts)


def rebuild_command(m: EngineManifest, engine_path: str | Path) -> str:
    return build_command(m.source_onnx or _default_onnx(engine_path), m.precision == "fp16", m.profile)


def _default_onnx(engine_path: str | Path) -> str:
    return Path(engine_path).with_suffix(".onnx").name  # g_fp16.engine -> g_fp16.onnx


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(str(version).split(".")[:2])


def check_manifest(m: EngineManifest, engine_path: str | Path, *, tensorrt_version: str,
                   compute_capability: str, plan: bytes | None = None) -> None:
    """Refuse an engine that is not the one described, or that this machine cannot run.

    All mismatches are reported together, each with the manifest's value and this machine's. ``plan``: the
    engine bytes already read, so the digest is of exactly what TensorRT will get (one read, no window).
    """
    engine_path = Path(engine_path)
    problems = []
    try:
        actual = hashlib.sha256(plan).hexdigest() if plan is not None else sha256_file(engine_path)
    except FileNotFoundError:
        raise ManifestError("engine file not found", path=engine_path,
                            hint=f"rebuild it: {rebuild_command(m, engine_path)}") from None
    if actual != m.engine_sha256:
        problems.append(f"engine file changed since its manifest was written "
                        f"(SHA-256 manifest {m.engine_sha256[:12]}… vs file {actual[:12]}…)")
    if _major_minor(m.tensorrt_version) != _major_minor(tensorrt_version):
        problems.append(f"built with TensorRT {m.tensorrt_version} (manifest) but this machine has TensorRT "
                        f"{tensorrt_version}; engines only run on the TensorRT version that built them")
    if str(m.compute_capability) != str(compute_capability):
        problems.append(f"built for compute capability {m.compute_capability} ({m.gpu_name}, manifest) but this "
                        f"GPU is {compute_capability}; engines only run on the GPU architecture that built them")
    if problems:
        raise ManifestError("; ".join(problems), path=engine_path,
                            hint=f"rebuild on this machine: {rebuild_command(m, engine_path)}")
