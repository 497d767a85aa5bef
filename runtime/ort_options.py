"""ONNX Runtime CPU session settings for the generator, chosen by measurement (benchmarks/ort_tuning.py).

Measured on the 2-core AVX2 CPU (AMD EPYC, ORT 1.32, torch 2.13), batch 1, FP32, median ms, torch
and ORT in the same run (interleaved blocks), with a training job and compiles running beside it
(load 3.6-4.8 on 2 cores; the benchmark's process group ran at autogroup nice -10). "plain" is the
old plain ``ort.SessionOptions`` (full optimisation) on a plain export; "tuned" is these options on a graph from
``runtime.onnx_optimize.optimize``:

===============  ==========  =======  =======  =======  ========================================
spec, size        torch eager  plain    tuned    tuned/   note
                                                 torch
===============  ==========  =======  =======  =======  ========================================
pico 360x640          106        61       52    2.03x   1.52-2.53x over 5 runs
pico 720x1280         421       307      229    1.84x
nano 360x640          203       184      151    1.35x   1.23-1.64x over 5 runs (torch 179-244)
nano 720x1280        1025       663      559    1.83x
lite 360x640          775       601      527    1.47x   1.36-1.47x over 3 runs
lite 720x1280        3601      2366     2187    1.65x
deblurgan 360x640    3007      2533     2493    1.21x   1.21-1.22x over 2 runs
deblurgan 720x1280  15688     10145     9837    1.59x
===============  ==========  =======  =======  =======  ========================================

Where ORT's time goes (profiler, 360x640, tuned): Conv 54-81 %, InstanceNorm 8-11 %, NCHWc
reorders 7-10 %, Relu 3-5 %, reflect Pad 3-4 %, the remaining ConvTranspose 5 %. At 360x640 the
ResBlock convolutions already run near the CPU's FMA peak in both frameworks (deblurgan's 256-channel
3x3 convs: ~80 GMAC/s on 2 cores), so the gap to torch is its non-conv overhead only; that is why
the large specs reach 1.5x at 720x1280 (where torch's eager kernels fall out of cache) but not at
360x640. Closing that needs fewer multiply-adds (a Winograd F(2,3) graph rewrite measured 1.4x on one
256-channel conv, none at 64-128 channels), not settings.

Settings, one change at a time against the plain baseline (pico / nano 360x640, same run):

* ``ORT_ENABLE_ALL`` (61 / 176 ms): keeps the NCHWc layout (AVX2 8-channel blocks) and Conv+activation
  fusion; EXTENDED (no NCHWc) 60 / 180, BASIC 64 / 189. Static-shape export 61 / 178 and opset 18
  63 / 183: no gain, so the dynamic opset-17 export stays.
* ``intra_op_num_threads`` = CPUs this process may run on (``os.sched_getaffinity``), capped at 8:
  1 thread was 88 / 242 ms, 1.4x slower.
* ``session.intra_op.allow_spinning`` = "0": 60 / 172 ms, no cost at batch 1 (each Run is tens of
  ms), and idle workers then do not spin against the capture thread, the video writer or a
  training job on a 2-core machine.
* ``session.set_denormal_as_zero`` = "1": 59 / 171 ms; no denormals arise with these weights, the
  flush is far below the parity tolerance, and it guards against x86's 10-100x slow path should a
  checkpoint produce them.
* memory arena: ORT's default (on); off was 71 / 227 ms.
* inter-op threads 1, sequential execution: the graph is a chain.
"""
from __future__ import annotations

import os
from typing import Any

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

    from deblur.train.errors import InputError

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


def contract(sess: Any, path: Any) -> dict[str, Any]:
    """The ``deblur`` metadata of a loaded session (the I/O contract written by deblur-export)."""
    import json

    from deblur.train.errors import InputError

    meta = sess.get_modelmeta().custom_metadata_map
    if "deblur" not in meta:
        raise InputError("is an ONNX model without deblur-edge metadata", path, hint="export it with deblur-export --ckpt")
    return json.loads(meta["deblur"])
