"""The JSON manifest that sits beside every TensorRT engine (``g_fp16.engine.json``).

The engine file itself stays untouched so stock loaders (trtexec, Triton, DeepStream) read it; what
we know about it lives here. An engine only runs on the TensorRT version and GPU architecture that
built it, so the runtime checks this manifest (SHA-256, TensorRT major.minor, compute capability)
before deserializing, and a mismatch says how to rebuild instead of failing inside TensorRT with
"magicTag" or "Version tag does not match".

Torch-free and TensorRT-free: robots import it.
"""
from __future__ import annotations

import dataclasses
import json
import shlex
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deblur.train.errors import DeblurError
from deblur.train.fileio import atomic_write_text, sha256_file

MANIFEST_FORMAT_VERSION = 1


class ManifestError(DeblurError):
    """An engine manifest is missing, unreadable, or does not match the engine or this machine."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _exporter_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deblur-edge")
    except PackageNotFoundError:
        return "unknown"


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
    created: str = field(default_factory=_now)
    exporter_version: str = field(default_factory=_exporter_version)
    format_version: int = MANIFEST_FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str | Path | None = None) -> EngineManifest:
        """Parse and validate; every problem is one ManifestError line naming ``source``."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(f"manifest is not valid JSON ({e.msg}, line {e.lineno})", path=source,
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
        if self.precision not in ("fp16", "fp32"):
            return f"precision must be 'fp16' or 'fp32', got {self.precision!r}"
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


def build_command(onnx_path: str | Path, fp16: bool) -> str:
    """The exact command that builds (or rebuilds) an engine on the machine that will run it."""
    parts = ["deblur-export", "--onnx", shlex.quote(str(onnx_path))]
    if fp16:
        parts.append("--fp16")
    parts.append("--require-engine")
    return " ".join(parts)


def rebuild_command(m: EngineManifest, engine_path: str | Path) -> str:
    return build_command(m.source_onnx or _default_onnx(engine_path), m.precision == "fp16")


def _default_onnx(engine_path: str | Path) -> str:
    return Path(engine_path).with_suffix(".onnx").name  # g_fp16.engine -> g_fp16.onnx


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(str(version).split(".")[:2])


def check_manifest(m: EngineManifest, engine_path: str | Path, *, tensorrt_version: str,
                   compute_capability: str) -> None:
    """Refuse an engine that is not the one described, or that this machine cannot run.

    All mismatches are reported together, each with the manifest's value and this machine's.
    """
    engine_path = Path(engine_path)
    problems = []
    try:
        actual = sha256_file(engine_path)
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
