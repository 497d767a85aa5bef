"""The CUDA pre/post kernels on the CPU: ``runtime/cuda/prepost.cu``, unmodified, compiled as C++ with our host
header (``runtime/cuda/host/cuda_host.h``) and compared bit for bit with the CPU reference
(``deblur.runtime.prepost``), once more under ASan/UBSan, and against deliberate mutations that must fail.

Why: no GPU in CI, and the GPU tests (test_nvrtc.py) only run where one is. This checks the source's
meaning (arithmetic, rounding, indexing, memory bounds); NVRTC's/nvcc's code generation is left to the
GPU tests. Needs g++ (skips with the reason without it); the sanitizer test also needs libasan.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from deblur.runtime.prepost import to_tensor, to_uint8

REPO = Path(__file__).resolve().parents[2]
CU = REPO / "runtime" / "cuda" / "prepost.cu"
HOST = REPO / "runtime" / "cuda" / "host"
CXX = shutil.which("g++")
HAS_FMA = " fma " in (Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else "").replace("\n", " ")
# -ffp-contract=off: no fused a*b+c (the kernels are meant without contraction; fmaf is explicit where one
# rounding is meant). With -mfma where the CPU has FMA, as the GPU does: contraction is possible, and it is
# the flag that keeps it off (the fma-allowed mutant). Never -ffast-math. Hidden visibility: each library
# (mutants too) keeps its own kernels and index variables when several are loaded into one process.
FLAGS = ["-std=c++17", "-O2", "-ffp-contract=off", *(["-mfma"] if HAS_FMA else []), "-fPIC", "-shared",
         "-fvisibility=hidden", "-Wall", "-Wextra", "-Werror", "-D__CUDACC_RTC__"]
SANITIZE = ["-fsanitize=address,undefined,float-cast-overflow", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer",
            "-g"]
# Random bytes before every output buffer (GUARD elements) and after it (GUARD + the output's own size, so that
# a mutant writing a whole row or plane too far is reported, not corrupting the heap): the kernels must not touch them.
GUARD = 64

pytestmark = pytest.mark.skipif(CXX is None, reason="g++ not installed: cannot compile the kernels for the CPU")


# ---------------------------------------------------------------------------------------------- build and load
def build(out: Path, cu: Path = CU, host: Path = HOST, flags: tuple[str, ...] = ()) -> Path:
    """prepost.cu (as C++, kernels only) + the host launchers -> one shared library."""
    cmd = [CXX, *FLAGS, *flags, "-I", str(host), "-x", "c++", str(cu), str(host / "kernels_host.cpp"), "-o", str(out)]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError(f"build failed: {' '.join(cmd)}\n{r.stderr}")
    return out


class Kernels:
    """The four kernels through the host launchers; every call checks that nothing outside the output was written."""

    def __init__(self, path: Path):
        self.lib = lib = ctypes.CDLL(str(path))
        i, p = ctypes.c_int, ctypes.c_void_p
        lib.host_pre.argtypes = [p, i, i, i, i, i, p, i, i, i]
        lib.host_post.argtypes = [p, i, i, i, i, p, i, i, i, i]
        lib.host_float2half.argtypes = [p, p, ctypes.c_size_t]
        self.rng = np.random.default_rng(7)

    def pre(self, frames: np.ndarray, ph: int, pw: int, bgr: bool, fp16: bool, pitch: int | None = None) -> np.ndarray:
        """(n, h, w, 3) uint8 frames, stored with a row pitch (random bytes in the gaps) -> (n, 3, ph, pw)."""
        n, h, w, _ = frames.shape
        pitch = pitch or 3 * w
        src = self.rng.integers(0, 256, (n * h, pitch), dtype=np.uint8)
        src[:, : 3 * w] = frames.reshape(n * h, 3 * w)
        src_before = src.copy()
        dtype = np.dtype(np.float16 if fp16 else np.float32)
        count = n * 3 * ph * pw
        buf = self.rng.integers(0, 256, (2 * count + 2 * GUARD) * dtype.itemsize, dtype=np.uint8)
        before = buf.copy()
        out = buf.view(dtype)
        rc = self.lib.host_pre(src.ctypes.data, n, h, w, pitch, int(bgr), out[GUARD:].ctypes.data, ph, pw, int(fp16))
        assert rc == 0, f"host_pre refused the arguments ({rc})"
        g, end = GUARD * dtype.itemsize, (GUARD + count) * dtype.itemsize
        assert np.array_equal(buf[:g], before[:g]) and np.array_equal(buf[end:], before[end:]), \
            "pre wrote outside its tensor"
        assert np.array_equal(src, src_before), "pre wrote into its source"
        return out[GUARD: GUARD + count].reshape(n, 3, ph, pw)

    def post(self, y: np.ndarray, h: int, w: int, bgr: bool, pitch: int | None = None) -> np.ndarray:
        """(n, 3, ph, pw) FP32/FP16 -> (n, h, w, 3) uint8, written with a row pitch into random bytes."""
        n, _, ph, pw = y.shape
        pitch = pitch or 3 * w
        y = np.ascontiguousarray(y)
        size = n * h * pitch
        buf = self.rng.integers(0, 256, 2 * size + 2 * GUARD, dtype=np.uint8)
        before = buf.copy()
        rc = self.lib.host_post(y.ctypes.data, n, ph, pw, int(y.dtype == np.float16), buf[GUARD:].ctypes.data, h, w,
                                pitch, int(bgr))
        assert rc == 0, f"host_post refused the arguments ({rc})"
        end = GUARD + size
        assert np.array_equal(buf[:GUARD], before[:GUARD]) and np.array_equal(buf[end:], before[end:]), \
            "post wrote outside its frames"
        rows, rows_before = buf[GUARD:end].reshape(n * h, pitch), before[GUARD:end].reshape(n * h, pitch)
        assert np.array_equal(rows[:, 3 * w:], rows_before[:, 3 * w:]), "post wrote into the row pitch gaps"
        return rows[:, : 3 * w].reshape(n, h, w, 3)


@pytest.fixture(scope="module")
def kernels(tmp_path_factory) -> Kernels:
    return Kernels(build(tmp_path_factory.mktemp("kernels") / "libprepost_host.so"))


# ---------------------------------------------------------------------------------------------- reference and data
def frames_for(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Random frames; where there are >= 256 pixels, the first 256 hold every uint8 value in every channel."""
    f = np.random.default_rng(seed + 1000 * h + w).integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    if h * w >= 256:
        ramp = np.arange(256, dtype=np.uint8)
        flat = f.reshape(n, h * w, 3)
        for c in range(3):
            flat[:, :256, c] = np.roll(ramp, 85 * c)
    return f


