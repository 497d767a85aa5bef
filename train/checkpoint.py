"""The one checkpoint module: the only place that calls ``torch.load`` (always ``weights_only=True``).

Saves generator weights with their spec (``.pth`` or ``.safetensors``) and loads ours (weights
file, or a training checkpoint's generator or its EMA) and the authors' 2018 ``latest_net_G.pth``
(a plain state dict of ``model.<i>...``, with or without ``module.``, with or without InstanceNorm
running-stat buffers). Every bad file becomes a typed ``CheckpointError`` naming the file and the
likely cause; nothing in a file is ever executed.
"""
from __future__ import annotations

import json
import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deblur.runtime.errors import (
    CheckpointEmptyError,
    CheckpointError,
    CheckpointFormatError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CheckpointTruncatedError,
    InputError,
    UnsafeCheckpointError,
    WrongModelError,
)
from deblur.runtime.fileio import atomic_path, sha256_file
from deblur.runtime.spec import ModelSpec, get_spec, list_specs
from deblur.runtime.zoo import resolve_model
from deblur.train.networks import build_generator

log = logging.getLogger("deblur")

FORMAT_GENERATOR = "deblur-edge/generator"
FORMAT_TRAINING = "deblur-edge/training-checkpoint"
FORMAT_VERSION = 1
_IN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
_WRAPPER_KEYS = ("state_dict_ema", "model_ema", "g_ema", "netG", "generator", "G", "state_dict", "model", "g")
_CRITIC_KEYS = ("netD", "discriminator", "critic", "D", "d")  # the authors' 2018 files wrap their critic under netD
_REDOWNLOAD = "re-download or re-export it"
_CRITIC_HINT = "pass the generator: OUT/g.pth from deblur-train, or latest_net_G.pth (not latest_net_D.pth)"


@dataclass(frozen=True)
class GeneratorWeights:
    """A generator state dict with the spec it belongs to and where it came from."""

    state_dict: dict[str, torch.Tensor]
    spec: ModelSpec
    layout: str
    path: Path
    sha256: str


# ----------------------------------------------------------------------------------------- saving


def save_generator(
    path: str | Path, model: nn.Module | dict[str, torch.Tensor], spec: ModelSpec, meta: dict[str, Any] | None = None
) -> Path:
    """Write generator weights and spec atomically; ``.safetensors`` or ``.pth`` by suffix."""
    path = Path(path)
    state = model.state_dict() if isinstance(model, nn.Module) else model
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    meta = {"torch": torch.__version__, **(meta or {})}
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            header = {"format": FORMAT_GENERATOR, "format_version": str(FORMAT_VERSION), "spec": spec.to_json()}
            header["meta"] = json.dumps(meta, sort_keys=True, default=str)
            save_file(state, str(tmp), metadata=header)
        else:
            payload = {
                "format": FORMAT_GENERATOR,
                "format_version": FORMAT_VERSION,
                "spec": spec.to_dict(),
                "state_dict": state,
                "meta": json.loads(json.dumps(meta, default=str)),
            }
            torch.save(payload, tmp)
    return path


def save_training_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a full training state (tensors and plain data only, so it loads with weights_only)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT_TRAINING, "format_version": FORMAT_VERSION, **state}, tmp)
    return path


# ---------------------------------------------------------------------------------------- loading


