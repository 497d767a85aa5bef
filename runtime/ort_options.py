"""ONNX Runtime session settings for the generator, chosen by measurement (``benchmarks/ort_tuning.py``).

``ORT_ENABLE_ALL`` (keeps the NCHWc layout and Conv+activation fusion), intra-op threads = the CPUs
this process may use (capped at 8), no spinning (idle workers do not compete with the capture
thread, the video writer or a training job on a small machine), denormals flushed to zero (guards
against x86's slow path; far below the parity tolerance), ORT's memory arena on, sequential
execution (the graph is a chain). The measurements behind each choice are in benchmarks/README.md.
"""
from __future__ import annotations

import os
from typing import Any

from deblur.runtime.errors import InputError

MAX_THREADS = 8  # beyond this the small generators stop scaling and share the machine badly


def default_threads() -> int:
    """CPUs this process may use (respects taskset/cgroup affinity), capped at ``MAX_THREADS``."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_THREADS))


def threads_per_worker(workers: int, threads: int | None = None) -> int | None:
    """CPU threads for each of ``workers`` models sharing this process's CPUs (None: one model, its default)."""
    if workers <= 1:
        return threads
    return max(1, (threads or default_threads()) // workers)


def session_options(threads: int | None = None, *, profile_prefix: str | None = None) -> Any:
    """``ort.SessionOptions`` for the generator on the CPU provider (see the module docstring).

    ``threads``: intra-op threads (default: ``default_threads()``). ``profile_prefix``: turn on
    ORT's per-node profiler, writing ``<prefix>_<date>.json`` (for benchmarks; off in production).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = int(threads) if threads else default_threads()
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.set_denormal_as_zero", "1")
    so.log_severity_level = 3
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return so


def session(path: Any, device: str = "cpu", threads: int | None = None) -> Any:
    """An ``InferenceSession`` with ``session_options(threads)``; the CUDA provider for ``cuda[:N]``.

    The one place sessions are made (runtime backend, export parity, bench). An unloadable file
    is an ``InputError``; asking for CUDA where ONNX Runtime has no CUDA provider is one too.
    """
    import onnxruntime as ort

    providers: list[Any] = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise InputError("ONNX Runtime here has no CUDA provider", path, hint="pip install onnxruntime-gpu, or use device='cpu'")
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(device.partition(":")[2] or 0)}))
    src = path if isinstance(path, bytes) else str(path)
    try:
        return ort.InferenceSession(src, session_options(threads), providers=providers)
    except Exception as e:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph types
        raise InputError(f"ONNX Runtime cannot load the model ({str(e).splitlines()[0][:200]})", None if isinstance(path, bytes) else path,
                         hint="re-export it with deblur-export") from None
