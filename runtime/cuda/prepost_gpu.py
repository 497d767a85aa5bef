"""GPU pre/post-processing around an engine, on one CUDA stream, through the driver API (cuda-python).

Why the driver API and not torch: a robot that runs TensorRT engines should not need torch. The
kernels come from ``prepost.cu`` compiled by NVRTC (``nvrtc.py``) for this GPU; frames come from
host numpy arrays (staged through reused pinned buffers) or from device memory without a copy (an
int address, a torch CUDA tensor, or anything with ``__cuda_array_interface__`` such as CuPy).

Everything is enqueued on ``stream``; pass the engine's stream in (or hand ours to the engine) so
pre -> engine -> post need no synchronisation between them. For static-shape engines,
``capture_graph`` records HtoD -> pre -> engine -> post -> DtoH once and ``replay`` launches it.

Not run on a GPU yet (none on our machines); tests/runtime/test_nvrtc.py checks it bit-exactly
against ``deblur.runtime.prepost`` wherever a GPU is present.
"""
from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from deblur.runtime.errors import CudaDriverError, InputError, ShapeError

BLOCK = (32, 8, 1)  # the same block shape as the C launchers in prepost.cu


def _driver():
    try:
        from cuda.bindings import driver
    except ImportError as e:
        raise CudaDriverError(f"cuda-python is not installed ({e})",
                              hint="pip install 'cuda-python>=12.6' 'cuda-toolkit[nvrtc,cudart]'") from None
    return driver


def _ck(ret: tuple, what: str) -> Any:
    """Unpack a cuda-python ``(CUresult, *values)`` tuple; raise CudaDriverError on failure."""
    driver = _driver()
    err, values = ret[0], ret[1:]
    if err != driver.CUresult.CUDA_SUCCESS:
        _, name = driver.cuGetErrorName(err)
        raise CudaDriverError(f"{what} failed ({name.decode() if name else int(err)})")
    return values[0] if len(values) == 1 else (values or None)


@dataclass(frozen=True)
class DeviceArray:
    """Address and layout of device memory we were handed (no copy, no ownership)."""

    ptr: int
    shape: tuple[int, ...] | None = None
    strides: tuple[int, ...] | None = None  # bytes; None = C-contiguous
    typestr: str | None = None  # numpy typestr: "|u1", "<f2", "<f4"


def device_array(obj: Any) -> DeviceArray:
    """Read a device address without copying: int, torch CUDA tensor, or ``__cuda_array_interface__``."""
    if isinstance(obj, (int, np.integer)):
        return DeviceArray(int(obj))
    if hasattr(obj, "data_ptr") and getattr(obj, "is_cuda", False):  # torch, without importing it
        typestr = {"torch.uint8": "|u1", "torch.float16": "<f2", "torch.float32": "<f4"}.get(str(obj.dtype), "?")
        strides = tuple(s * obj.element_size() for s in obj.stride())
        return DeviceArray(int(obj.data_ptr()), tuple(obj.shape), strides, typestr)
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is not None:
        strides = tuple(cai["strides"]) if cai.get("strides") else None
        return DeviceArray(int(cai["data"][0]), tuple(cai["shape"]), strides, cai["typestr"])
    raise InputError(f"expected a device pointer, a torch CUDA tensor or a __cuda_array_interface__ object, "
                    f"got {type(obj).__name__}")


def _frame_layout(a: DeviceArray, h: int | None, w: int | None, pitch: int | None) -> tuple[int, int, int]:
    """(h, w, pitch) of a uint8 HxWx3 frame; explicit values win over the object's own layout."""
    if a.shape is not None:
        if a.typestr != "|u1" or len(a.shape) != 3 or a.shape[2] != 3:
            raise ShapeError(f"frame must be uint8 HxWx3, got shape {a.shape} type {a.typestr}")
        strides = a.strides or (a.shape[1] * 3, 3, 1)
        if strides[1:] != (3, 1):
            raise ShapeError(f"frame pixels must be packed (strides [..., 3, 1]), got strides {strides}")
        h, w, pitch = h or a.shape[0], w or a.shape[1], pitch or strides[0]
    if h is None or w is None:
        raise ShapeError("h and w are required for a raw device pointer")
    pitch = pitch or 3 * w
    if h < 1 or w < 1 or pitch < 3 * w:
        raise ShapeError(f"bad frame geometry h={h} w={w} pitch={pitch}")
    return h, w, pitch


