"""The environment half of ``deblur-doctor``: what is installed on this machine, one (key, value) pair each.

Every probe imports its package lazily and never raises: a broken or missing package is a value
("not installed (pip install ...)", "cannot start: ..."), so the table always prints. The GPU is read
through cuda-python's driver API (``cuInit``: no driver, no GPU), the rest from each package's own
version and capability calls, /proc and /etc (Jetson model, CPU flags, memory).
"""
from __future__ import annotations

import importlib
import os
import platform
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# The CPU flags that decide our CPU backends' speed: AVX2/AVX-512 for FP32, BF16/VNNI/AMX for OpenVINO's
# reduced precision (runtime/backend_choice.py); on ARM (Jetson) NEON ("asimd") and FP16 arithmetic ("asimdhp").
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16",
             "neon", "asimd", "asimdhp", "fphp")
H264_ENCODERS = ("libx264", "h264_nvenc", "h264_v4l2m2m", "h264_vaapi", "h264_qsv", "libopenh264")
HINTS = {"cuda": "pip install 'deblur-edge[cuda]'", "ort": "pip install 'deblur-edge[ort]'",
         "openvino": "pip install 'deblur-edge[openvino]'", "torch": "pip install 'deblur-edge[export]'",
         "video": "pip install 'deblur-edge[video]'"}


@dataclass(frozen=True)
class Gpu:
    """GPU ``index`` as the driver reports it."""

    index: int
    name: str
    sm: int  # compute capability as a number: 8.7 -> 87
    memory_bytes: int

    @property
    def compute_capability(self) -> str:
        return f"{self.sm // 10}.{self.sm % 10}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160]}" if text else type(e).__name__


def _dist_version(*names: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for n in names:
        try:
            return version(n)
        except PackageNotFoundError:
            continue
    return None


# ------------------------------------------------------------------------------------------------ GPU


def _driver():
    from cuda.bindings import driver

    return driver


def gpus() -> tuple[list[Gpu], str | None]:
    """The GPUs the NVIDIA driver reports, and why there are none (None when there are some)."""
    try:
        driver = _driver()
    except ImportError:
        from deblur.runtime.device import cuda_device_count  # ctypes libcuda: says whether there is a GPU at all

        n = cuda_device_count()
        why = f"{n} GPU(s) present, but cuda-python is not installed ({HINTS['cuda']})" if n else "no NVIDIA driver or GPU"
        return [], why
    try:
        (err,) = driver.cuInit(0)
    except (RuntimeError, OSError) as e:  # cuda.pathfinder: libcuda.so not found
        return [], f"no NVIDIA driver on this machine ({type(e).__name__})"
    if err != driver.CUresult.CUDA_SUCCESS:
        return [], f"cuInit failed ({getattr(err, 'name', err)})"
    err, n = driver.cuDeviceGetCount()
    if err != driver.CUresult.CUDA_SUCCESS or n == 0:
        return [], "the NVIDIA driver sees no GPU"
    attr = driver.CUdevice_attribute
    out = []
    for i in range(n):
        _, dev = driver.cuDeviceGet(i)
        _, name = driver.cuDeviceGetName(256, dev)
        _, major = driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)
        _, minor = driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)
        _, mem = driver.cuDeviceTotalMem(dev)
        out.append(Gpu(i, bytes(name).split(b"\0")[0].decode(errors="replace").strip(), 10 * major + minor, int(mem)))
    return out, None


def driver_text() -> str:
    """The kernel module's version (desktop/server drivers) and the newest CUDA the driver runs."""
    parts = []
    try:
        first = Path("/proc/driver/nvidia/version").read_text().splitlines()[0]
        m = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", first)
        parts.append(m.group(1) if m else first.strip())
    except (OSError, IndexError):
        pass
    try:
        driver = _driver()
        err, v = driver.cuDriverGetVersion()
        if err == driver.CUresult.CUDA_SUCCESS:
            parts.append(f"supports CUDA {v // 1000}.{v % 1000 // 10}")
    except (ImportError, RuntimeError, OSError):
        pass
    return ", ".join(parts) or "no NVIDIA driver"


def jetson() -> str | None:
    """The Jetson board and L4T release, where this is one."""
    model = release = None
    try:
        model = Path("/proc/device-tree/model").read_bytes().rstrip(b"\0").decode(errors="replace").strip()
    except OSError:
        pass
    try:
        release = Path("/etc/nv_tegra_release").read_text().splitlines()[0].lstrip("# ").strip()
    except (OSError, IndexError):
        pass
    if release is None and not (model and ("jetson" in model.lower() or "nvidia" in model.lower())):
        return None
    return ", ".join(x for x in (model, release) if x)


# ------------------------------------------------------------------------------------------------ CPU


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "Hardware")):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features() -> list[str]:
    """The flags of ``CPU_FLAGS`` this CPU has (AArch64 always has NEON: it is listed as ``asimd``)."""
    from deblur.runtime.backend_choice import cpu_flags

    have = cpu_flags()
    return [f for f in CPU_FLAGS if f in have]


def cores() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{usable} usable of {os.cpu_count()}" if usable != os.cpu_count() else f"{usable}"


def memory() -> str:
    from deblur.runtime.memory import available_bytes, gib

    total = None
    try:
        total = next(int(ln.split()[1]) * 1024 for ln in Path("/proc/meminfo").read_text().splitlines()
                     if ln.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError):
        pass
    avail = gib(available_bytes()) + " available"
    return f"{avail} of {gib(total)}" if total else avail


