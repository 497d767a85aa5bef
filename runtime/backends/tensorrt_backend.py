"""TensorRT backend (10.x and 11.x, named-tensor API) on the CUDA driver API: no torch anywhere.

Frames: host uint8 -> pinned staging -> the NVRTC pre kernel -> ``execute_async_v3`` -> the post kernel ->
pinned host output, all enqueued on one CUDA stream with reused device and pinned buffers
(``cuda/prepost_gpu.CudaPrePost``); a static-shape engine records that chain once as a CUDA graph and
replays it. Device frames (``__cuda_array_interface__``: CuPy, torch CUDA tensors) go in and come out
without a host copy. CUDA events time each stage (``stage_ms``).

The manifest beside the engine is checked before TensorRT sees it (SHA-256, TensorRT version, compute
capability), then the engine against the manifest (``tensorrt_engine``). Written against NVIDIA's
documented API and checked against the real bindings' signatures; it has not yet run on a GPU.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from deblur.runtime.backends.base import Backend
from deblur.runtime.backends.tensorrt_engine import EngineSession, collecting_logger, open_engine
from deblur.runtime.contract import check_manifest, read_manifest
from deblur.runtime.errors import InputError, ShapeError
from deblur.runtime.shapes import padded_size

_LOG = logging.getLogger("deblur")
STAGES = ("pre", "infer", "post")


def import_tensorrt(path: Path) -> Any:
    try:
        import tensorrt as trt
    except ImportError as e:
        raise InputError(f"TensorRT engines need the tensorrt module ({e})", path,
                                  hint="install TensorRT (JetPack ships it; pip install tensorrt on x86), "
                                       "or run the .onnx with device='cpu'") from None
    except OSError as e:  # the bindings are there but libnvinfer is not
        raise InputError(f"the tensorrt module cannot load TensorRT's libraries ({e})", path,
                                  hint="install the TensorRT libraries matching the bindings, or run the .onnx") from None
    return trt


class TensorRTBackend(Backend):
    name = "tensorrt"
    frames_on_gpu = True  # Deblurrer hands uint8 frames to run_frames: pre/post run on the GPU

    def __init__(self, path: Path, device: str = "cuda:0", cuda_graph: bool = True):
        from deblur.runtime.cuda.prepost_gpu import CudaPrePost

        self.path, self.device = Path(path), device if device.startswith("cuda") else "cuda:0"
        trt = import_tensorrt(self.path)
        manifest = read_manifest(self.path)  # before any CUDA call: a missing manifest is the clearer error
        self.cuda = CudaPrePost(int(self.device.partition(":")[2] or 0))
        self._driver, self._ck = _driver_api()
        plan = self.path.read_bytes()  # one read: the digest and TensorRT see the same bytes
        major, minor = self.cuda.compute_capability
        check_manifest(manifest, self.path, tensorrt_version=trt.__version__, compute_capability=f"{major}.{minor}",
                       plan=plan)
        logger = collecting_logger(trt, lambda sev, msg: _LOG.debug("TensorRT [%s] %s", sev, msg))
        self.session: EngineSession = open_engine(trt, self.path, manifest, plan, logger)
        s = self.session
        self.spec = manifest.model_spec
        self.min_hw, self.max_hw = s.min_shape[2:], s.max_shape[2:]
        self.static_hw = s.static_hw
        self.max_batch = s.max_batch
        self.precision = manifest.precision
        self.cuda_graph = cuda_graph and s.static_hw is not None and s.in_dtype == s.out_dtype
        self._graph_key: tuple | None = None
        self._events = [self._ck(self._driver.cuEventCreate(0), "cuEventCreate") for _ in range(len(STAGES) + 1)]
        self._timed = False
        self.note = f"{self.path.name}, TensorRT {trt.__version__}, {manifest.precision}, CUDA pre/post, one stream"

    # ------------------------------------------------------------------ shapes and buffers
    def _bytes(self, dtype: str) -> int:
        return 2 if dtype == "float16" else 4

    def _engine_buffers(self, n: int, h: int, w: int) -> tuple[int, int, tuple[int, ...]]:
        s = self.session
        out_shape = s.set_shape(n, h, w)
        ein = self.cuda._device("engine_in", n * 3 * h * w * self._bytes(s.in_dtype))
        eout = self.cuda._device("engine_out", int(np.prod(out_shape)) * self._bytes(s.out_dtype))
        s.bind(ein, eout)
        return ein, eout, out_shape

    def _record(self, i: int) -> None:
        self._ck(self._driver.cuEventRecord(self._events[i], self.cuda._stream), "cuEventRecord")

    def stage_ms(self) -> dict[str, float]:
        """GPU milliseconds per stage of the last call, from CUDA events (waits for the GPU)."""
        if not self._timed:
            return {}
        self._ck(self._driver.cuEventSynchronize(self._events[-1]), "cuEventSynchronize")
        out = {}
        for i, stage in enumerate(STAGES):
            ms = self._ck(self._driver.cuEventElapsedTime(self._events[i], self._events[i + 1]), "cuEventElapsedTime")
            out[f"{stage}_cuda_ms"] = float(ms)
        return out

    def last_cuda_ms(self, wait: bool = True) -> float | None:
        stages = self.stage_ms() if self._timed and wait else {}
        return stages.get("infer_cuda_ms")

    # ------------------------------------------------------------------ tensors (tiling, parity gate, bench)
    def infer(self, x: np.ndarray) -> np.ndarray:
        """N x 3 x H x W float32 host tensor through the engine (tiles and the parity gate use this)."""
        n, _, h, w = x.shape
        s = self.session
        ein, eout, out_shape = self._engine_buffers(n, h, w)
        staged = self.cuda.upload(np.ascontiguousarray(x, dtype=np.float16 if s.in_dtype == "float16" else np.float32),
                                  name="tensor_host")
        self._ck(self._driver.cuMemcpyDtoDAsync(ein, staged, x.size * self._bytes(s.in_dtype), self.cuda._stream),
                 "cuMemcpyDtoDAsync")
        self._record(0)
        self._record(1)
        s.enqueue(self.cuda.stream)
        self._record(2)
        self._record(3)
        self._timed = True
        y = self.cuda.download(eout, out_shape, np.float16 if s.out_dtype == "float16" else np.float32)
        return y.astype(np.float32, copy=False)

    # ------------------------------------------------------------------ frames: the GPU pre/post path
    def padded_hw(self, h: int, w: int) -> tuple[int, int]:
        return self.static_hw or padded_size(h, w, self.multiple, self.min_size)

    def run_frames(self, frames: list[np.ndarray], bgr: bool) -> list[np.ndarray]:
        """Equal-size uint8 HxWx3 host frames -> deblurred frames; pre, engine and post on one stream."""
        n, (h, w) = len(frames), frames[0].shape[:2]
        ph, pw = self.padded_hw(h, w)
        s = self.session
        if self.cuda_graph and n == 1:
            return [self._replay(frames[0], bgr, ph, pw)]
        ein, eout, _ = self._engine_buffers(n, ph, pw)
        in_plane, out_plane = 3 * ph * pw * self._bytes(s.in_dtype), 3 * ph * pw * self._bytes(s.out_dtype)
        self._record(0)
        for i, frame in enumerate(frames):
            self.cuda.preprocess(frame, bgr=bgr, padded_hw=(ph, pw), fp16=s.in_dtype == "float16", out=ein + i * in_plane)
        self._record(1)
        s.enqueue(self.cuda.stream)
        self._record(2)
        dst = self.cuda._device("frames_out", n * h * w * 3)
        for i in range(n):
            self.cuda.postprocess(eout + i * out_plane, h, w, padded_hw=(ph, pw), fp16=s.out_dtype == "float16", bgr=bgr,
                                  out=dst + i * h * w * 3, out_pitch=3 * w)
        self._record(3)
        self._timed = True
        out = self.cuda.download(dst, (n, h, w, 3), np.uint8)
        return list(out)

    def _replay(self, frame: np.ndarray, bgr: bool, ph: int, pw: int) -> np.ndarray:
        """Static engine, one host frame: the whole chain as one CUDA graph, recorded on first use."""
        h, w = frame.shape[:2]
        key = (h, w, bgr)
        if self._graph_key != key:
            ein, eout, _ = self._engine_buffers(1, ph, pw)
            self.cuda.capture_graph(self.session.enqueue, h=h, w=w, padded_hw=(ph, pw), engine_in=ein, engine_out=eout,
                                    fp16=self.session.in_dtype == "float16", bgr=bgr, host_io=True)
            self._graph_key = key
            _LOG.info("%s: CUDA graph recorded for %dx%d frames", self.path.name, w, h)
        self._timed = False  # one graph launch: no per-stage events inside it
        return self.cuda.replay(frame)

    def run_device(self, frame: Any, bgr: bool) -> Any:
        """A uint8 HxWx3 device frame -> a device frame of the same kind, no host copy."""
        from deblur.runtime.cuda.prepost_gpu import device_array

        a = device_array(frame)
        if a.shape is None or len(a.shape) != 3:
            raise ShapeError("device frames must be uint8 HxWx3 arrays")
        h, w = a.shape[:2]
        ph, pw = self.padded_hw(h, w)
        s = self.session
        self._wait_for_producer(frame)
        ein, eout, _ = self._engine_buffers(1, ph, pw)
        self._record(0)
        self.cuda.preprocess(frame, bgr=bgr, padded_hw=(ph, pw), fp16=s.in_dtype == "float16", out=ein)
        self._record(1)
        s.enqueue(self.cuda.stream)
        self._record(2)
        out = _empty_like(frame)
        self.cuda.postprocess(eout, h, w, padded_hw=(ph, pw), fp16=s.out_dtype == "float16", bgr=bgr, out=out)
        self._record(3)
        self._timed = True
        self._hand_over(frame)
        return out

    def _wait_for_producer(self, frame: Any) -> None:
        """Our stream waits for the stream the frame was written on (torch's current stream, or the
        ``stream`` of ``__cuda_array_interface__`` v3), without blocking the host."""
        handle = _producer_stream(frame)
        if handle is not None:
            ev = self._events[-1]
            self._ck(self._driver.cuEventRecord(ev, self._driver.CUstream(handle)), "cuEventRecord")
            self._ck(self._driver.cuStreamWaitEvent(self.cuda._stream, ev, 0), "cuStreamWaitEvent")

    def _hand_over(self, frame: Any) -> None:
        """The consumer's stream waits for our post kernel; unknown consumers get a synchronised result."""
        handle = _producer_stream(frame)
        if handle is None:
            self.cuda.synchronize()
            return
        self._ck(self._driver.cuStreamWaitEvent(self._driver.CUstream(handle), self._events[3], 0), "cuStreamWaitEvent")

    def close(self) -> None:
        cuda = getattr(self, "cuda", None)
        if cuda is None:
            return
        cuda.synchronize()
        self.session = None  # TensorRT objects before the CUDA context they live in
        for ev in getattr(self, "_events", []):
            self._driver.cuEventDestroy(ev)
        self._events = []
        cuda.close()
        self.cuda = None


