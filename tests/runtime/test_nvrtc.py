"""The CUDA pre/post kernels through the Python path: NVRTC compiles them here (no GPU needed), and on a
GPU, ``CudaPrePost`` must match the CPU reference (``deblur.runtime.prepost``) bit for bit.

Needs ``cuda-python>=12.6`` and ``cuda-toolkit[nvrtc,cudart]`` (NVRTC and cuda_fp16.h); without them
the NVRTC tests skip with that reason. The GPU tests skip with a reason where no GPU is present.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deblur.runtime.errors import DeblurError, InputError, ShapeError
from deblur.runtime.prepost import to_tensor, to_uint8
from deblur.runtime.shapes import padding

REPO = Path(__file__).resolve().parents[2]
INSTALL = "pip install 'cuda-python>=12.6' 'cuda-toolkit[nvrtc,cudart]'"


def _nvrtc():
    """The nvrtc module of deblur, or skip when cuda-python / libnvrtc cannot be loaded at all."""
    try:
        from cuda.bindings import nvrtc as _  # noqa: F401
    except ImportError as e:
        pytest.skip(f"cuda-python not installed ({e}); {INSTALL}")
    from deblur.runtime.cuda import nvrtc

    try:
        nvrtc.nvrtc_version()
    except nvrtc.CudaCompileError as e:
        pytest.skip(f"libnvrtc cannot be loaded ({e})")
    return nvrtc


def _gpu_reason() -> str | None:
    """None when a CUDA GPU is usable through the driver API, else why not."""
    try:
        from cuda.bindings import driver
    except ImportError:
        return f"cuda-python not installed ({INSTALL})"
    try:
        (err,) = driver.cuInit(0)
        if err != driver.CUresult.CUDA_SUCCESS:
            return f"cuInit failed ({err.name})"
        err, n = driver.cuDeviceGetCount()
        return None if err == driver.CUresult.CUDA_SUCCESS and n > 0 else "no CUDA GPU on this machine"
    except (RuntimeError, OSError) as e:  # no libcuda.so: cuda.pathfinder raises DynamicLibNotFoundError
        return f"no NVIDIA driver on this machine ({type(e).__name__})"


GPU_REASON = _gpu_reason()
needs_gpu = pytest.mark.skipif(GPU_REASON is not None, reason=f"needs a CUDA GPU: {GPU_REASON}")


# ---------------------------------------------------------------------------------------------- NVRTC (CPU)
def test_kernel_source_is_the_shared_cu_file():
    nvrtc = _nvrtc()
    src = nvrtc.kernel_source()
    assert src == (REPO / "runtime" / "cuda" / "prepost.cu").read_text()
    for name in nvrtc.KERNELS:
        assert f'extern "C" __global__ void {name}(' in src


def test_include_dir_has_cuda_fp16():
    nvrtc = _nvrtc()
    dirs = nvrtc.include_dirs()
    assert len(dirs) == 1 and (Path(dirs[0]) / "cuda_fp16.h").is_file()


def test_compile_ptx_for_orin():
    nvrtc = _nvrtc()
    ptx = nvrtc.compile_ptx("compute_87")
    assert ptx.endswith(b"\0"), "cuModuleLoadData needs NUL-terminated PTX"
    text = ptx.decode()
    assert ".target sm_87" in text
    for name in nvrtc.KERNELS:
        assert f".entry {name}(" in text
    # Bit-exact with the CPU reference (prepost): the way in, x * (1/127.5) - 1, rounded twice, never
    # fused; the way back, 127.5 y + 127.5, one explicit fmaf (one rounding, as unit_to_u8).
    bodies = {name: text.split(f".entry {name}(")[1].split(".entry")[0] for name in nvrtc.KERNELS}
    for name, body in bodies.items():
        if "_pre_" in name:
            assert "fma.rn.f32" not in body and "mul.rn.f32" in body, name
        else:
            assert "fma.rn.f32" in body, name
    assert nvrtc.compile_ptx("compute_87") is ptx  # cached per process


def test_compile_cubin_for_orin():
    nvrtc = _nvrtc()
    cubin = nvrtc.compile_cubin("sm_87")
    assert cubin[:4] == b"\x7fELF"
    assert int.from_bytes(cubin[18:20], "little") == 190  # e_machine EM_CUDA
    for name in nvrtc.KERNELS:
        assert name.encode() in cubin


def test_compile_error_carries_the_nvrtc_log():
    nvrtc = _nvrtc()
    with pytest.raises(nvrtc.CudaCompileError) as e:
        nvrtc.compile_ptx("compute_10")
    assert isinstance(e.value, DeblurError)
    assert "gpu-architecture" in e.value.log
    assert "prepost.cu" in str(e.value) and "compute_10" in str(e.value)


def test_cubin_needs_a_real_architecture():
    nvrtc = _nvrtc()
    with pytest.raises(nvrtc.CudaCompileError, match="real architecture such as 'sm_87'"):
        nvrtc.compile_cubin("compute_87")


def test_imports_are_lazy():
    code = ("import sys; import deblur.runtime.cuda.nvrtc, deblur.runtime.cuda.prepost_gpu; "
            "bad = [m for m in sys.modules if m.startswith(('cuda.', 'torch', 'cupy'))]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_driver_api_names_exist():
    """Every ``driver.X`` (and ``driver.Enum.MEMBER``) that prepost_gpu.py uses exists in this cuda-python:
    a typo or a renamed call would otherwise only show on the first GPU."""
    pytest.importorskip("cuda.bindings", reason=f"cuda-python not installed ({INSTALL})")
    from cuda.bindings import driver

    tree = ast.parse((REPO / "runtime" / "cuda" / "prepost_gpu.py").read_text())
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "driver":
            used.add((node.attr,))
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "driver"):
            used.add((node.value.attr, node.attr))
    assert len(used) > 30
    missing = [".".join(p) for p in used
               if not hasattr(driver, p[0]) or (len(p) == 2 and not hasattr(getattr(driver, p[0]), p[1]))]
    assert not missing, missing


# ---------------------------------------------------------------------------------------------- host-side logic (CPU)
class _CAI:
    """A minimal __cuda_array_interface__ object, like CuPy's (no GPU needed to read it)."""

    def __init__(self, ptr, shape, typestr, strides=None):
        self.__cuda_array_interface__ = {"data": (ptr, False), "shape": shape, "typestr": typestr,
                                         "strides": strides, "version": 3}