def ref_pre(frames: np.ndarray, bgr: bool, fp16: bool, multiple: int = 4, min_size: int = 0,
            size: tuple[int, int] | None = None) -> np.ndarray:
    """deblur.runtime.prepost.to_tensor per frame (RGB in); FP16 is numpy's round-to-nearest-even of the FP32 value."""
    out = np.concatenate([to_tensor(np.ascontiguousarray(f[..., ::-1] if bgr else f), multiple, min_size, size)
                          for f in frames])
    return out.astype(np.float16) if fp16 else out


def ref_post(y: np.ndarray, h: int, w: int, bgr: bool) -> np.ndarray:
    """deblur.runtime.prepost.to_uint8 per tensor (FP16 widened to FP32 first, as the kernel does)."""
    # NaN: the reference's float -> uint8 cast (0 on x86-64); |y| > 2.6e36: float64 -> float32 overflows to inf.
    with np.errstate(invalid="ignore", over="ignore"):
        out = np.stack([to_uint8(t[None].astype(np.float32), h, w) for t in y])
    return out[..., ::-1] if bgr else out


def bits(a: np.ndarray) -> np.ndarray:
    return a.view({2: np.uint16, 4: np.uint32}.get(a.dtype.itemsize, a.dtype))


def assert_same(got: np.ndarray, ref: np.ndarray, what: str, inputs: np.ndarray | None = None) -> None:
    """Bit for bit; the message names the first differing element (and its input value, for post)."""
    assert got.shape == ref.shape and got.dtype == ref.dtype, (what, got.shape, got.dtype, ref.shape, ref.dtype)
    diff = np.argwhere(bits(got) != bits(ref))
    if diff.size:
        idx = tuple(int(i) for i in diff[0])
        extra = ""
        if inputs is not None:  # post: (n, y, x, c) -> the tensor element (n, channel, y, x) that was converted
            n, yy, xx, c = idx
            channel = (2 - c) if "bgr" in what else c
            extra = f", input {inputs[n, channel, yy, xx]!r} (bits {bits(inputs[n:n+1, channel, yy, xx])[0]:#x})"
        raise AssertionError(f"{what}: {len(diff)} of {ref.size} elements differ; first at {idx}: "
                             f"kernel {got[idx]!r}, reference {ref[idx]!r}{extra}")


