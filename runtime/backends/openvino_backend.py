"""OpenVINO backend (CPU): our ONNX read as it is, or OpenVINO IR (``.xml`` + ``.bin``) from ``deblur-export --openvino``.

The spec and I/O contract come from the artifact's own metadata: OpenVINO keeps an ONNX file's
``metadata_props`` under the model's ``rt_info["framework"]``, and our IR carries the same
properties under ``rt_info["deblur_edge"]``. Precision is a compile-time hint on the same file:
``f32``, ``bf16``, ``f16`` or ``auto`` (the CPU's native low precision where it has one, else
f32); the precision OpenVINO really compiled for is read back and reported (``precision``),
since OpenVINO silently runs f32 where the CPU lacks the hinted type.
"""
from __future__ import annotations

import functools
import importlib.util
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deblur.runtime.backends.base import Backend
from deblur.runtime.contract import METADATA_KEY, OnnxContract, is_fp16
from deblur.runtime.errors import InputError
from deblur.runtime.ort_options import default_threads

PRECISIONS = ("auto", "f32", "bf16", "f16")  # OpenVINO's hint words; fp32/fp16 accepted too
ALIASES = {"fp32": "f32", "fp16": "f16"}
REPORTED = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}  # the words every backend reports
IR_NAMESPACE = "deblur_edge"  # rt_info section our IR files carry the contract in
HINT = "pip install 'deblur-edge[openvino]'"
STATIC_COMPILES = 4  # input shapes kept compiled (a camera size, its tiles)


def available() -> bool:
    return importlib.util.find_spec("openvino") is not None


@functools.lru_cache(maxsize=1)
def core() -> Any:
    """One ``ov.Core`` per process (it loads the CPU plugin once); a broken install is one InputError."""
    try:
        import openvino as ov

        return ov.Core()
    except Exception as e:  # noqa: BLE001 - ImportError of its libraries, RuntimeError of the plugin
        raise InputError(f"OpenVINO is installed but cannot start ({str(e).splitlines()[0][:160]})",
                         hint=f"reinstall it ({HINT}), or pass backend='onnxruntime'") from None