def test_device_array_reads_the_interface_without_copy():
    from deblur.runtime.cuda.prepost_gpu import _frame_layout, device_array

    a = device_array(_CAI(0x7000, (241, 319, 3), "|u1"))
    assert a.ptr == 0x7000 and _frame_layout(a, None, None, None) == (241, 319, 957)
    pitched = device_array(_CAI(0x7000, (7, 3, 3), "|u1", strides=(64, 3, 1)))
    assert _frame_layout(pitched, None, None, None) == (7, 3, 64)
    assert device_array(12345).ptr == 12345
    assert _frame_layout(device_array(1), 5, 4, None) == (5, 4, 12)
    with pytest.raises(ShapeError, match="uint8 HxWx3"):
        _frame_layout(device_array(_CAI(1, (4, 4, 3), "<f4")), None, None, None)
    with pytest.raises(ShapeError, match="packed"):
        _frame_layout(device_array(_CAI(1, (4, 4, 3), "|u1", strides=(48, 12, 4))), None, None, None)
    with pytest.raises(ShapeError, match="required"):
        _frame_layout(device_array(1), None, None, None)
    with pytest.raises(InputError, match="__cuda_array_interface__"):
        device_array(np.zeros((2, 2, 3), np.uint8))


def test_tensor_type_mixups_are_refused():
    from deblur.runtime.cuda.prepost_gpu import _check_tensor, device_array

    _check_tensor(device_array(_CAI(1, (1, 3, 8, 8), "<f2")), 8, 8, True, "out")
    with pytest.raises(ShapeError, match="float32"):
        _check_tensor(device_array(_CAI(1, (1, 3, 8, 8), "<f2")), 8, 8, False, "out")
    with pytest.raises(ShapeError, match="1x3x8x12"):
        _check_tensor(device_array(_CAI(1, (1, 3, 8, 8), "<f4")), 8, 12, False, "out")