def tie_values() -> np.ndarray:
    """FP32 inputs around every rounding boundary of post: the 64 floats nearest (k - 127) / 127.5, for which
    127.5 y + 127.5 is k + 0.5 or next to it (k = -2..257: the clamps too)."""
    centre = np.float32((np.arange(-2, 258) - 127) / 127.5).view(np.int32)
    near = centre[:, None] + np.arange(-32, 32, dtype=np.int32)[None]
    return near.reshape(-1).view(np.float32)


def post_values_f32() -> np.ndarray:
    """All of [-1.2, 1.2] sampled, every rounding tie, the clamps, zeros, subnormals, the values where a double
    rounding could show (|y| ~ 2^-25), and one in 4099 of all 2^32 bit patterns (NaNs and infinities too)."""
    rng = np.random.default_rng(11)
    special = np.float32([0.0, -0.0, 1.0, -1.0, 1.2, -1.2, 2.0, -2.0, 1e-45, -1e-45, 1e-38, np.inf, -np.inf, np.nan,
                          -np.nan, 3.4e38, -3.4e38, 1 / 255 - 1, 0.5 / 127.5 - 1, 254.5 / 127.5 - 1])
    tiny = (rng.uniform(2.0 ** -30, 2.0 ** -20, 20000) * rng.choice([-1, 1], 20000)).astype(np.float32)
    every = np.arange(0, 2 ** 32, 4099, dtype=np.uint64).astype(np.uint32).view(np.float32)
    return np.concatenate([special, tie_values(), rng.uniform(-1.2, 1.2, 200000).astype(np.float32), tiny, every])


def as_tensor(values: np.ndarray, width: int = 1024) -> np.ndarray:
    """A 1 x 3 x rows x width tensor holding ``values`` (padded with zeros)."""
    rows = -(-values.size // (3 * width))
    t = np.zeros(3 * rows * width, values.dtype)
    t[: values.size] = values
    return t.reshape(1, 3, rows, width)


# ---------------------------------------------------------------------------------------------- the cases
# (n, h, w, multiple, min_size, static size, pitch in bytes): the reference decides the padded size. Pitches
# are odd or 2 mod 4 where > 3w. Reflect while each pad < its side, else edge on both axes.
PRE_CASES = [
    (1, 1, 1, 4, 0, None, 3),           # 1x1 -> 4x4: edge
    (1, 1, 7, 4, 0, None, 22),          # 1xW: pad 3 >= 1 -> edge
    (1, 9, 1, 4, 0, None, 5),           # Hx1
    (1, 3, 5, 4, 0, None, 15),          # reflect, pads 1 and 3
    (1, 5, 6, 4, 0, None, 19),
    (1, 3, 6, 4, 0, (5, 8), 21),        # H pad 2 = h - 1: the deepest reflect
    (1, 6, 3, 4, 0, (8, 5), 11),        # W pad 2 = w - 1
    (1, 2, 6, 4, 0, (4, 8), 21),        # H pad 2 = h: edge (the >= boundary)
    (1, 6, 2, 4, 0, (8, 4), 7),         # W pad 2 = w: edge
    (1, 7, 3, 4, 8, None, 13),          # min_size 8: W pad 5 >= 3 -> edge
    (1, 16, 16, 4, 0, None, 48),        # no padding
    (1, 10, 40, 4, 0, (17, 41), 123),   # odd static size
    (1, 100, 100, 4, 0, (256, 256), 301),  # pads larger than the image: edge
    (2, 33, 65, 32, 0, None, 198),      # N=2, pads 31 (reflect), grid not a multiple of the block
    (3, 13, 37, 8, 0, None, 113),       # N=3
    (2, 241, 319, 4, 0, None, 959),
]
# (n, h, w, ph, pw, pitch in bytes) for post (crop ph x pw -> h x w).
POST_CASES = [
    (1, 1, 1, 1, 1, 3), (1, 1, 1, 4, 4, 5), (1, 1, 9, 4, 12, 29), (1, 9, 1, 12, 4, 7), (1, 16, 16, 16, 16, 48),
    (1, 5, 7, 5, 7, 23), (3, 7, 3, 8, 4, 13), (2, 33, 65, 64, 96, 201), (2, 241, 319, 244, 320, 959),
]


def _pre_id(c) -> str:
    return f"n{c[0]}-{c[1]}x{c[2]}-m{c[3]}-min{c[4]}-s{'x'.join(map(str, c[5])) if c[5] else 'none'}-p{c[6]}"


def check_pre(k: Kernels, case, bgr: bool, fp16: bool) -> None:
    n, h, w, multiple, min_size, size, pitch = case
    frames = frames_for(n, h, w)
    ref = ref_pre(frames, bgr, fp16, multiple, min_size, size)
    got = k.pre(frames, ref.shape[2], ref.shape[3], bgr, fp16, pitch)
    assert_same(got, ref, f"pre {_pre_id(case)} {'bgr' if bgr else 'rgb'} {'fp16' if fp16 else 'fp32'}")


def check_post(k: Kernels, case, bgr: bool, fp16: bool) -> None:
    n, h, w, ph, pw, pitch = case
    rng = np.random.default_rng(h * w + n)
    y = rng.uniform(-1.2, 1.2, (n, 3, ph, pw)).astype(np.float32)
    ties = tie_values()
    flat = y.reshape(-1)
    flat[: min(ties.size, flat.size)] = rng.permutation(ties)[: flat.size]  # some of the ties, in the crop too
    if fp16:
        y = y.astype(np.float16)
    got = k.post(y, h, w, bgr, pitch)
    what = f"post n{n}-{h}x{w}-from-{ph}x{pw}-p{pitch} {'bgr' if bgr else 'rgb'} {'fp16' if fp16 else 'fp32'}"
    assert_same(got, ref_post(y, h, w, bgr), what, y)


def check_post_values(k: Kernels, fp16: bool) -> None:
    """Every FP16 bit pattern; for FP32, post_values_f32. No crop: every value is converted."""
    values = np.arange(2 ** 16, dtype=np.uint16).view(np.float16) if fp16 else post_values_f32()
    y = as_tensor(values)
    for bgr in (False, True):
        got = k.post(y, y.shape[2], y.shape[3], bgr)
        assert_same(got, ref_post(y, y.shape[2], y.shape[3], bgr), f"post values {'bgr' if bgr else 'rgb'} "
                    f"{'fp16' if fp16 else 'fp32'}", y)


def run_all(k: Kernels) -> str | None:
    """Every comparison of this file, in order; the first failure's message, or None when all match."""
    checks = [lambda: check_post_values(k, False), lambda: check_post_values(k, True)]
    checks += [lambda c=c, b=b, f=f: check_pre(k, c, b, f) for c in PRE_CASES for b in (True, False) for f in (False, True)]
    checks += [lambda c=c, b=b, f=f: check_post(k, c, b, f) for c in POST_CASES for b in (True, False)
               for f in (False, True)]
    for check in checks:
        try:
            check()
        except AssertionError as e:
            return str(e).splitlines()[0]
    return None


BGR = pytest.mark.parametrize("bgr", [True, False], ids=["bgr", "rgb"])
FP16 = pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])