def read_file(path: str | Path) -> tuple[Any, dict[str, str]]:
    """Sniff and deserialise a checkpoint safely: ``(object, safetensors metadata or {})``."""
    path = Path(path)
    kind = sniff(path)
    if kind == "safetensors":
        return _read_safetensors(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True), {}
    except Exception as e:  # noqa: BLE001 - every failure of the loader becomes a typed error
        raise _classify_load_error(path, e) from None


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Load a training checkpoint written by ``save_training_state``."""
    obj, _ = read_file(path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_TRAINING:
        raise CheckpointFormatError(
            "is not a deblur-edge training checkpoint", path, hint="pass a ckpt_*.pth from a deblur-train output folder"
        )
    _check_version(obj, path)
    return obj


def load_generator_weights(
    path: str | Path, spec: ModelSpec | str | None = None, prefer_ema: bool = True
) -> GeneratorWeights:
    """Load and strictly check generator weights from any layout we know.

    ``spec`` is needed only for files that carry none; the authors' files get theirs inferred
    from tensor shapes. A spec that contradicts the file's own is an error, not a silent override.
    """
    path = resolve_model(path)
    want = get_spec(spec) if isinstance(spec, str) else spec
    obj, meta = read_file(path)
    state, file_spec, layout = _unwrap(obj, meta, path, prefer_ema)
    state, notes = _normalise_keys(state)
    if notes:
        layout = f"{layout} ({', '.join(notes)})"
    _refuse_critic(state, path)
    if file_spec is not None and want is not None and _arch(file_spec) != _arch(want):
        raise CheckpointMismatchError(
            f"was saved with spec {file_spec.name!r} {_arch(file_spec)}, but spec {want.name!r} {_arch(want)} was asked for",
            path,
            hint="drop the spec option; the file's own spec is used",
        )
    final_spec = file_spec or want or infer_spec(state, path, layout)
    check_state(state, final_spec, path, layout)
    return GeneratorWeights(state, final_spec, layout, path, sha256_file(path))


def load_generator(
    path: str | Path, spec: ModelSpec | str | None = None, prefer_ema: bool = True, device: str | torch.device = "cpu"
) -> tuple[nn.Module, GeneratorWeights]:
    """A ready generator in eval mode (dropout off, per-image InstanceNorm) and its provenance."""
    weights = load_generator_weights(path, spec, prefer_ema)
    model = build_generator(weights.spec)
    model.load_state_dict(weights.state_dict, strict=True)
    model.eval().requires_grad_(False)
    log.debug("loaded %s as %s (%s)", weights.path, weights.spec.name, weights.layout)
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():  # a CPU build of torch, or no GPU
        raise InputError(f"device {device}: this torch ({torch.__version__}) sees no CUDA GPU", path,
                         hint="use device 'cpu', or install a CUDA build of torch")
    return model.to(device), weights


# ------------------------------------------------------------------------------------- internals


def sniff(path: Path) -> str:
    """Tell what a file is from its first bytes; refuse anything that is not a checkpoint."""
    if not path.exists():
        raise CheckpointNotFoundError(
            "checkpoint not found", path, hint="check the path, or train one with deblur-train"
        )
    if path.is_dir():
        raise CheckpointFormatError("is a folder, not a checkpoint file", path, hint="pass the .pth or .safetensors file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointEmptyError("is empty (0 bytes)", path, hint=f"the save or download was interrupted; {_REDOWNLOAD}")
    with open(path, "rb") as f:
        head = f.read(4096)
    if head[:4] == b"PK\x03\x04":
        return _sniff_zip(path, size)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"  # PyTorch's legacy (pre-1.6) format starts with a pickle protocol marker
    if len(head) >= 9 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if n > size - 8:
            raise CheckpointTruncatedError(
                f"is a truncated safetensors file (header claims {n + 8} bytes, {size} on disk)",
                path,
                hint=_REDOWNLOAD,
            )
        return "safetensors"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")):
        raise CheckpointFormatError(
            "is an HTML/XML page, not a checkpoint",
            path,
            hint="the download saved a web page (login, error or preview page); download the raw file",
        )
    if b"ftrt" in head[:64]:
        raise CheckpointFormatError(
            "is a TensorRT engine, not a PyTorch checkpoint",
            path,
            hint="engines run with deblur.runtime / deblur-video --model; deblur-export needs the .pth it came from",
        )
    if _looks_like_onnx(head):
        raise CheckpointFormatError(
            "is an ONNX model, not a PyTorch checkpoint",
            path,
            hint="run ONNX files with deblur.runtime or deblur-video --model; export from the .pth/.safetensors, "
            "or build an engine with deblur-export --onnx",
        )
    raise CheckpointFormatError(
        f"is not a checkpoint ({size} bytes, starts with {head[:8].hex(' ')})",
        path,
        hint=f"expected a PyTorch .pth (zip) or .safetensors file; {_REDOWNLOAD}",
    )


def _sniff_zip(path: Path, size: int) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):  # fuzz: a non-UTF-8 name, zip version 18.8
        raise CheckpointTruncatedError(
            f"is a truncated or damaged PyTorch zip archive ({size} bytes on disk, no central directory)",
            path,
            hint=_REDOWNLOAD,
        ) from None
    if not any(n.endswith("data.pkl") for n in names):
        raise CheckpointFormatError(
            "is a zip archive but not a PyTorch checkpoint (no data.pkl inside)", path, hint="pass a .pth saved by torch.save"
        )
    return "zip"


def _looks_like_onnx(head: bytes) -> bool:
    # ModelProto: field 1 (ir_version, a small varint), then a length-delimited field (producer, graph,
    # opset_import, ...); exporters also name themselves early.
    if len(head) < 3 or head[0] != 0x08 or not 1 <= head[1] <= 30:
        return False
    return head[2] in (0x12, 0x1A, 0x22, 0x2A, 0x32, 0x3A, 0x42, 0x52, 0x72) or b"onnx" in head


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError
        raise CheckpointTruncatedError(
            f"is a damaged safetensors file ({type(e).__name__}: {e})", path, hint=_REDOWNLOAD
        ) from None
    return state, meta


def _classify_load_error(path: Path, e: Exception) -> CheckpointError:
    msg = str(e)
    if "Weights only load failed" in msg or "weights_only" in msg:
        found = re.search(r"GLOBAL ([\w.]+)", msg)
        what = f" ({found.group(1)})" if found else ""
        return UnsafeCheckpointError(
            f"refused: the pickle inside would import or run code{what}",
            path,
            hint="deblur-edge loads weights only and never runs code from a file; re-save the weights with "
            "deblur.train.checkpoint.save_generator from a trusted source",
        )
    if "central directory" in msg or "PytorchStreamReader" in msg or isinstance(e, EOFError):
        return CheckpointTruncatedError(
            f"is a truncated or damaged checkpoint ({path.stat().st_size} bytes on disk)", path, hint=_REDOWNLOAD
        )
    first = (msg.splitlines() or [""])[0][:160]  # fuzz: some loader errors have an empty message
    return CheckpointFormatError(f"could not be read as a checkpoint ({type(e).__name__}: {first})", path, hint=_REDOWNLOAD)


def _check_version(obj: dict[str, Any], path: Path) -> None:
    try:
        v = int(obj.get("format_version", FORMAT_VERSION))
    except (TypeError, ValueError, OverflowError):  # fuzz: "x", None, inf
        raise CheckpointFormatError(f"has a bad format_version {obj.get('format_version')!r}", path, hint=_REDOWNLOAD) from None
    if v > FORMAT_VERSION:
        raise CheckpointFormatError(
            f"uses checkpoint format {v}, newer than this deblur-edge reads ({FORMAT_VERSION})", path, hint="upgrade deblur-edge"
        )


def _is_state(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _unwrap(
    obj: Any, meta: dict[str, str], path: Path, prefer_ema: bool
) -> tuple[dict[str, torch.Tensor], ModelSpec | None, str]:
    """Find the generator state dict inside whatever layout the file uses."""
    if meta.get("format") == FORMAT_GENERATOR:
        _check_version({"format_version": meta.get("format_version", "1")}, path)
        if "spec" not in meta:  # fuzz: KeyError before
            raise CheckpointFormatError("is a deblur-edge generator file without its spec", path, hint=_REDOWNLOAD)
        return obj, ModelSpec.from_json(meta["spec"]), "deblur-edge generator (safetensors)"
    if meta:  # a safetensors file of someone else's: the tensors are the state dict
        return obj, None, "plain safetensors state dict"
    if isinstance(obj, dict) and obj.get("format") == FORMAT_GENERATOR:
        _check_version(obj, path)
        if not _is_state(obj.get("state_dict")) or "spec" not in obj:  # fuzz: KeyError before
            raise CheckpointFormatError("is a deblur-edge generator file without its state_dict or spec", path, hint=_REDOWNLOAD)
        return obj["state_dict"], ModelSpec.from_dict(obj["spec"]), "deblur-edge generator (.pth)"
    if isinstance(obj, dict) and obj.get("format") == FORMAT_TRAINING:
        _check_version(obj, path)
        use_ema = prefer_ema and _is_state(obj.get("g_ema"))
        if not use_ema and not _is_state(obj.get("g")):
            raise WrongModelError("is a training checkpoint without generator weights", path, hint="pass OUT/g.pth")
        spec = ModelSpec.from_dict(obj["spec"]) if "spec" in obj else None
        return obj["g_ema" if use_ema else "g"], spec, f"deblur-edge training checkpoint ({'EMA' if use_ema else 'raw'} generator)"
    if _is_state(obj):
        return obj, None, "plain state dict (authors' 2018 latest_net_G layout)"
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if _is_state(obj.get(key)):
                return obj[key], None, f"state dict under {key!r}"
        for key in _CRITIC_KEYS:  # no generator anywhere, a critic under its usual name: say so
            if _is_state(obj.get(key)):
                raise WrongModelError(f"holds a critic (discriminator) under {key!r}, not a generator", path, hint=_CRITIC_HINT)
    raise CheckpointFormatError(
        "holds no generator state dict we recognise",
        path,
        hint=f"expected deblur-edge weights, a training checkpoint, or a plain state dict (tried keys {', '.join(_WRAPPER_KEYS)})",
    )


def _normalise_keys(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Strip ``module.`` (DataParallel) and drop InstanceNorm running-stat buffers (PyTorch 0.3 files)."""
    notes = []
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
        notes.append("'module.' prefix stripped")
    dropped = [k for k in state if k.rsplit(".", 1)[-1] in _IN_BUFFERS]
    if dropped:
        state = {k: v for k, v in state.items() if k not in dropped}
        notes.append(f"{len(dropped)} InstanceNorm running-stat buffers dropped")
    return state, notes


