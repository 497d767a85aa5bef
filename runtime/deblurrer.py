"""``Deblurrer``: one object for ``.pth``, ``.onnx`` and ``.engine`` models, frames in, frames out.

    from deblur.runtime import Deblurrer
    with Deblurrer("default") as deblur:          # bundled model, ONNX Runtime on the CPU
        sharp = deblur(frame)                      # uint8 BGR HxWx3 in, same shape and dtype out

The backend comes from the file suffix; the spec and I/O contract from the artifact. Frames of
any size from 1x1 are padded to the model's multiple and cropped back; frames larger than an
engine's profile (or ``tile``) are tiled with feathered overlaps.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from deblur.runtime.backends import backend_name, load_backend
from deblur.runtime.device import parse_device
from deblur.runtime.errors import InputError
from deblur.runtime.frames import check_frame, is_flat, postprocess, preprocess
from deblur.runtime.memory import budget, tile_side
from deblur.runtime.prepost_torch import tensor_post, tensor_pre
from deblur.runtime.shapes import padded_size
from deblur.runtime.spec import ModelSpec
from deblur.runtime.tiling import run_tiled
from deblur.runtime.zoo import BUNDLED, BUNDLED_HINT, resolve_model


class Deblurrer:
    """Deblur frames with any exported model.

    Args:
        model: a file (``.pth``/``.pt``/``.safetensors``, ``.onnx``, OpenVINO ``.xml``, ``.engine``/``.plan``) or ``"default"``.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (``runtime.device``: a GPU this machine lacks is an InputError).
        backend: ``"torch"``, ``"onnxruntime"``, ``"openvino"`` or ``"tensorrt"``; default from the suffix, except
            an ONNX model on the CPU: the fastest backend installed here that passes the parity gate
            (``runtime/backend_choice.py``; decided once per machine and model, logged, cached).
        rgb: frames are RGB instead of OpenCV's BGR.
        tile: ``"auto"`` (tile only what the backend cannot take whole: beyond an engine's profile, or
            beyond the host memory budget of ``runtime.memory`` for dynamic-shape models on the CPU:
            half the available memory, ``$DEBLUR_MEMORY_LIMIT`` caps it), an int tile side in px
            (tile frames larger than that), or ``0`` (never tile; refuse what does not fit).
        tile_overlap: overlap between tiles in px (feathered).
        threads: CPU threads for torch / ONNX Runtime / OpenVINO.
        precision: OpenVINO's ``"f32"``, ``"bf16"``, ``"f16"`` or ``"auto"`` (the CPU's native low
            precision, else f32; the default, except that the backend choice passes the one it validated);
            torch's ``"fp32"`` (default) or ``"fp16"`` (autocast, InstanceNorm kept in FP32; for CUDA).

    ``info`` says what runs (backend, precision really used, threads, why this backend);
    ``timings`` holds the last call's milliseconds: ``pre_ms``, ``infer_ms``, ``post_ms`` (wall
    time), and ``infer_cuda_ms`` (CUDA events) where the backend runs on a GPU; engines add
    ``pre_cuda_ms`` and ``post_cuda_ms`` (their pre/post kernels), where ``pre_ms``/``post_ms`` are 0: the
    whole chain is enqueued at once, and ``infer_ms`` is its wall time.
    """

    def __init__(self, model: str | Path = "default", device: str = "cpu", backend: str | None = None, *,
                 rgb: bool = False, tile: int | str = "auto", tile_overlap: int = 32, threads: int | None = None,
                 spec: str | None = None, precision: str | None = None):
        device = parse_device(device)
        if str(model) in BUNDLED:
            model = resolve_model(model, backend or ("onnxruntime" if not device.startswith("cuda") else "torch"))
        path = Path(model)
        if not path.exists():
            raise InputError("model not found", path, hint=f"pass a .pth, .onnx, .xml or .engine file, or {BUNDLED_HINT}")
        if tile != "auto" and (not isinstance(tile, int) or isinstance(tile, bool) or tile < 0):
            raise InputError(f"tile must be 'auto', 0 or a positive size in px, got {tile!r}")
        if not isinstance(tile_overlap, int) or isinstance(tile_overlap, bool) or tile_overlap < 0 \
                or (isinstance(tile, int) and tile > 0 and tile_overlap >= tile):
            raise InputError(f"tile_overlap must be a whole number of px, >= 0 and below the tile size, got {tile_overlap!r}")
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise InputError(f"threads must be a whole number >= 1 (or None: the CPUs this process may use), got {threads!r}")
        options: dict[str, Any] = {"threads": threads, "precision": precision}
        self.choice = "named" if backend else "from the file suffix"
        if precision is not None and backend is None and path.suffix.lower() in (".onnx", ".xml"):
            backend, self.choice = "openvino", "a precision was named"
        if precision is not None and (named := backend_name(path, backend)) not in ("openvino", "torch"):
            raise InputError(f"precision={precision!r} applies to the openvino and torch backends, not {named}", path,
                             hint="drop the precision, or use backend='openvino'")
        if backend is None and device == "cpu" and path.suffix.lower() == ".onnx":
            from deblur.runtime.backend_choice import choose

            chosen = choose(path, threads)
            backend, options, self.choice = chosen.backend, {**options, **chosen.options}, chosen.reason
        self.backend_name = backend_name(path, backend)
        if spec is not None:
            options["spec"] = spec
        self.backend = load_backend(path, backend, device, **options)
        self.path, self.device, self.rgb = path, device, rgb
        self.tile, self.tile_overlap = tile, tile_overlap
        self.memory_budget = budget()  # once: a video's tiling must not change with the free memory of the moment
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------------------ context
    def __enter__(self) -> Deblurrer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.backend.close()

    @property
    def spec(self) -> ModelSpec:
        return self.backend.spec

    @property
    def info(self) -> dict[str, Any]:
        """What runs: file, backend, device, spec, the precision really computed in, and why this backend."""
        b = self.backend
        return {"model": str(self.path), "backend": self.backend_name, "device": self.device, "spec": self.spec.name,
                "precision": b.precision, "threads": b.threads, "note": b.note, "choice": self.choice}

    def __repr__(self) -> str:
        return f"Deblurrer({str(self.path)!r}, backend={self.backend_name!r}, device={self.device!r}, spec={self.spec.name!r})"

    # ------------------------------------------------------------------------------ calls
    def __call__(self, frame: Any) -> Any:
        """One frame: numpy HxW[xC] (uint8/uint16/float), or a CUDA tensor / ``__cuda_array_interface__`` array."""
        if not isinstance(frame, np.ndarray) and _is_device_array(frame):
            return self._device_call(frame)
        return self.batch([frame])[0]

    def batch(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Several frames; equal shapes and dtypes run as one batch, others one by one."""
        if not frames:
            return []
        if len({(f.shape, f.dtype) for f in frames if isinstance(f, np.ndarray)}) > 1:
            return [self(f) for f in frames]
        t0 = time.perf_counter()
        for f in frames:
            check_frame(f)
        flat = [is_flat(f) for f in frames]
        if any(flat):  # nothing to deblur, and InstanceNorm would turn rounding into noise (runtime.frames)
            rest = iter(self.batch([f for f, fl in zip(frames, flat) if not fl]))
            out = [_unchanged(f) if fl else next(rest) for f, fl in zip(frames, flat)]
            if all(flat):
                self.timings = {"pre_ms": (time.perf_counter() - t0) * 1e3, "infer_ms": 0.0, "post_ms": 0.0}
            return out
        limit = getattr(self.backend, "max_batch", None)
        if limit and len(frames) > limit:  # an engine's profile caps N: run it in chunks the profile allows
            out = [y for i in range(0, len(frames), limit) for y in self.batch(frames[i : i + limit])]
            return out
        if self._on_gpu(frames[0]):
            out = self.backend.run_frames(frames, bgr=not self.rgb)
            self.timings = {"pre_ms": 0.0, "infer_ms": (time.perf_counter() - t0) * 1e3, "post_ms": 0.0,
                            **self.backend.stage_ms()}
            return out
        memory_tile = self._memory_tile_side(len(frames), *frames[0].shape[:2])
        size = self.backend.static_hw if self._fits_static(frames[0]) else None
        pre = [preprocess(f, self.backend.multiple, self.backend.min_size, self.rgb, size) for f in frames]
        x = np.concatenate([p[0] for p in pre]) if len(pre) > 1 else pre[0][0]
        t1 = time.perf_counter()
        y = self._infer(x, memory_tile)
        t2 = time.perf_counter()
        out = [postprocess(y[i : i + 1], info) for i, (_, info) in enumerate(pre)]
        t3 = time.perf_counter()
        self.timings = {"pre_ms": (t1 - t0) * 1e3, "infer_ms": (t2 - t1) * 1e3, "post_ms": (t3 - t2) * 1e3}
        self._add_cuda_time()
        return out

    def _add_cuda_time(self, wait: bool = True) -> None:
        """``infer_cuda_ms``: the backend's CUDA-event time of this call's forwards, where it has one."""
        cuda_ms = self.backend.last_cuda_ms(wait)
        if cuda_ms is not None:
            self.timings["infer_cuda_ms"] = cuda_ms

    # ------------------------------------------------------------------------------ internals
    def _on_gpu(self, frame: np.ndarray) -> bool:
        """Engines take uint8 BGR/RGB frames whole on the GPU (pre, engine, post on one stream); other
        dtypes and channel counts, and frames that need tiles, take the host tensor path."""
        b = self.backend
        if not getattr(b, "frames_on_gpu", False) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            return False
        if b.static_hw is not None:
            return self._fits_static(frame)
        return self._tile_hw(*b.padded_hw(*frame.shape[:2])) is None

    def _fits_static(self, frame: np.ndarray) -> bool:
        s = self.backend.static_hw
        return s is not None and frame.shape[0] <= s[0] and frame.shape[1] <= s[1]

    def _memory_tile_side(self, n: int, h: int, w: int) -> int | None:
        """``tile="auto"`` on a dynamic-shape CPU backend: the tile side that keeps the forward in the
        memory budget (``runtime.memory``), None if the whole frame fits; refuses before allocating."""
        b = self.backend
        if self.tile != "auto" or b.static_hw is not None or b.max_hw is not None or self.device != "cpu":
            return None
        side = tile_side(self.spec, n, *padded_size(h, w, b.multiple, b.min_size), self.memory_budget)
        if side is None:
            return None
        side = side // b.multiple * b.multiple
        if side < max(b.min_size, 2 * self.tile_overlap + b.multiple):
            raise InputError(f"{n} frame(s) of {w}x{h} leave room for tiles of {side} px only, below the "
                             f"{2 * self.tile_overlap + b.multiple} px that tile_overlap={self.tile_overlap} needs",
                             self.path, hint="free memory, raise $DEBLUR_MEMORY_LIMIT, or pass smaller frames")
        return side

    def _tile_hw(self, h: int, w: int, memory_tile: int | None = None) -> tuple[int, int] | None:
        """The tile size for an ``h x w`` padded input, or None to run it whole."""
        b, m = self.backend, self.backend.multiple
        if b.static_hw is not None:
            limit = b.static_hw
        elif b.max_hw is not None:
            limit = (b.max_hw[0] // m * m, b.max_hw[1] // m * m)
        elif memory_tile:
            limit = (memory_tile, memory_tile)
        else:
            limit = None
        if isinstance(self.tile, int) and self.tile > 0:
            t = max(self.tile // m * m, b.min_size)
            limit = (min(t, limit[0]), min(t, limit[1])) if limit else (t, t)
        if limit is None or (h <= limit[0] and w <= limit[1]) and (b.static_hw is None or (h, w) == b.static_hw):
            return None
        if self.tile == 0:
            raise InputError(f"a {w}x{h} input does not fit the model ({limit[1]}x{limit[0]} at most) and tiling is off",
                             self.path, hint="use tile='auto' or rebuild the engine with a larger --max-shape")
        return limit

    def _infer(self, x: np.ndarray, memory_tile: int | None = None) -> np.ndarray:
        tile = self._tile_hw(*x.shape[2:], memory_tile)
        if tile is None:
            return self.backend.infer(x)
        return run_tiled(x, self.backend.infer, tile, self.tile_overlap)

    def _device_call(self, frame: Any) -> Any:
        """CUDA input, CUDA output, no host copy: an engine's own kernels, or pre/post as torch ops on the device."""
        if hasattr(self.backend, "run_device"):
            t0 = time.perf_counter()
            out = self.backend.run_device(frame, bgr=not self.rgb)
            self.timings = {"pre_ms": 0.0, "infer_ms": (time.perf_counter() - t0) * 1e3, "post_ms": 0.0}
            return out
        import torch

        t = frame if isinstance(frame, torch.Tensor) else torch.as_tensor(frame, device="cuda")
        if t.dtype != torch.uint8 or t.ndim != 3 or t.shape[2] != 3:
            raise InputError(f"device frames must be uint8 HxWx3, got {tuple(t.shape)} {t.dtype}")
        t0 = time.perf_counter()
        x = tensor_pre(t, self.rgb, self.backend.multiple, self.backend.min_size)
        t1 = time.perf_counter()
        y = self.backend.infer_device(x)
        t2 = time.perf_counter()
        out = tensor_post(y, t.shape[0], t.shape[1], self.rgb)
        self.timings = {"pre_ms": (t1 - t0) * 1e3, "infer_ms": (t2 - t1) * 1e3, "post_ms": (time.perf_counter() - t2) * 1e3}
        self._add_cuda_time(wait=False)  # device frames stay asynchronous: no wait for the GPU here
        if not isinstance(frame, torch.Tensor) and type(frame).__module__.startswith("cupy"):
            import cupy

            return cupy.asarray(out)
        return out


def _unchanged(frame: np.ndarray) -> np.ndarray:
    """A flat frame as the normal path would return an identity: a copy, floats clipped to [0, 1]."""
    out = frame.copy()
    if frame.dtype.kind == "f":
        colour = out[..., :3] if frame.ndim == 3 and frame.shape[2] == 4 else out  # alpha is carried as it is
        np.clip(colour, 0.0, 1.0, out=colour)
    return out


def _is_device_array(obj: Any) -> bool:
    return hasattr(obj, "__cuda_array_interface__") or (type(obj).__module__.startswith("torch") and getattr(obj, "is_cuda", False))