# ---------------------------------------------------------------------------------------------- bit-exact tests
@FP16
@BGR
@pytest.mark.parametrize("case", PRE_CASES, ids=[_pre_id(c) for c in PRE_CASES])
def test_pre_matches_reference(kernels, case, bgr, fp16):
    check_pre(kernels, case, bgr, fp16)


@FP16
@BGR
def test_pre_every_uint8_value(kernels, bgr, fp16):
    """All 256 values in every channel position, unpadded: the table U8_TO_UNIT, bit for bit."""
    frames = np.stack([np.roll(np.arange(256, dtype=np.uint8), 85 * c) for c in range(3)], -1).reshape(1, 16, 16, 3)
    ref = ref_pre(frames, bgr, fp16)
    assert ref.shape == (1, 3, 16, 16)
    assert_same(kernels.pre(frames, 16, 16, bgr, fp16, pitch=51), ref, "pre every value")


@FP16
@BGR
@pytest.mark.parametrize("case", POST_CASES, ids=["n{}-{}x{}-from-{}x{}-p{}".format(*c) for c in POST_CASES])
def test_post_matches_reference(kernels, case, bgr, fp16):
    check_post(kernels, case, bgr, fp16)


@FP16
def test_post_values(kernels, fp16):
    check_post_values(kernels, fp16)


def test_post_values_hold_even_and_odd_ties():
    """The FP32 inputs include y where 127.5 y + 127.5 rounds to exactly k + 0.5 for even and odd k (where
    rintf and roundf differ), and values past both clamps: else the comparisons could not tell them apart."""
    y = post_values_f32()
    y = y[np.isfinite(y) & (np.abs(y) < 1e30)]
    v = (y.astype(np.float64) * 127.5 + 127.5).astype(np.float32)
    ties = v[(v - np.floor(v) == 0.5) & (v > 0) & (v < 255)]
    assert (np.floor(ties) % 2 == 0).any() and (np.floor(ties) % 2 == 1).any()
    assert (v < 0).any() and (v > 255).any()


