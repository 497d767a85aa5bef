"""Fuzz targets: one ``fuzz_<name>(data)`` per decoder that reads a user's file.

The contract every target asserts: on any bytes, the real decoder either returns a valid result or
raises a ``DeblurError`` (runtime/errors.py) whose ``line()`` is one non-empty line. Anything else
(IndexError, DecodeError, RecursionError, a crash, a hang, a result that breaks its own invariants)
escapes the target and is a finding. The bytes are written to a file first because every decoder
here takes a path, as the tools do.

Imports of ``deblur`` happen inside the targets, so ``run_fuzz.py`` can instrument them first.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

VIDEO_DEADLINE_S = 20.0  # a few-frame clip reads in well under a second; past this it counts as a hang

_DIR: Path | None = None


def _file(name: str, data: bytes) -> Path:
    """``data`` in a file called ``name`` in this process's scratch folder (overwritten each call)."""
    global _DIR
    if _DIR is None:
        _DIR = Path(tempfile.mkdtemp(prefix="deblur-fuzz-"))
        atexit.register(shutil.rmtree, _DIR, True)
    path = _DIR / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def _contract(call: Callable[[], Any]) -> Any:
    """``call()``'s result, or None where it raised a typed error with a one-line message."""
    from deblur.runtime.errors import DeblurError

    try:
        return call()
    except DeblurError as e:
        line = e.line()
        assert line.strip() and "\n" not in line and "\r" not in line, f"{type(e).__name__} line is not one line: {line!r}"
        return None


# ------------------------------------------------------------------------------------- checkpoints


def _check_weights(w: Any) -> None:
    import torch

    assert w.state_dict and all(isinstance(v, torch.Tensor) for v in w.state_dict.values())
    _check_spec(w.spec)


def fuzz_checkpoint_pth(data: bytes) -> None:
    """train/checkpoint.py on a ``.pth``: generator weights (any layout) and a training state."""
    from deblur.train.checkpoint import load_generator_weights, load_training_state

    path = _file("g.pth", data)
    w = _contract(lambda: load_generator_weights(path))
    if w is not None:
        _check_weights(w)
    state = _contract(lambda: load_training_state(path))
    assert state is None or isinstance(state, dict)


_ZIP_TEMPLATE: list[tuple[str, bytes]] = []