# ------------------------------------------------------------------------------------------- packages


def cuda_python() -> str:
    v = _dist_version("cuda-python", "cuda-bindings")
    if v is None:
        return f"not installed ({HINTS['cuda']})"
    from deblur.runtime.errors import DeblurError

    try:
        from deblur.runtime.cuda import nvrtc

        major, minor = nvrtc.nvrtc_version()
        headers = "cuda_fp16.h found" if nvrtc.include_dirs() else "cuda_fp16.h missing"
        return f"{v}; NVRTC {major}.{minor}, {headers}"
    except (DeblurError, ImportError) as e:
        return f"{v}; NVRTC unusable ({e})"


def tensorrt() -> str:
    try:
        import tensorrt as trt
    except Exception as e:  # noqa: BLE001 - ImportError, or OSError when libnvinfer is missing
        return f"not installed ({_first_line(e)}; JetPack ships it, else NVIDIA's pip index)"
    return str(getattr(trt, "__version__", "unknown version"))


def onnxruntime() -> str:
    try:
        import onnxruntime as ort
    except ImportError:
        return f"not installed ({HINTS['ort']})"
    providers = [p.replace("ExecutionProvider", "") for p in ort.get_available_providers()]
    return f"{ort.__version__}; providers {', '.join(providers)}"


def openvino() -> str:
    from deblur.runtime.backends import openvino_backend as ovb
    from deblur.runtime.errors import DeblurError

    if not ovb.available():
        return f"not installed ({HINTS['openvino']})"
    try:
        core = ovb.core()
        version = _dist_version("openvino") or "unknown version"
        return f"{version}; devices {', '.join(core.available_devices)}; CPU precisions {', '.join(sorted(ovb.cpu_capabilities()))}"
    except DeblurError as e:
        return e.line()


def torch() -> str:
    try:
        import torch as t
    except ImportError:
        return f"not installed (only export and .pth checkpoints need it: {HINTS['torch']})"
    cuda = f"CUDA {t.version.cuda}, {'GPU usable' if t.cuda.is_available() else 'no GPU usable'}" if t.version.cuda else "CPU build"
    return f"{t.__version__} ({cuda})"


def opencv() -> str:
    import cv2

    info = cv2.getBuildInformation()
    io = info[info.find("Video I/O:"):]
    found = []
    for name in ("FFMPEG", "GStreamer", "v4l/v4l2"):
        m = re.search(rf"^\s*{re.escape(name)}:\s*(\S+)", io, re.MULTILINE)
        found.append(f"{name} {'yes' if m and m.group(1).upper() == 'YES' else 'no'}")
    return f"{cv2.__version__}; videoio {', '.join(found)}"


def pyav() -> str:
    try:
        import av
    except ImportError:
        return f"not installed ({HINTS['video']}; recording H.264 needs it)"
    encoders = [n for n in H264_ENCODERS if n in av.codecs_available and _codec_ok(av, n, "w")]
    decoder = "h264 decoder" if _codec_ok(av, "h264", "r") else "no h264 decoder"
    return f"{av.__version__} (FFmpeg libavcodec {'.'.join(map(str, av.library_versions.get('libavcodec', ())))}); " \
           f"H.264 encoders {', '.join(encoders) or 'none'}; {decoder}"


def _codec_ok(av, name: str, mode: str) -> bool:
    try:
        av.codec.Codec(name, mode)
        return True
    except Exception:  # noqa: BLE001 - UnknownCodecError and friends
        return False


# ------------------------------------------------------------------------------------------------ all


def _package_version() -> str:
    from deblur.runtime.cli import package_version

    return package_version()


def _gpu_text() -> str:
    found, why = gpus()
    if not found:
        return f"none ({why})"
    return "; ".join(f"{g.index}: {g.name}, compute {g.compute_capability}, {g.memory_bytes / (1 << 30):.0f} GiB"
                     for g in found)


PROBES: list[tuple[str, Callable[[], str | None]]] = [
    ("deblur-edge", _package_version),
    ("python", lambda: f"{platform.python_version()} ({platform.python_implementation()})"),
    ("os", platform.platform),
    ("cpu", lambda: f"{cpu_model()}, {cores()} cores, {platform.machine()}"),
    ("cpu flags", lambda: " ".join(cpu_features()) or "none of " + " ".join(CPU_FLAGS)),
    ("memory", memory),
    ("jetson", jetson),
    ("gpu", _gpu_text),
    ("nvidia driver", driver_text),
    ("cuda-python", cuda_python),
    ("tensorrt", tensorrt),
    ("onnxruntime", onnxruntime),
    ("openvino", openvino),
    ("torch", torch),
    ("opencv", opencv),
    ("pyav", pyav),
]


def environment() -> dict[str, str]:
    """Every probe's value in order (a probe that returns None, e.g. ``jetson`` on a PC, is left out)."""
    out: dict[str, str] = {}
    for key, probe in PROBES:
        try:
            value = probe()
        except Exception as e:  # noqa: BLE001 - the table must print whatever one probe hits
            value = f"cannot tell ({_first_line(e)})"
        if value is not None:
            out[key] = value
    return out


def module_available(name: str) -> str | None:
    """None when ``name`` imports, else why not (an import blocked or broken counts as missing)."""
    try:
        importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - ImportError, or OSError of a missing shared library
        return _first_line(e)
    return None