def test_nan_and_infinity_match_the_reference(kernels):
    """NaN -> 0 and +-inf -> 255 / 0. The kernel: fmaxf(NaN, 0) = 0. The reference: NaN survives clip and rint and
    numpy's float -> uint8 cast gives 0 here (a cast C leaves undefined; numpy warns)."""
    y = as_tensor(np.float32([np.nan, -np.nan, np.float32(np.nan) * 0, np.inf, -np.inf, 0.0]), width=2)
    for t in (y, y.astype(np.float16)):
        got = kernels.post(t, 1, 2, False)
        assert_same(got, ref_post(t, 1, 2, False), "post NaN/inf", t)
        # pixel 0 = (NaN, NaN * 0, -inf), pixel 1 = (-NaN, inf, 0)
        assert got.reshape(-1).tolist() == [0, 0, 0, 0, 255, 128]


def test_float2half_rounds_to_nearest_even(kernels):
    """The header's __float2half_rn (GCC's _Float16) at every tie between two finite halves, one float
    ulp either side, around the overflow to infinity, and in the subnormals: numpy's float16 conversion."""
    h = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16)
    lo, hi = h[:-1].astype(np.float32), h[1:].astype(np.float32)
    mid = (lo + hi) / 2  # exact in float32
    x = np.concatenate([mid, np.nextafter(mid, np.float32(0)), np.nextafter(mid, np.float32(np.inf)),
                        np.float32([65504, 65519.996, 65520, 65536, 2.0 ** -25, 1.5 * 2.0 ** -25, 2.0 ** -26])])
    x = np.concatenate([x, -x])
    out = np.empty(x.size, np.uint16)
    kernels.lib.host_float2half(x.ctypes.data, out.ctypes.data, x.size)
    with np.errstate(over="ignore"):
        ref = x.astype(np.float16).view(np.uint16)
    assert_same(out, ref, "float2half")


def test_argument_checks_mirror_the_c_abi(kernels):
    """As deblur_preprocess / deblur_postprocess: bad sizes and null pointers are refused (cudaErrorInvalidValue)."""
    buf = np.zeros(4096, np.uint8)
    p = buf.ctypes.data
    pre, post = kernels.lib.host_pre, kernels.lib.host_post
    assert pre(p, 1, 4, 4, 12, 0, p, 4, 4, 0) == 0
    for args in [(None, 1, 4, 4, 12, 0, p, 4, 4, 0), (p, 0, 4, 4, 12, 0, p, 4, 4, 0), (p, 1, 4, 4, 11, 0, p, 4, 4, 0),
                 (p, 1, 4, 4, 12, 0, p, 3, 4, 0), (p, 1, 4, 4, 12, 0, p, 4, 3, 0), (p, 1, 0, 4, 12, 0, p, 4, 4, 0),
                 (p, 1, 4, 4, 12, 0, None, 4, 4, 0)]:
        assert pre(*args) == 1, args
    assert post(p, 1, 4, 4, 0, p, 4, 4, 12, 0) == 0
    for args in [(None, 1, 4, 4, 0, p, 4, 4, 12, 0), (p, 1, 4, 4, 0, p, 4, 5, 15, 0), (p, 1, 4, 4, 0, p, 4, 4, 11, 0)]:
        assert post(*args) == 1, args


