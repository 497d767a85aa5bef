"""The fastest safe CPU backend for an ONNX model, when the user names none.

Candidates are the CPU backends installed here: ONNX Runtime (FP32, the reference), OpenVINO f32
and, where the CPU flags say it computes it natively (AVX512-BF16/AMX-BF16, else AVX512-FP16/AMX-FP16),
OpenVINO at that reduced precision. Each runs the bundled parity photos against the reference and
must pass the export gate's bounds for its precision (``runtime.compare``: FP32 bounds for f32,
the FP16 bounds for bf16/f16, and for everything when the file is an FP16 graph); the passing ones
are timed round-robin on a 640x360 frame with the threads the caller will use, and the fastest
wins, provided it beats the reference by ``MARGIN`` (a near-tie keeps the reference).

Decided once per machine (CPU model, flags and cores, thread count, runtime versions) and model hash,
cached in ``$DEBLUR_CACHE_DIR`` (default ``~/.cache/deblur-edge``)/backend_choice.json, and logged
in one line. A naming ``backend=`` (``--backend``) always wins and skips all of this.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deblur.runtime.compare import compare
from deblur.runtime.errors import DeblurError, InputError
from deblur.runtime.images import list_images, read_rgb
from deblur.runtime.prepost import centre_crop, to_float_image, to_tensor
from deblur.runtime.zoo import PARITY_IMAGES

log = logging.getLogger("deblur")

CACHE_ENV = "DEBLUR_CACHE_DIR"
MARGIN = 1.05  # a candidate must be 5 % faster than the reference to replace it
TIME_HW = (360, 640)
TIME_BUDGET_S = 1.5  # per candidate, after one warm-up run
MIN_ROUNDS = 5
_DECIDED: dict[str, Choice] = {}  # this process's decisions (the video pipeline opens one model per worker)


@dataclass
class Candidate:
    backend: str  # onnxruntime | openvino
    precision: str | None = None  # openvino's hint; None for ONNX Runtime (FP32)
    gate: str = "fp32"  # the bounds it must pass: fp32 | fp16
    p50_ms: float | None = None
    passed: bool | None = None
    failure: str = ""

    @property
    def label(self) -> str:
        return self.backend + (f" {self.precision}" if self.precision else "")


@dataclass
class Choice:
    backend: str
    options: dict[str, Any] = field(default_factory=dict)
    candidates: list[dict] = field(default_factory=list)
    reason: str = ""


def cache_file() -> Path:
    root = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deblur-edge"
    return Path(root) / "backend_choice.json"


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    line = _cpuinfo_line(("flags", "Features"))
    return set(line.partition(":")[2].split())


@functools.lru_cache(maxsize=4)
def _cpuinfo_line(prefixes: tuple[str, ...]) -> str:
    """The first /proc/cpuinfo line starting with one of ``prefixes`` (read once per process), or ''."""
    try:
        return next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith(prefixes)), "")
    except OSError:
        return ""


def candidates() -> list[Candidate]:
    """The CPU backends installed here, the reference first; OpenVINO's reduced precision only where
    the CPU flags say it is native (``measure`` then checks OpenVINO really compiled for it)."""
    out = []
    if importlib.util.find_spec("onnxruntime") is not None:
        out.append(Candidate("onnxruntime"))
    from deblur.runtime.backends import openvino_backend as ovb

    if ovb.available():
        out.append(Candidate("openvino", "f32"))
        flags = cpu_flags()
        if flags & {"avx512_bf16", "amx_bf16"}:
            out.append(Candidate("openvino", "bf16", gate="fp16"))
        elif flags & {"avx512_fp16", "amx_fp16"}:
            out.append(Candidate("openvino", "f16", gate="fp16"))
    return out


def _versions() -> list[str]:
    """Installed runtime versions from package metadata (cheap: nothing imported)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "openvino"):
        try:
            out.append(f"{dist}={version(dist)}")
        except PackageNotFoundError:
            pass
    return out