def _refuse_critic(state: dict[str, torch.Tensor], path: Path) -> None:
    first = state.get("model.0.weight")
    if first is not None and first.ndim == 4 and tuple(first.shape[1:]) == (3, 4, 4):
        raise WrongModelError("holds a critic (discriminator), not a generator", path, hint=_CRITIC_HINT)


def _arch(spec: ModelSpec) -> tuple[int, int, int]:
    return (spec.ngf, spec.n_blocks, spec.n_downsampling)


def infer_spec(state: dict[str, torch.Tensor], path: Path, layout: str) -> ModelSpec:
    """ngf, n_blocks and n_downsampling from tensor shapes, for files that carry no spec."""
    first = state.get("model.1.weight")
    if first is None or first.ndim != 4 or tuple(first.shape[1:]) != (3, 7, 7):
        keys = ", ".join(list(state)[:5])
        raise CheckpointMismatchError(
            f"is not a DeblurGAN generator state dict (no 3->ngf 7x7 conv at model.1.weight; first keys: {keys})",
            path,
            hint=f"layouts tried: {layout}; pass a generator checkpoint",
        )
    ngf = int(first.shape[0])
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.conv_block\.1\.weight$", k))})
    n_down = (blocks[0] - 4) // 3 if blocks else 2
    for name in list_specs():
        s = get_spec(name)
        if _arch(s) == (ngf, len(blocks), n_down):
            return s
    return ModelSpec(f"custom-ngf{ngf}-b{len(blocks)}", ngf=ngf, n_blocks=len(blocks), n_downsampling=n_down)


def check_state(state: dict[str, torch.Tensor], spec: ModelSpec, path: Path, layout: str) -> None:
    """Strict key and shape check with a readable one-line diff (CK-6)."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_generator(spec).state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shaped = [
        f"{k}: file {tuple(state[k].shape)} vs model {expected[k]}"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    if not (missing or unexpected or shaped):
        return
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrongly shaped", shaped)):
        if items:
            more = f" and {len(items) - 10} more" if len(items) > 10 else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:10])}{more}")
    raise CheckpointMismatchError(
        f"does not match generator spec {spec.name!r} (ngf={spec.ngf}, n_blocks={spec.n_blocks}): {'; '.join(parts)}",
        path,
        hint=f"layouts tried: {layout}; check that this is a generator saved for this spec",
    )