# ---------------------------------------------------------------------------------------------- mutations
# Each must make some comparison above fail. (name, file, [(old, new), ...], extra flags). The old text must
# still be in the source: a mutation that no longer applies fails instead of passing silently.
MUTANTS = [
    ("rintf->roundf", "prepost.cu", [("rintf(v)", "roundf(v)")], ()),
    ("reflect-off-by-one", "prepost.cu", [("i = 2 * n - 2 - i", "i = 2 * n - 1 - i")], ()),
    ("fma-allowed", "prepost.cu", [], ("-ffp-contract=fast",)),
    ("half-truncates", "cuda_host.h", [("return __half{static_cast<_Float16>(f)};",
                                        ("uint32_t u; memcpy(&u, &f, 4); u &= ~0x1FFFu; memcpy(&f, &u, 4); "
                                         "return __half{static_cast<_Float16>(f)};"))], ()),
    ("pre-bgr-swapped", "prepost.cu", [("float r = bgr ? c2 : c0, b = bgr ? c0 : c2;",
                                        "float r = bgr ? c0 : c2, b = bgr ? c2 : c0;")], ()),
    ("post-bgr-swapped", "prepost.cu", [("px[0] = (uint8_t)(bgr ? rgb[2] : rgb[0]);", "px[0] = (uint8_t)(bgr ? rgb[0] : rgb[2]);"),
                                        ("px[2] = (uint8_t)(bgr ? rgb[0] : rgb[2]);", "px[2] = (uint8_t)(bgr ? rgb[2] : rgb[0]);")], ()),
    ("pre-pitch-ignored", "prepost.cu", [("(size_t)sy * pitch + 3 * sx", "(size_t)sy * 3 * w + 3 * sx")], ()),
    ("post-pitch-ignored", "prepost.cu", [("(size_t)y * pitch + 3 * x", "(size_t)y * 3 * w + 3 * x")], ()),
    ("pre-batch-ignores-pitch", "prepost.cu", [("src + (size_t)n * h * pitch", "src + (size_t)n * h * 3 * w")], ()),
    ("post-batch-plane-stride", "prepost.cu", [("src + (size_t)n * 3 * plane", "src + (size_t)n * plane")], ()),
    ("edge-inverted", "prepost.cu", [("const bool edge = (", "const bool edge = !(")], ()),
    ("edge-h-ge-to-gt", "prepost.cu", [("(ph - h >= h)", "(ph - h > h)")], ()),
    ("edge-w-ge-to-gt", "prepost.cu", [("(pw - w >= w)", "(pw - w > w)")], ()),
    ("pre-divides", "prepost.cu", [("r * s - 1.0f", "r / 127.5f - 1.0f"), ("c1 * s - 1.0f", "c1 / 127.5f - 1.0f"),
                                   ("b * s - 1.0f", "b / 127.5f - 1.0f")], ()),
    ("post-two-roundings", "prepost.cu", [("fmaf(load(in + c * plane), 127.5f, 127.5f)",
                                           "load(in + c * plane) * 127.5f + 127.5f")], ()),
    ("post-no-clamp", "prepost.cu", [("v = fminf(fmaxf(v, 0.0f), 255.0f);", "")], ()),
    ("pre-bounds-off-by-one", "prepost.cu", [("if (x >= pw || y >= ph) return;", "if (x > pw || y > ph) return;")], ()),
    ("post-bounds-off-by-one", "prepost.cu", [("if (x >= w || y >= h) return;", "if (x > w || y > h) return;")], ()),
]


def build_mutant(root: Path, name: str, file: str, edits, flags: tuple[str, ...], sanitize: bool = False) -> Path:
    """A temp copy of prepost.cu and the host folder with the edits applied (never the real files), built."""
    root.mkdir(parents=True, exist_ok=True)
    host = root / "host"
    shutil.copytree(HOST, host, dirs_exist_ok=True)
    cu = root / "prepost.cu"
    shutil.copy(CU, cu)
    target = cu if file == "prepost.cu" else host / file
    text = target.read_text()
    for old, new in edits:
        if old not in text:
            raise AssertionError(f"mutation {name} no longer applies: {old!r} is not in {file}; update MUTANTS")
        text = text.replace(old, new)
    target.write_text(text)
    # The flags come after FLAGS (the last -ffp-contract wins). -Wno-error: an edit may leave a variable unused.
    return build(root / f"lib{name}.so", cu, host, ("-Wno-error", *flags, *(SANITIZE if sanitize else ())))


def run_mutant(lib: Path) -> subprocess.CompletedProcess:
    """run_all on a mutant in a fresh interpreter: a mutant that writes out of bounds may crash it, not pytest."""
    return subprocess.run([sys.executable, __file__, "mutant", str(lib)], check=False, capture_output=True, text=True,
                          timeout=300, cwd=REPO)


@pytest.fixture(scope="module")
def mutant_libs(tmp_path_factory) -> dict[str, Path | Exception]:
    """All mutants built (about 0.3 s each)."""
    root = tmp_path_factory.mktemp("mutants")

    def one(m):
        name, file, edits, flags = m
        try:
            return name, build_mutant(root / name, name, file, edits, flags)
        except AssertionError as e:
            return name, e

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(pool.map(one, MUTANTS))


@pytest.fixture(scope="module")
def mutant_results(mutant_libs) -> dict[str, str]:
    """Each built mutant through run_all, in parallel subprocesses: 'caught: why' or 'passed'."""
    def one(item):
        name, lib = item
        if isinstance(lib, Exception) or (name == "fma-allowed" and not HAS_FMA):
            return name, None
        r = run_mutant(lib)
        if r.returncode != 0:
            return name, f"caught: the run crashed (exit {r.returncode}): {r.stderr.strip().splitlines()[-1:]}"
        return name, r.stdout.strip().splitlines()[-1]

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(pool.map(one, mutant_libs.items()))