def _check_tensor(a: DeviceArray, ph: int, pw: int, fp16: bool, what: str) -> None:
    """Catch the common FP16/FP32 or size mix-up before a kernel reads or writes out of bounds."""
    if a.shape is None:
        return
    want = "<f2" if fp16 else "<f4"
    if a.typestr != want or math.prod(a.shape) < 3 * ph * pw:
        raise ShapeError(f"{what} must hold at least 1x3x{ph}x{pw} {'float16' if fp16 else 'float32'}, "
                         f"got shape {a.shape} type {a.typestr}")


@dataclass
class _Graph:
    graph: Any
    exec: Any
    h: int
    w: int
    host_io: bool


class CudaPrePost:
    """The four kernels of ``prepost.cu`` loaded on one GPU, one stream, and reusable staging buffers.

    Buffers grow and are reused across frames; a tensor or frame returned as a device address stays
    valid until the next call of the same method (stream order protects it in between).
    Call ``close()`` (or use ``with``) to free everything.
    """

    def __init__(self, device: int = 0, stream: int | None = None, image: bytes | None = None):
        """``stream``: an existing CUstream/cudaStream_t handle to share (e.g. the engine's); ``image``: a
        prebuilt CUBIN/PTX to load instead of compiling with NVRTC."""
        driver = _driver()
        try:
            _ck(driver.cuInit(0), "cuInit")
        except (OSError, RuntimeError) as e:  # libcuda.so missing: cuda.pathfinder raises
            raise CudaDriverError(f"no NVIDIA driver on this machine ({e})",
                                  hint="use the CPU path (deblur.runtime.prepost)") from None
        if device >= _ck(driver.cuDeviceGetCount(), "cuDeviceGetCount"):
            raise CudaDriverError(f"no CUDA GPU with index {device}", hint="use the CPU path (deblur.runtime.prepost)")
        self.device = device
        self._dev = _ck(driver.cuDeviceGet(device), "cuDeviceGet")
        self._ctx = _ck(driver.cuDevicePrimaryCtxRetain(self._dev), "cuDevicePrimaryCtxRetain")  # shared with torch/CuPy
        self._bind()
        attr = driver.CUdevice_attribute
        self.compute_capability = (
            _ck(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, self._dev), "cuDeviceGetAttribute"),
            _ck(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, self._dev), "cuDeviceGetAttribute"))
        self.module = self._load_module(image)
        self.functions = {name: _ck(driver.cuModuleGetFunction(self.module, name.encode()), f"cuModuleGetFunction {name}")
                          for name in ("deblur_pre_f32", "deblur_pre_f16", "deblur_post_f32", "deblur_post_f16")}
        self._owns_stream = stream is None
        if stream is None:
            flags = int(driver.CUstream_flags.CU_STREAM_NON_BLOCKING)
            self._stream = _ck(driver.cuStreamCreate(flags), "cuStreamCreate")
        else:
            self._stream = driver.CUstream(int(stream))
        self._staged = _ck(driver.cuEventCreate(int(driver.CUevent_flags.CU_EVENT_DISABLE_TIMING)), "cuEventCreate")
        self._device_bufs: dict[str, tuple[int, int]] = {}  # name -> (address, bytes)
        self._host_bufs: dict[str, tuple[int, np.ndarray]] = {}  # name -> (address, uint8 view of pinned memory)
        self._graph: _Graph | None = None

    # ------------------------------------------------------------------ setup
    @property
    def stream(self) -> int:
        """The CUstream handle as an int: give it to TensorRT's ``execute_async_v3`` / ``enqueueV3``."""
        return int(self._stream)

    def _bind(self) -> None:
        _ck(_driver().cuCtxSetCurrent(self._ctx), "cuCtxSetCurrent")  # callers may be on another thread

    def _load_module(self, image: bytes | None) -> Any:
        from deblur.runtime.cuda import nvrtc

        driver = _driver()
        major, minor = self.compute_capability
        sm = 10 * major + minor
        if image is None:
            archs = nvrtc.supported_archs()
            if sm in archs:
                image = nvrtc.compile_cubin(f"sm_{sm}")
            elif any(a <= sm for a in archs):  # a GPU newer than this NVRTC: PTX, JIT-compiled by the driver
                image = nvrtc.compile_ptx(f"compute_{max(a for a in archs if a <= sm)}")
            else:
                raise CudaDriverError(f"NVRTC cannot generate code for compute capability {major}.{minor}",
                                      hint="install a cuda-toolkit[nvrtc] that supports this GPU")
        buf = np.frombuffer(image, dtype=np.uint8)
        try:
            return _ck(driver.cuModuleLoadData(buf.ctypes.data), "cuModuleLoadData")
        except CudaDriverError as e:
            drv = _ck(driver.cuDriverGetVersion(), "cuDriverGetVersion")
            major_rtc, minor_rtc = nvrtc.nvrtc_version()
            raise CudaDriverError(f"{e.message}: kernels built by NVRTC {major_rtc}.{minor_rtc}, driver supports "
                                  f"CUDA {drv // 1000}.{drv % 1000 // 10}",
                                  hint=f"install cuda-toolkit[nvrtc,cudart]=={drv // 1000}.* to match the driver") from None

    def _device(self, name: str, nbytes: int) -> int:
        """A device buffer reused across frames; grows (never shrinks) when a frame is larger."""
        ptr, size = self._device_bufs.get(name, (0, 0))
        if size < nbytes:
            driver = _driver()
            if ptr:
                _ck(driver.cuStreamSynchronize(self._stream), "cuStreamSynchronize")
                _ck(driver.cuMemFree(ptr), "cuMemFree")
            ptr = int(_ck(driver.cuMemAlloc(nbytes), f"cuMemAlloc {nbytes} bytes"))
            self._device_bufs[name] = (ptr, nbytes)
        return ptr

    def _host(self, name: str, nbytes: int) -> np.ndarray:
        """A pinned (page-locked) host buffer, so copies are true async DMA; reused across frames."""
        ptr, view = self._host_bufs.get(name, (0, np.empty(0, np.uint8)))
        if view.size < nbytes:
            driver = _driver()
            if ptr:
                _ck(driver.cuStreamSynchronize(self._stream), "cuStreamSynchronize")
                _ck(driver.cuMemFreeHost(ptr), "cuMemFreeHost")
            ptr = int(_ck(driver.cuMemHostAlloc(nbytes, 0), f"cuMemHostAlloc {nbytes} bytes"))
            view = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))
            self._host_bufs[name] = (ptr, view)
        return view[:nbytes]

    def _device_ptr(self, a: DeviceArray, what: str) -> int:
        """Refuse host or other-GPU addresses with a clear message instead of an illegal-address crash."""
        driver = _driver()
        attr = driver.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
        ordinal = _ck(driver.cuPointerGetAttribute(attr, a.ptr), f"{what}: cuPointerGetAttribute (not CUDA memory?)")
        if int(ordinal) != self.device:
            raise ShapeError(f"{what} lives on GPU {int(ordinal)}, this CudaPrePost on GPU {self.device}")
        return a.ptr

    def _launch(self, name: str, width: int, height: int, args: list[tuple[int, type]]) -> None:
        """cuLaunchKernel with a void** of argument addresses (uint64 for pointers, int32 for ints)."""
        holders = [np.array([v], dtype=t) for v, t in args]
        addresses = np.array([h.ctypes.data for h in holders], dtype=np.uint64)
        grid = (-(-width // BLOCK[0]), -(-height // BLOCK[1]), 1)
        _ck(_driver().cuLaunchKernel(self.functions[name], *grid, *BLOCK, 0, self._stream, addresses.ctypes.data, 0),
            f"cuLaunchKernel {name}")

    def _enqueue_pre(self, src: int, h: int, w: int, pitch: int, bgr: bool, dst: int, ph: int, pw: int,
                     fp16: bool) -> None:
        i32, u64 = np.int32, np.uint64
        self._launch("deblur_pre_f16" if fp16 else "deblur_pre_f32", pw, ph,
                     [(src, u64), (h, i32), (w, i32), (pitch, i32), (int(bgr), i32), (dst, u64), (ph, i32), (pw, i32)])

    def _enqueue_post(self, src: int, ph: int, pw: int, dst: int, h: int, w: int, pitch: int, bgr: bool,
                      fp16: bool) -> None:
        i32, u64 = np.int32, np.uint64
        self._launch("deblur_post_f16" if fp16 else "deblur_post_f32", w, h,
                     [(src, u64), (ph, i32), (pw, i32), (dst, u64), (h, i32), (w, i32), (pitch, i32), (int(bgr), i32)])

    # ------------------------------------------------------------------ per frame
    def upload(self, frame: np.ndarray, name: str = "frame_in") -> int:
        """Host array -> reused device buffer through pinned memory; returns the device address (async)."""
        driver = _driver()
        self._bind()
        data = np.ascontiguousarray(frame)
        n = data.nbytes
        _ck(driver.cuEventSynchronize(self._staged), "cuEventSynchronize")  # the last copy out of pinned memory is done
        host = self._host(name, n)
        np.copyto(host, data.reshape(-1).view(np.uint8))
        dev = self._device(name, n)
        _ck(driver.cuMemcpyHtoDAsync(dev, host.ctypes.data, n, self._stream), "cuMemcpyHtoDAsync")
        _ck(driver.cuEventRecord(self._staged, self._stream), "cuEventRecord")
        return dev

    def download(self, src: Any, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """Device memory -> a new host array (synchronises the stream)."""
        driver = _driver()
        self._bind()
        out = np.empty(shape, dtype=dtype)
        host = self._host("download", out.nbytes)
        _ck(driver.cuMemcpyDtoHAsync(host.ctypes.data, device_array(src).ptr, out.nbytes, self._stream), "cuMemcpyDtoHAsync")
        _ck(driver.cuStreamSynchronize(self._stream), "cuStreamSynchronize")
        out.reshape(-1).view(np.uint8)[:] = host
        return out

    def preprocess(self, frame: Any, h: int | None = None, w: int | None = None, pitch: int | None = None, *,
                   bgr: bool = True, padded_hw: tuple[int, int] | None = None, fp16: bool = False,
                   out: Any = None) -> int:
        """uint8 HxWx3 frame (host array or device memory) -> 1x3xPHxPW RGB tensor in [-1, 1], reflect-padded.

        Returns the tensor's device address (``out``'s if given, e.g. the engine's input binding);
        asynchronous on ``stream``.
        """
        self._bind()
        if isinstance(frame, np.ndarray):
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise ShapeError(f"frame must be uint8 HxWx3, got {frame.dtype} {frame.shape}")
            h, w = frame.shape[:2]
            src, pitch = self.upload(frame), 3 * w
        else:
            a = device_array(frame)
            h, w, pitch = _frame_layout(a, h, w, pitch)
            src = self._device_ptr(a, "frame")
        ph, pw = padded_hw or (h, w)
        if ph < h or pw < w:
            raise ShapeError(f"padded size {ph}x{pw} is smaller than the frame {h}x{w}")
        if out is None:
            dst = self._device("tensor", 3 * ph * pw * (2 if fp16 else 4))
        else:
            o = device_array(out)
            _check_tensor(o, ph, pw, fp16, "out")
            dst = self._device_ptr(o, "out")
        self._enqueue_pre(src, h, w, pitch, bgr, dst, ph, pw, fp16)
        return dst

    def postprocess(self, tensor: Any, h: int, w: int, *, padded_hw: tuple[int, int] | None = None,
                    fp16: bool = False, bgr: bool = True, out: Any = None, out_pitch: int | None = None
                    ) -> np.ndarray | int:
        """1x3xPHxPW tensor in [-1, 1] -> uint8 HxWx3 (crop, clamp, round half up).

        With ``out`` (device memory) it writes there and returns its address without synchronising;
        without, it returns a new host array (through pinned memory; synchronises the stream).
        """
        driver = _driver()
        self._bind()
        ph, pw = padded_hw or (h, w)
        t = device_array(tensor)
        _check_tensor(t, ph, pw, fp16, "tensor")
        src = self._device_ptr(t, "tensor")
        if out is not None:
            o = device_array(out)
            _, _, pitch = _frame_layout(o, h, w, out_pitch)
            dst = self._device_ptr(o, "out")
            self._enqueue_post(src, ph, pw, dst, h, w, pitch, bgr, fp16)
            return dst
        n = h * w * 3
        dst = self._device("frame_out", n)
        self._enqueue_post(src, ph, pw, dst, h, w, 3 * w, bgr, fp16)
        host = self._host("frame_out", n)
        _ck(driver.cuMemcpyDtoHAsync(host.ctypes.data, dst, n, self._stream), "cuMemcpyDtoHAsync")
        _ck(driver.cuStreamSynchronize(self._stream), "cuStreamSynchronize")
        return host.reshape(h, w, 3).copy()

    # ------------------------------------------------------------------ CUDA graph (static-shape engines)
    def capture_graph(self, enqueue: Callable[[int], Any], *, h: int, w: int, padded_hw: tuple[int, int],
                      engine_in: Any, engine_out: Any, fp16: bool = False, bgr: bool = True,
                      host_io: bool = True) -> None:
        """Record [HtoD] -> pre -> ``enqueue(stream)`` -> post -> [DtoH] once; ``replay`` launches it.

        ``enqueue`` runs the engine on the given stream handle (e.g. ``lambda s: ctx.execute_async_v3(s)``,
        with the context's tensor addresses set to ``engine_in``/``engine_out``). It runs once outside
        the capture first: TensorRT allocates on its first enqueue, which a capture does not allow.
        Only for fixed shapes: a graph replays the exact sizes and addresses it recorded.
        """
        driver = _driver()
        self._bind()
        self.release_graph()
        ph, pw = padded_hw
        n = h * w * 3
        ein, eout = self._device_ptr(device_array(engine_in), "engine_in"), self._device_ptr(device_array(engine_out), "engine_out")
        fin, fout = self._device("graph_in", n), self._device("graph_out", n)
        hin, hout = self._host("graph_in", n), self._host("graph_out", n)

        def body() -> None:
            if host_io:
                _ck(driver.cuMemcpyHtoDAsync(fin, hin.ctypes.data, n, self._stream), "cuMemcpyHtoDAsync")
            self._enqueue_pre(fin, h, w, 3 * w, bgr, ein, ph, pw, fp16)
            enqueue(self.stream)
            self._enqueue_post(eout, ph, pw, fout, h, w, 3 * w, bgr, fp16)
            if host_io:
                _ck(driver.cuMemcpyDtoHAsync(hout.ctypes.data, fout, n, self._stream), "cuMemcpyDtoHAsync")

        body()
        _ck(driver.cuStreamSynchronize(self._stream), "cuStreamSynchronize (warm-up before capture)")
        # Thread-local: other threads (camera decode, torch) may allocate while we capture.
        mode = driver.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
        _ck(driver.cuStreamBeginCapture(self._stream, mode), "cuStreamBeginCapture")
        try:
            body()
        except BaseException:
            ret = driver.cuStreamEndCapture(self._stream)  # leave the stream usable; discard the partial graph
            if ret[0] == driver.CUresult.CUDA_SUCCESS and ret[1]:
                driver.cuGraphDestroy(ret[1])
            raise
        graph = _ck(driver.cuStreamEndCapture(self._stream), "cuStreamEndCapture")
        exec_ = _ck(driver.cuGraphInstantiate(graph, 0), "cuGraphInstantiate")
        self._graph = _Graph(graph, exec_, h, w, host_io)

    def replay(self, frame: Any, out: Any = None) -> np.ndarray | int:
        """Run the captured graph on one frame of the captured size.

        host_io graphs take a host array and return a new host array (synchronises). Device graphs take
        contiguous device frames: frame -> graph input (DtoD), graph, graph output -> ``out`` (DtoD),
        all on ``stream`` without synchronising; returns ``out``'s address (or the graph's output buffer).
        """
        g = self._graph
        if g is None:
            raise InputError("no CUDA graph captured", hint="call capture_graph first")
        driver = _driver()
        self._bind()
        n = g.h * g.w * 3
        if g.host_io:
            if not isinstance(frame, np.ndarray) or frame.shape != (g.h, g.w, 3) or frame.dtype != np.uint8:
                raise ShapeError(f"graph was captured for uint8 {g.h}x{g.w}x3 host frames, "
                                 f"got {getattr(frame, 'dtype', type(frame).__name__)} {getattr(frame, 'shape', '')}")
            np.copyto(self._host("graph_in", n).reshape(g.h, g.w, 3), frame)  # the previous replay synchronised
            _ck(driver.cuGraphLaunch(g.exec, self._stream), "cuGraphLaunch")
            _ck(driver.cuStreamSynchronize(self._stream), "cuStreamSynchronize")
            return self._host("graph_out", n).reshape(g.h, g.w, 3).copy()
        a = device_array(frame)
        if _frame_layout(a, g.h, g.w, None) != (g.h, g.w, 3 * g.w):
            raise ShapeError(f"graph was captured for contiguous {g.h}x{g.w}x3 device frames")
        _ck(driver.cuMemcpyDtoDAsync(self._device("graph_in", n), self._device_ptr(a, "frame"), n, self._stream),
            "cuMemcpyDtoDAsync")
        _ck(driver.cuGraphLaunch(g.exec, self._stream), "cuGraphLaunch")
        result = self._device("graph_out", n)
        if out is None:
            return result
        dst = self._device_ptr(device_array(out), "out")
        _ck(driver.cuMemcpyDtoDAsync(dst, result, n, self._stream), "cuMemcpyDtoDAsync")
        return dst

    def release_graph(self) -> None:
        if self._graph is not None:
            driver = _driver()
            _ck(driver.cuGraphExecDestroy(self._graph.exec), "cuGraphExecDestroy")
            _ck(driver.cuGraphDestroy(self._graph.graph), "cuGraphDestroy")
            self._graph = None

    # ------------------------------------------------------------------ teardown
    def synchronize(self) -> None:
        self._bind()
        _ck(_driver().cuStreamSynchronize(self._stream), "cuStreamSynchronize")

    def close(self) -> None:
        """Free buffers, graph, event, module, our stream (never a shared one), and the context reference."""
        if getattr(self, "_ctx", None) is None:
            return
        driver = _driver()
        self.synchronize()
        self.release_graph()
        for ptr, _ in self._device_bufs.values():
            _ck(driver.cuMemFree(ptr), "cuMemFree")
        for ptr, _ in self._host_bufs.values():
            _ck(driver.cuMemFreeHost(ptr), "cuMemFreeHost")
        self._device_bufs.clear()
        self._host_bufs.clear()
        _ck(driver.cuEventDestroy(self._staged), "cuEventDestroy")
        if self._owns_stream:
            _ck(driver.cuStreamDestroy(self._stream), "cuStreamDestroy")
        _ck(driver.cuModuleUnload(self.module), "cuModuleUnload")
        _ck(driver.cuDevicePrimaryCtxRelease(self._dev), "cuDevicePrimaryCtxRelease")
        self._ctx = None

    def __enter__(self) -> CudaPrePost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