@pytest.mark.skipif(GPU_REASON is None, reason="a GPU is present: this checks the no-GPU message")
def test_without_a_gpu_the_error_says_so():
    pytest.importorskip("cuda.bindings", reason=f"cuda-python not installed ({INSTALL})")
    from deblur.runtime.cuda.prepost_gpu import CudaDriverError, CudaPrePost

    with pytest.raises(CudaDriverError) as e:
        CudaPrePost()
    assert isinstance(e.value, DeblurError)
    assert "no NVIDIA driver" in str(e.value) or "no CUDA GPU" in str(e.value) or "cuInit" in str(e.value)


# ---------------------------------------------------------------------------------------------- GPU parity
@pytest.fixture(scope="module")
def pp():
    from deblur.runtime.cuda.prepost_gpu import CudaPrePost

    with CudaPrePost() as p:
        yield p


def _frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + 1000 * h + w).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint16 if a.dtype == np.float16 else np.uint32)


# (h, w, multiple, min_size, static size): the CPU reference decides the padded size. The last three
# pad a side by at least its own length, where both paths switch to edge padding on both axes.
PAD_SIZES = [(241, 319, 4, 0, None), (1, 1, 4, 0, None), (7, 3, 4, 0, None), (16, 16, 4, 0, None),
             (241, 319, 4, 8, None), (241, 319, 4, 0, (256, 320)), (2, 5, 4, 0, None), (7, 3, 4, 8, None),
             (100, 100, 4, 0, (256, 256))]
PAD_CASES = [pytest.param(*c, id="x".join(map(str, c[:2])) + f"-m{c[3]}-s{c[4]}") for c in PAD_SIZES]


@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
@pytest.mark.parametrize("bgr", [True, False], ids=["bgr", "rgb"])
@pytest.mark.parametrize("h,w,multiple,min_size,size", PAD_CASES)
def test_preprocess_matches_cpu(pp, h, w, multiple, min_size, size, bgr, fp16):
    frame = _frame(h, w)
    rgb = frame[..., ::-1] if bgr else frame
    ref = to_tensor(np.ascontiguousarray(rgb), multiple, min_size, size)
    if fp16:
        ref = ref.astype(np.float16)  # round-to-nearest-even, like __float2half_rn
    ptr = pp.preprocess(frame, bgr=bgr, padded_hw=ref.shape[2:], fp16=fp16)
    got = pp.download(ptr, ref.shape, ref.dtype)
    np.testing.assert_array_equal(_bits(got), _bits(ref))


@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
@pytest.mark.parametrize("bgr", [True, False], ids=["bgr", "rgb"])
@pytest.mark.parametrize("h,w", [(241, 319), (1, 1), (7, 3)])
def test_postprocess_matches_cpu(pp, h, w, bgr, fp16):
    ph, pw = (h + d for d in padding(h, w, 4))
    rng = np.random.default_rng(h * w)
    y = rng.uniform(-1.1, 1.1, (1, 3, ph, pw)).astype(np.float32)
    # Values on the rounding boundaries and the clamps, where an off-by-one-ulp shows.
    edge = np.float32([-1.0, 1.0, -1.5, 2.0, 0.0, 1 / 255 - 1, 0.5 / 127.5 - 1, 1.5 / 127.5 - 1, 127.5 / 127.5 - 1])
    flat = y.reshape(-1)
    flat[: min(edge.size, flat.size)] = edge[: flat.size]
    if fp16:
        y = y.astype(np.float16)
    ref = to_uint8(y.astype(np.float32), h, w)  # the GPU widens FP16 to FP32 before any arithmetic
    ref = ref[..., ::-1] if bgr else ref
    ptr = pp.upload(y, name="test_tensor")
    got = pp.postprocess(ptr, h, w, padded_hw=(ph, pw), fp16=fp16, bgr=bgr)
    np.testing.assert_array_equal(got, ref)