@pytest.mark.parametrize("name", [m[0] for m in MUTANTS])
def test_mutant_is_caught(mutant_libs, mutant_results, name):
    if name == "fma-allowed" and not HAS_FMA:
        pytest.skip("this CPU has no FMA instructions: the FMA mutant cannot run here")
    if isinstance(mutant_libs[name], Exception):
        raise mutant_libs[name]
    result = mutant_results[name]
    print(f"mutant {name}: {result}")
    assert result.startswith("caught"), f"mutant {name} passed every comparison ({result})"


@pytest.mark.parametrize("name,case", [("pre-bounds-off-by-one", "pre"), ("post-bounds-off-by-one", "post")])
def test_guard_checks_catch_writes_past_the_output(mutant_libs, name, case):
    """The bounds checks off by one: the guard bytes after the output (and the pitch gaps) report the extra
    writes; this shows those checks of Kernels can fail."""
    k = Kernels(mutant_libs[name])
    with pytest.raises(AssertionError, match="wrote outside|pitch gaps"):
        if case == "pre":
            k.pre(frames_for(1, 5, 7), 12, 36, False, False)  # 12 x 36: neither a multiple of the 8 x 32 block
        else:
            k.post(np.zeros((1, 3, 5, 7), np.float32), 5, 7, False, pitch=25)


def test_unmutated_source_passes_run_all(kernels):
    """The mutants' check (run_all) passes on the real source: a mutant fails because of its edit."""
    assert run_all(kernels) is None


# ---------------------------------------------------------------------------------------------- sanitizers
def _libasan() -> str | None:
    if CXX is None:
        return None
    path = subprocess.run([CXX, "-print-file-name=libasan.so"], check=False, capture_output=True, text=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory) -> tuple[Path, Path]:
    """The real source and the post-no-clamp mutant (a float -> uint8 overflow: UB), built with ASan + UBSan."""
    if _libasan() is None:
        pytest.skip("libasan not found (g++ -print-file-name=libasan.so): cannot run the sanitizer build")
    probe = subprocess.run([sys.executable, "-c", "pass"], check=False, capture_output=True, text=True, timeout=60,
                           env=_asan_env())
    if probe.returncode != 0:  # e.g. an old libasan on a kernel with more mmap randomisation than it can map around
        pytest.skip(f"the ASan runtime cannot start here: {probe.stderr.strip()[-300:]}")
    root = tmp_path_factory.mktemp("sanitized")
    real = build(root / "libprepost_asan.so", flags=tuple(SANITIZE))
    noclamp = next(m for m in MUTANTS if m[0] == "post-no-clamp")
    mutant = build_mutant(root / "noclamp", noclamp[0], noclamp[1], noclamp[2], noclamp[3], sanitize=True)
    return real, mutant


def run_sanitized(lib: Path, mode: str) -> subprocess.CompletedProcess:
    """This file as a script in a fresh interpreter with the ASan runtime preloaded (Python is not instrumented)."""
    return subprocess.run([sys.executable, __file__, "sanitized", str(lib), mode], check=False, capture_output=True,
                          text=True, timeout=300, env=_asan_env(), cwd=REPO)