def _driver_api() -> tuple[Any, Any]:
    from deblur.runtime.cuda.prepost_gpu import _ck, _driver

    return _driver(), _ck


def _producer_stream(frame: Any) -> int | None:
    """The CUDA stream handle a device frame belongs to, where its library says (None: unknown)."""
    torch = sys.modules.get("torch")  # a torch tensor means torch is already imported; never import it here
    if torch is not None and isinstance(frame, torch.Tensor):
        return int(torch.cuda.current_stream(frame.device).cuda_stream)
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(frame, cupy.ndarray):
        return int(cupy.cuda.get_current_stream().ptr)
    stream = (getattr(frame, "__cuda_array_interface__", None) or {}).get("stream")
    return None if stream is None else int(stream)


def _empty_like(frame: Any) -> Any:
    """A new uint8 HxWx3 device array of the frame's own library (torch, CuPy); others get ours."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(frame, torch.Tensor):
        return torch.empty(tuple(frame.shape), dtype=torch.uint8, device=frame.device)
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(frame, cupy.ndarray):
        return cupy.empty(frame.shape, dtype=cupy.uint8)
    raise InputError(f"device frames of type {type(frame).__name__} are not supported for output",
                     hint="pass a torch CUDA tensor or a CuPy array")


def load(path: Path, device: str, **options: Any) -> TensorRTBackend:
    return TensorRTBackend(path, device, cuda_graph=options.get("cuda_graph", True))


__all__ = ["TensorRTBackend", "import_tensorrt", "load"]