def machine_key(threads: int) -> str:
    """What the decision depends on besides the model: CPU model and flags, cores, threads, runtime versions."""
    text = "|".join([platform.machine(), platform.processor(), _cpuinfo_line(("model name",)), " ".join(sorted(cpu_flags())),
                     str(os.cpu_count()),
                     str(threads), *_versions()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pick(cands: list[Candidate], margin: float = MARGIN) -> Candidate:
    """The fastest candidate that passed its gate, if it beats the reference (the first) by ``margin``."""
    passed = [c for c in cands if c.passed and c.p50_ms is not None]
    if not passed:
        return cands[0]
    ref = cands[0] if cands[0].passed else passed[0]
    best = min(passed, key=lambda c: c.p50_ms)
    return best if best is ref or best.p50_ms * margin <= ref.p50_ms else ref


def choose(path: Path, threads: int | None) -> Choice:
    """The backend ``Deblurrer`` runs ``path`` (an ONNX file) with on the CPU; cached (see the module docstring)."""
    from deblur.runtime.ort_options import default_threads

    cands = candidates()
    if len(cands) <= 1:
        only = cands[0].backend if cands else "onnxruntime"  # none installed: ONNX Runtime's own error says what to install
        return Choice(only, reason="the only CPU backend installed")
    n = int(threads) if threads else default_threads()
    st = path.stat()
    key = f"{_model_hash(str(path.resolve()), st.st_size, st.st_mtime_ns)}-{machine_key(n)}"
    memo = f"{cache_file()}:{key}"
    if memo in _DECIDED:  # another worker of this process: already decided and logged
        return _DECIDED[memo]
    cache = _read_cache()
    hit = _valid_entry(cache.get(key), cands)
    if hit is not None:
        choice = Choice(hit["backend"], hit.get("options", {}), hit.get("candidates", []),
                        f"cached {hit.get('decided', '')}: {hit.get('reason', '')}")
        log.info("backend: %s%s for %s (%s)", choice.backend, f" {choice.options['precision']}" if choice.options else "",
                 path.name, choice.reason)
        _DECIDED[memo] = choice
        return choice
    t0 = time.perf_counter()
    problem = measure(path, cands, n)
    if problem or not any(c.passed for c in cands):  # the reference's own error (or none) will show; nothing cached
        return Choice(cands[0].backend, reason=problem or "no CPU backend could run it")
    best = pick(cands)
    choice = Choice(best.backend, {"precision": best.precision} if best.precision else {}, [asdict(c) for c in cands])
    ref = cands[0]
    timings = ", ".join(f"{c.label} {c.p50_ms:.1f} ms" if c.passed else f"{c.label} not used ({c.failure})" for c in cands)
    speed = f" ({ref.p50_ms / best.p50_ms:.2f}x {ref.label})" if best is not ref and ref.p50_ms else ""
    choice.reason = f"fastest safe on this CPU{speed}: {timings} at {TIME_HW[1]}x{TIME_HW[0]}, {n} threads"
    log.info("backend: %s for %s, %s; decided in %.1f s, cached in %s", best.label, path.name, choice.reason,
             time.perf_counter() - t0, cache_file())
    cache[key] = {"backend": choice.backend, "options": choice.options, "candidates": choice.candidates,
                  "reason": choice.reason, "model": str(path), "decided": time.strftime("%Y-%m-%dT%H:%M:%S")}
    _write_cache(cache)
    _DECIDED[memo] = choice
    return choice


@functools.lru_cache(maxsize=32)
def _model_hash(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of the model file, once per file version in a process (the video pipeline opens one model per worker)."""
    from deblur.runtime.fileio import sha256_file

    return sha256_file(path)[:16]


def _valid_entry(entry: Any, cands: list[Candidate]) -> dict | None:
    """A cached decision this install can still follow, or None (decide again)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("options", {}), dict):
        return None
    labels = {(c.backend, c.precision) for c in cands}
    return entry if (entry.get("backend"), entry.get("options", {}).get("precision")) in labels else None


def measure(path: Path, cands: list[Candidate], threads: int) -> str | None:
    """Parity of each candidate against the first that runs, on the parity photos; then p50 ms of those that
    pass, timed round-robin. A candidate that fails anywhere is marked, never raised. Returns why no
    decision can be made (the parity photos missing), else None."""
    from contextlib import ExitStack

    from deblur.runtime.backends import load_backend
    from deblur.runtime.timing import round_robin

    photos = [img for p in list_images(PARITY_IMAGES) if (img := read_rgb(p)) is not None]
    if not photos:
        return f"the parity photos are missing from this install ({PARITY_IMAGES}): nothing validated"
    reference: list[np.ndarray] = []
    steps: dict[str, Any] = {}
    with ExitStack() as stack:
        for c in cands:
            try:
                backend = stack.enter_context(load_backend(path, c.backend, "cpu", threads=threads, precision=c.precision))
                compiled = getattr(backend, "compiled_precision", c.precision)
                if compiled != c.precision:
                    raise InputError(f"asked for {c.precision}, OpenVINO compiled {compiled} here")
                outs = [_run_photo(backend, rgb) for rgb in photos]
                gate = "fp16" if backend.precision != "fp32" else c.gate  # an FP16 graph: the FP16 bounds
                if not reference:  # the first that runs is the reference (ONNX Runtime FP32 where installed)
                    reference = outs
                failures = [f for ref, out in zip(reference, outs, strict=True) for f in compare("", ref, out, gate).failures]
                c.passed, c.failure = not failures, "failed parity: " + "; ".join(failures[:2]) if failures else ""
                if c.passed:
                    x = np.zeros((1, 3, *(backend.static_hw or _padded(backend.spec))), np.float32)
                    step = backend.prepare(x)
                    step()  # warm-up (and OpenVINO's compile for this shape)
                    steps[c.label] = step
            except Exception as e:  # noqa: BLE001 - a backend that cannot load or run this model is not a candidate
                c.passed, c.failure = False, e.line() if isinstance(e, DeblurError) else f"{type(e).__name__}: {e}"[:200]
        t0 = time.perf_counter()
        for step in steps.values():
            step()
        rounds = int(min(15, max(MIN_ROUNDS, TIME_BUDGET_S * len(steps) / max(time.perf_counter() - t0, 1e-4))))
        samples = round_robin(steps, rounds, warmup=0)
    for c in cands:
        if c.label in samples:
            c.p50_ms = float(np.median(samples[c.label]))
    return None


def _run_photo(backend: Any, rgb: np.ndarray) -> np.ndarray:
    """One parity photo through the backend in [0, 1], as the export gate runs it (static shapes: centre crop, pad)."""
    static, spec = backend.static_hw, backend.spec
    if static and max(rgb.shape[:2]) > min(static):
        rgb = centre_crop(rgb, min(static), spec.pad_multiple)
    h, w = rgb.shape[:2]
    return to_float_image(backend.infer(to_tensor(rgb, spec.pad_multiple, spec.min_size, size=static)), h, w)


def _padded(spec: Any) -> tuple[int, int]:
    from deblur.runtime.shapes import padded_size

    return padded_size(*TIME_HW, spec.pad_multiple, spec.min_size)


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(cache_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # missing or unreadable: decide again


def _write_cache(cache: dict[str, Any]) -> None:
    """Best effort: a read-only home must not stop a camera (the choice is made again next time)."""
    from deblur.runtime.fileio import atomic_write_text

    try:
        atomic_write_text(cache_file(), json.dumps(cache, indent=1) + "\n")
    except (DeblurError, OSError) as e:
        log.debug("backend choice not cached: %s", e)