def pth_with_pickle(pickled: bytes) -> bytes:
    """A torch zip archive whose ``data.pkl`` is ``pickled`` and whose storages are the seed generator's
    (random bytes rarely survive the zip layer; this reaches the pickle, the unwrapping and the key checks)."""
    import io
    import zipfile

    if not _ZIP_TEMPLATE:
        with zipfile.ZipFile(Path(__file__).parent / "corpus" / "checkpoint_pth" / "generator.pth") as z:
            _ZIP_TEMPLATE.extend((i.filename, z.read(i)) for i in z.infolist() if not i.filename.endswith("/data.pkl"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("f/data.pkl", pickled)
        for name, blob in _ZIP_TEMPLATE:
            z.writestr(name, blob)
    return buf.getvalue()


def fuzz_checkpoint_pickle(data: bytes) -> None:
    """train/checkpoint.py on a well-formed ``.pth`` zip whose pickle is ``data`` (the object layouts)."""
    fuzz_checkpoint_pth(pth_with_pickle(data))


def fuzz_checkpoint_safetensors(data: bytes) -> None:
    """train/checkpoint.py on a ``.safetensors`` file (header JSON, spec metadata, tensors)."""
    from deblur.train.checkpoint import load_generator_weights

    path = _file("g.safetensors", data)
    w = _contract(lambda: load_generator_weights(path))
    if w is not None:
        _check_weights(w)


# ------------------------------------------------------------------------------ ONNX and contract


def _check_spec(spec: Any) -> None:
    """A spec the runtime can use: its derived sizes, range and colour order, and a JSON round trip."""
    from deblur.runtime.spec import ModelSpec

    assert isinstance(spec.name, str), f"spec name {spec.name!r}"
    assert isinstance(spec.pad_multiple, int) and spec.pad_multiple >= 1
    assert isinstance(spec.min_size, int) and spec.min_size >= 1
    assert len(spec.input_range) == 2 and spec.input_range[0] < spec.input_range[1], spec.input_range
    assert spec.color_order in ("RGB", "BGR"), spec.color_order
    assert ModelSpec.from_json(spec.to_json()) == spec


def _check_contract(c: Any) -> None:
    _check_spec(c.spec)
    assert c.static_hw is None or (len(c.static_hw) == 2 and all(v >= 1 for v in c.static_hw)), c.static_hw
    assert all(isinstance(r, str) for r in c.graph_rewrites), c.graph_rewrites
    c.to_json()


def fuzz_onnx(data: bytes) -> None:
    """runtime/contract.py: ``load_onnx`` (protobuf, external data) and the contract read from it."""
    from deblur.runtime.contract import load_onnx, read_onnx_contract

    _file("w.bin", b"\x00\x00\x80?")  # the external data a seed names (one float, 1.0)
    path = _file("g.onnx", data)
    _contract(lambda: load_onnx(path))
    c = _contract(lambda: read_onnx_contract(path))
    if c is not None:
        _check_contract(c)


def fuzz_contract(data: bytes) -> None:
    """runtime/contract.py: the ``deblur`` metadata entry of an ONNX file (JSON text, any bytes)."""
    from deblur.runtime.contract import OnnxContract

    text = data.decode("utf-8", errors="surrogateescape")
    c = _contract(lambda: OnnxContract.from_props({"deblur": text}, "g.onnx"))
    if c is not None:
        _check_contract(c)


# ---------------------------------------------------------------------------------- engine manifest

ENGINE_BYTES = b"fuzz engine\n"  # the engine beside every manifest (its SHA-256 is in the seed manifests)


def fuzz_manifest(data: bytes) -> None:
    """runtime/contract.py: ``read_manifest`` beside an engine, then what the TensorRT backend reads of it."""
    from deblur.runtime.contract import check_manifest, read_manifest, rebuild_command

    engine = _file("g_fp16.engine", ENGINE_BYTES)
    _file("g_fp16.engine.json", data)
    m = _contract(lambda: read_manifest(engine))
    if m is None:
        return
    spec = _contract(lambda: m.model_spec)
    if spec is not None:
        _check_spec(spec)
    assert isinstance(rebuild_command(m, engine), str)
    _contract(lambda: check_manifest(m, engine, tensorrt_version="10.3.0", compute_capability="8.7"))


# ------------------------------------------------------------------------------------ YAML config


def fuzz_config(data: bytes) -> None:
    """train/config.py as deblur-train reads ``--config``: load_yaml, set_value per key, check_ranges, validate."""
    from deblur.train.config import TrainConfig, check_ranges, load_yaml, set_value, validate

    path = _file("config.yaml", data)

    def read() -> TrainConfig:
        cfg = TrainConfig()
        for k, v in load_yaml(path).items():
            set_value(cfg, k, v)
        check_ranges(cfg)
        validate(cfg)
        return cfg

    _contract(read)


# ------------------------------------------------------------------------------------------ images


def fuzz_image(data: bytes) -> None:
    """runtime/images.py ``read_rgb`` (every tool's photo reader), then train/images.py's resize of it."""
    import numpy as np

    from deblur.runtime.images import read_rgb
    from deblur.train.images import fit_long_side

    path = _file("photo.png", data)
    img = _contract(lambda: read_rgb(path))
    if img is None:
        return
    assert isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, (img.dtype, img.shape)
    assert img.shape[0] >= 1 and img.shape[1] >= 1
    small = fit_long_side(img, 8)
    assert max(small.shape[:2]) <= 8 and small.shape[2] == 3


def fuzz_image_folder(data: bytes) -> None:
    """video/readers.py's image-folder source (``--input DIR``) on a folder holding this one image."""
    from deblur.video.readers import ReaderOptions, open_reader
    from deblur.video.uri import parse_source

    path = _file("folder/photo.png", data)
    reader = _contract(lambda: open_reader(parse_source(str(path.parent)), ReaderOptions()))
    if reader is None:
        return
    try:
        while (item := _contract(reader.read)) is not None:
            assert item[0].ndim == 3 and item[0].shape[2] == 3
    finally:
        reader.close()


# ------------------------------------------------------------------------------------------- video


def _fuzz_video(name: str, data: bytes) -> None:
    import numpy as np

    from deblur.video.readers import ReaderOptions, open_reader
    from deblur.video.uri import parse_source

    path = _file(name, data)
    opts = ReaderOptions(open_timeout=5.0, read_timeout=5.0)
    reader = _contract(lambda: open_reader(parse_source(str(path)), opts))
    if reader is None:
        return
    try:
        assert reader.width >= 1 and reader.height >= 1, (reader.width, reader.height)
        deadline = time.monotonic() + VIDEO_DEADLINE_S
        while (item := _contract(reader.read)) is not None:
            img, t = item
            assert isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
            assert t is None or np.isfinite(t), t
            assert time.monotonic() < deadline, f"reading all frames took over {VIDEO_DEADLINE_S:g} s"
        assert reader.skipped >= 0
    finally:
        reader.close()


def fuzz_video_mkv(data: bytes) -> None:
    """video/readers.py on a Matroska file: open, read every frame, close."""
    _fuzz_video("clip.mkv", data)


def fuzz_video_mp4(data: bytes) -> None:
    """video/readers.py on an MP4 file: open, read every frame, close."""
    _fuzz_video("clip.mp4", data)


TARGETS: dict[str, Callable[[bytes], None]] = {
    name[len("fuzz_"):]: fn for name, fn in sorted(globals().items()) if name.startswith("fuzz_") and callable(fn)
}

#: What each target's run instruments for coverage (Python modules; C decoders are not instrumented).
INSTRUMENT: dict[str, list[str]] = {
    "checkpoint_pth": ["deblur.train.checkpoint", "deblur.runtime.spec", "zipfile", "pickle"],
    "checkpoint_pickle": ["deblur.train.checkpoint", "deblur.runtime.spec", "torch._weights_only_unpickler"],
    "checkpoint_safetensors": ["deblur.train.checkpoint", "deblur.runtime.spec"],
    "onnx": ["deblur.runtime.contract", "deblur.runtime.spec", "onnx"],
    "contract": ["deblur.runtime.contract", "deblur.runtime.spec", "json"],
    "manifest": ["deblur.runtime.contract", "deblur.runtime.spec", "json"],
    "config": ["deblur.train.config", "yaml", "deblur.runtime.device"],
    "image": ["deblur.runtime.images", "deblur.train.images"],
    "image_folder": ["deblur.video.readers", "deblur.runtime.images"],
    "video_mkv": ["deblur.video.readers", "deblur.video.uri"],
    "video_mp4": ["deblur.video.readers", "deblur.video.uri"],
}

os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")  # a mutated image makes OpenCV log every decode failure