@functools.lru_cache(maxsize=1)
def cpu_capabilities() -> frozenset[str]:
    """OpenVINO's view of this CPU: ``FP32``, ``BF16`` (AVX512-BF16 or AMX), ``FP16`` (AVX512-FP16/AMX-FP16), ``INT8``..."""
    return frozenset(core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def native_low_precision() -> str | None:
    """The reduced precision this CPU computes natively (bf16 first: f32's range), or None (also where
    OpenVINO cannot start)."""
    try:
        caps = cpu_capabilities()
    except Exception:  # noqa: BLE001 - a broken install (missing libtbb, unsupported CPU)
        return None
    return "bf16" if "BF16" in caps else "f16" if "FP16" in caps else None


def resolve_precision(precision: str) -> str:
    """``auto`` -> the native low precision, else f32; anything else is checked and kept."""
    precision = ALIASES.get(precision, precision)
    if precision not in PRECISIONS:
        raise InputError(f"unknown OpenVINO precision {precision!r}", hint=f"choose one of {', '.join(PRECISIONS)}")
    return (native_low_precision() or "f32") if precision == "auto" else precision


def _props(model: Any) -> dict[str, str]:
    """Our contract properties: the IR's own section first, else the ONNX file's metadata_props."""
    for section in (IR_NAMESPACE, "framework"):
        if model.has_rt_info([section]):
            keys = model.get_rt_info([section]).astype(dict)
            if METADATA_KEY in keys:
                return {k: model.get_rt_info([section, k]).astype(str) for k in keys}
    return {}


def read_model(path: Path) -> tuple[Any, dict[str, str]]:
    """The model and its contract properties; an unreadable file is an InputError naming it."""
    suffix = path.suffix.lower()
    if suffix == ".onnx" and importlib.util.find_spec("onnx") is not None:
        from deblur.runtime.contract import load_onnx

        load_onnx(path, external_data=False)  # the one loader's checks: OpenVINO would follow external data anywhere
    if suffix == ".xml" and not path.with_suffix(".bin").is_file():
        raise InputError("OpenVINO IR weights missing", path.with_suffix(".bin"), hint="keep the .bin beside the .xml")
    try:
        model = core().read_model(str(path))
    except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError with a long C++ trace
        raise InputError(f"OpenVINO cannot read the model ({str(e).splitlines()[0][:200]})", path,
                         hint="re-export it with deblur-export (--openvino for IR)") from None
    return model, _props(model)


def latency_config(threads: int, precision: str) -> dict[str, Any]:
    """The compile settings (measured: benchmarks/openvino_tuning.py): latency mode, one stream, no core
    pinning (the video pipeline's workers share the cores), the precision hint."""
    return {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": threads,
            "ENABLE_CPU_PINNING": False, "INFERENCE_PRECISION_HINT": precision}


class OpenVinoBackend(Backend):
    """Our generator on OpenVINO's CPU plugin: latency mode, one stream, ``threads`` threads, no pinning
    (the video pipeline runs one model per worker on the same cores)."""

    name = "openvino"

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None, precision: str = "auto"):
        self.path, self.device = Path(path), device
        if not self.path.is_file():
            raise InputError("model not found", path, hint="check the path, or export one with deblur-export")
        if device != "cpu":
            raise InputError(f"the openvino backend runs on the CPU, not {device!r}", path,
                             hint="use device='cpu', or the tensorrt/onnxruntime backend on a GPU")
        if not available():
            raise InputError("OpenVINO is not installed", path, hint=HINT)
        model, props = read_model(self.path)
        self.contract = OnnxContract.from_props(props, self.path)
        self.fp16 = is_fp16(props)
        self.spec, self.static_hw = self.contract.spec, self.contract.static_hw
        self.asked = resolve_precision(precision)
        self.threads = int(threads) if threads else default_threads()
        self.config = latency_config(self.threads, self.asked)
        self.model = model
        dynamic = self._compile(model)
        self.compiled_precision = used = _type_name(dynamic.get_property("INFERENCE_PRECISION_HINT"))
        # what it computes in: the compiled type, but an FP16 graph (our _fp16.onnx) is FP16 whatever the hint
        self.precision = "fp16" if self.fp16 and used == "f32" else REPORTED.get(used, used)
        self.request = dynamic.create_infer_request()
        self._static: OrderedDict[tuple[int, ...], Any] = OrderedDict()  # input shape -> request of a static compile
        import openvino as ov

        self.version = ov.get_version().split("-")[0]
        asked = "" if used == self.asked else f" (asked {self.asked}: not native here)"
        self.note = f"{self.path.name}, openvino {self.version} cpu {used}{asked}, {self.threads} threads"
        m = max(self.spec.pad_multiple, self.spec.min_size)
        _output(self.request, np.zeros((1, 3, *(self.static_hw or (m, m))), np.float32))  # see _output

    def _compile(self, model: Any) -> Any:
        try:
            return core().compile_model(model, "CPU", self.config)
        except Exception as e:  # noqa: BLE001
            raise InputError(f"OpenVINO cannot compile the model ({str(e).splitlines()[0][:200]})", self.path) from None

    def _request_for(self, shape: tuple[int, ...]) -> Any:
        """A request compiled for exactly this shape (1.1-1.2x faster than the dynamic-shape compile here,
        and the same bits for a frame whatever ran before it); the last ``STATIC_COMPILES`` shapes are kept
        (a camera, its tiles). A new shape costs one compile (about 0.3 s for the bundled model)."""
        if self.static_hw is not None:
            return self.request
        if shape in self._static:
            self._static.move_to_end(shape)
            return self._static[shape]
        model = self.model.clone()
        model.reshape(list(shape))
        self._static[shape] = self._compile(model).create_infer_request()
        while len(self._static) > STATIC_COMPILES:
            self._static.popitem(last=False)
        return self._static[shape]

    def infer(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        return _output(self._request_for(x.shape), x)

    def prepare(self, x: np.ndarray) -> Callable[[], Any]:
        import openvino as ov

        x = np.ascontiguousarray(x, dtype=np.float32)
        request = self._request_for(x.shape)
        request.set_input_tensor(0, ov.Tensor(x))
        return request.infer

    def close(self) -> None:
        self.request = self.model = None
        self._static.clear()


_DATA_LOCK = threading.Lock()


def _output(request: Any, x: np.ndarray) -> np.ndarray:
    """Run ``request`` on ``x`` and copy its output out (the request reuses its buffer).

    Reading ``Tensor.data`` for the first time in a process initialises a static inside OpenVINO's
    Python binding that releases the GIL half way; two threads doing that at once (the video
    pipeline's two workers) deadlock (seen with OpenVINO 2026.4: one thread in __cxa_guard_acquire
    holding the GIL, the other waiting for it). Every backend reads it once in its constructor
    (in the thread that builds it), and reads are serialised, which costs a copy's time."""
    request.infer({0: x})
    with _DATA_LOCK:
        return request.get_output_tensor(0).data.copy()


def _type_name(t: Any) -> str:
    """OpenVINO element type -> our precision word (f32, bf16, f16)."""
    return {"float32": "f32", "bf16": "bf16", "float16": "f16", "f32": "f32", "f16": "f16"}.get(str(t.get_type_name()), str(t))


def save_ir(onnx_path: Path, xml_path: Path, extra: dict[str, str] | None = None) -> None:
    """Convert our ONNX to IR (FP32 weights: precision is chosen at compile time), the contract in its rt_info."""
    import openvino as ov

    model, props = read_model(onnx_path)
    for key, value in {**props, **(extra or {})}.items():
        model.set_rt_info(value, [IR_NAMESPACE, key])
    ov.save_model(model, str(xml_path), compress_to_fp16=False)


def load(path: Path, device: str, **options) -> OpenVinoBackend:
    return OpenVinoBackend(path, device, threads=options.get("threads"), precision=options.get("precision") or "auto")