def _asan_env() -> dict[str, str]:
    return dict(os.environ, LD_PRELOAD=_libasan(), ASAN_OPTIONS="detect_leaks=0",
                UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")


def test_sanitized_kernels_match_and_are_clean(sanitized):
    r = run_sanitized(sanitized[0], "cases")
    assert r.returncode == 0 and "sanitized cases ok" in r.stdout, r.stdout + r.stderr[-4000:]
    assert "runtime error" not in r.stderr and "AddressSanitizer" not in r.stderr, r.stderr[-4000:]


@pytest.mark.parametrize("mode,access,kernel", [("short-dst", "WRITE", "postprocess"), ("short-src", "READ", "preprocess")])
def test_asan_catches_an_out_of_bounds_access(sanitized, mode, access, kernel):
    """Buffers one byte too small (malloc'd, so ASan knows their bounds): post's write and pre's read past the end
    must be reported in the kernel, else the sanitizer test above proves nothing."""
    r = run_sanitized(sanitized[0], mode)
    assert r.returncode != 0, r.stdout + r.stderr[-4000:]
    report = r.stderr[r.stderr.find("ERROR: AddressSanitizer"):]
    assert "heap-buffer-overflow" in report and f"{access} of size" in report, r.stderr[-4000:]
    assert kernel in report.split("allocated by")[0] and "prepost.cu" in report, r.stderr[-4000:]


def test_ubsan_catches_undefined_behaviour(sanitized):
    """The clamp removed from post: (uint8_t)280.0f is undefined behaviour, which UBSan must report."""
    r = run_sanitized(sanitized[1], "cases")
    assert r.returncode != 0, r.stdout + r.stderr[-4000:]
    assert "prepost.cu" in r.stderr and "runtime error" in r.stderr, r.stderr[-4000:]
    assert "is outside the range of representable values of type 'unsigned char'" in r.stderr, r.stderr[-4000:]


def _sanitized_main(lib_path: str, mode: str) -> int:
    """Runs in the subprocess: every buffer from malloc (ASan's, preloaded) of exactly the needed size."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    lib = Kernels(Path(lib_path)).lib

    def cbuf(data: bytes | int) -> int:
        size = data if isinstance(data, int) else len(data)
        ptr = libc.malloc(size)
        if not isinstance(data, int):
            ctypes.memmove(ptr, data, size)
        return ptr

    def read(ptr: int, size: int, dtype) -> np.ndarray:
        return np.frombuffer(ctypes.string_at(ptr, size), dtype)

    # pre: (n, h, w, multiple, size, pitch), both layouts and types; post: (n, h, w, ph, pw, pitch).
    for n, h, w, multiple, size, pitch in [(2, 13, 37, 8, None, 116), (1, 1, 1, 4, None, 3), (1, 2, 6, 4, (4, 8), 19)]:
        frames = frames_for(n, h, w)
        src = np.zeros((n * h, pitch), np.uint8)
        src[:, : 3 * w] = frames.reshape(n * h, 3 * w)
        src_bytes = src.tobytes()[: (n * h - 1) * pitch + 3 * w]  # the last row ends at its last pixel
        for bgr in (True, False):
            for fp16 in (False, True):
                ref = ref_pre(frames, bgr, fp16, multiple, 0, size)
                s = cbuf(src_bytes[:-1] if mode == "short-src" else src_bytes)
                d = cbuf(ref.nbytes)
                rc = lib.host_pre(s, n, h, w, pitch, int(bgr), d, ref.shape[2], ref.shape[3], int(fp16))
                got = read(d, ref.nbytes, ref.dtype)
                libc.free(s), libc.free(d)
                if rc != 0 or not np.array_equal(bits(got), bits(ref.reshape(-1))):
                    print(f"pre mismatch n{n} {h}x{w} bgr={bgr} fp16={fp16}", file=sys.stderr)
                    return 3
    for n, h, w, ph, pw, pitch in [(2, 13, 37, 16, 40, 115), (1, 1, 1, 4, 4, 3)]:
        rng = np.random.default_rng(3)
        y = rng.uniform(-1.2, 1.2, (n, 3, ph, pw)).astype(np.float32)
        y.reshape(-1)[:6] = [np.nan, np.inf, -np.inf, 1.2, -1.2, 0.0]
        for bgr in (True, False):
            for t in (y, y.astype(np.float16)):
                ref = ref_post(t, h, w, bgr)
                nbytes = (n * h - 1) * pitch + 3 * w  # the last row ends at its last pixel
                s = cbuf(t.tobytes())
                d = cbuf(nbytes - (1 if mode == "short-dst" else 0))
                rc = lib.host_post(s, n, ph, pw, int(t.dtype == np.float16), d, h, w, pitch, int(bgr))
                raw = np.frombuffer(ctypes.string_at(d, nbytes) + b"\0" * pitch, np.uint8)[: n * h * pitch]
                got = raw.reshape(n * h, pitch)[:, : 3 * w].reshape(ref.shape)
                libc.free(s), libc.free(d)
                if rc != 0 or not np.array_equal(got, ref):
                    print(f"post mismatch n{n} {h}x{w} bgr={bgr} {t.dtype}", file=sys.stderr)
                    return 3
    print("sanitized cases ok")
    return 0


def _mutant_main(lib_path: str) -> int:
    failure = run_all(Kernels(Path(lib_path)))
    print(f"caught: {failure}" if failure else "passed")
    return 0


if __name__ == "__main__":  # the subprocesses of run_mutant and run_sanitized
    sys.exit(_mutant_main(sys.argv[2]) if sys.argv[1] == "mutant" else _sanitized_main(sys.argv[2], sys.argv[3]))