@needs_gpu
@pytest.mark.gpu
def test_device_frames_with_a_pitch_and_the_interface(pp):
    """Device input (raw pointer with a row pitch, or a __cuda_array_interface__ object) and device output."""
    h, w, pitch = 7, 3, 64
    frame = _frame(h, w, seed=3)
    padded = np.zeros((h, pitch), np.uint8)
    padded[:, : 3 * w] = frame.reshape(h, 3 * w)
    src = pp.upload(padded, name="test_pitched")
    ref = to_tensor(np.ascontiguousarray(frame[..., ::-1]))
    ptr = pp.preprocess(src, h, w, pitch, padded_hw=ref.shape[2:])
    np.testing.assert_array_equal(pp.download(ptr, ref.shape, np.float32), ref)
    ptr = pp.preprocess(_CAI(src, (h, w, 3), "|u1", strides=(pitch, 3, 1)), padded_hw=ref.shape[2:])
    np.testing.assert_array_equal(pp.download(ptr, ref.shape, np.float32), ref)
    out = pp.upload(np.zeros((h, w, 3), np.uint8), name="test_out")
    assert pp.postprocess(ptr, h, w, padded_hw=ref.shape[2:], out=_CAI(out, (h, w, 3), "|u1")) == out
    pp.synchronize()
    np.testing.assert_array_equal(pp.download(out, (h, w, 3), np.uint8), frame)  # uint8 round trip is exact


@needs_gpu
@pytest.mark.gpu
def test_torch_cuda_tensors_without_a_host_copy(pp):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here (CPU build)")
    frame = _frame(241, 319, seed=5)
    t = torch.from_numpy(frame).cuda()
    torch.cuda.synchronize()
    ref = to_tensor(np.ascontiguousarray(frame[..., ::-1]))
    out = torch.empty(ref.shape, dtype=torch.float32, device="cuda")
    assert pp.preprocess(t, padded_hw=ref.shape[2:], out=out) == out.data_ptr()
    pp.synchronize()
    np.testing.assert_array_equal(out.cpu().numpy(), ref)


@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_graph_replays_pre_engine_post(pp, fp16):
    """A stand-in engine (device copy input -> output) inside the captured graph: pre/post must round-trip."""
    from cuda.bindings import driver

    h, w = 241, 319
    ph, pw = (h + d for d in padding(h, w, 4))
    dtype = np.float16 if fp16 else np.float32
    ein = pp.upload(np.zeros((1, 3, ph, pw), dtype), name="test_engine_in")
    eout = pp.upload(np.zeros((1, 3, ph, pw), dtype), name="test_engine_out")
    nbytes = 3 * ph * pw * np.dtype(dtype).itemsize
    calls = []

    def enqueue(stream: int) -> None:
        calls.append(stream)
        (err,) = driver.cuMemcpyDtoDAsync(eout, ein, nbytes, driver.CUstream(stream))
        assert err == driver.CUresult.CUDA_SUCCESS

    pp.capture_graph(enqueue, h=h, w=w, padded_hw=(ph, pw), engine_in=ein, engine_out=eout, fp16=fp16)
    assert calls == [pp.stream, pp.stream]  # warm-up, then capture
    for seed in (1, 2):
        frame = _frame(h, w, seed=seed)
        np.testing.assert_array_equal(pp.replay(frame), frame)
    assert len(calls) == 2  # replays do not call back into Python
    pp.release_graph()
