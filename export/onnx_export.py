"""PyTorch generator -> ONNX: one small, deterministic export wrapper (segment-anything style).

The graph takes ``input`` and returns ``output``, both float32 ``[N, 3, H, W]`` RGB in [-1, 1],
with N, H and W dynamic unless a static size is asked for. Dropout is off and InstanceNorm uses
per-image statistics (the only mode our generator has). Weights are embedded (no external
data), and ``metadata_props["deblur"]`` holds JSON describing the contract, so the runtime needs
nothing but the file.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deblur.train.cli import package_version
from deblur.train.errors import DeblurError, InputError
from deblur.train.networks import Generator
from deblur.train.specs import ModelSpec

METADATA_KEY = "deblur"
ONNX_FORMAT = "deblur-edge/onnx"
DEFAULT_OPSET = 17  # InstanceNormalization and reflect Pad are stable there; TensorRT 10/11 parse it


class ExportError(DeblurError):
    pass


class ExportWrapper(nn.Module):
    """The generator's pure computation, without the eager-mode shape checks."""

    def __init__(self, generator: Generator):
        super().__init__()
        self.generator = generator.eval()
        for m in self.generator.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0  # belt and braces: eval() already disables it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator._forward(x)


def contract(spec: ModelSpec, static_hw: tuple[int, int] | None, source: dict[str, str], opset: int) -> dict[str, Any]:
    """The JSON stored in the ONNX file: everything a runtime needs to feed and read the model."""
    import onnx

    return {
        "format": ONNX_FORMAT,
        "format_version": 1,
        "spec": spec.to_dict(),
        "input": {"name": "input", "layout": "NCHW", "color_order": "RGB", "dtype": "float32",
                  "range": [-1.0, 1.0], "normalize": "x / 127.5 - 1 (uint8)"},
        "output": {"name": "output", "layout": "NCHW", "color_order": "RGB", "dtype": "float32", "range": [-1.0, 1.0]},
        "pad_multiple": spec.pad_multiple,
        "min_size": spec.min_size,
        "dynamic": static_hw is None,
        "static_hw": list(static_hw) if static_hw else None,
        "source": source,
        "exporter": {"deblur_edge": package_version(), "torch": str(torch.__version__), "onnx": onnx.__version__, "opset": opset},
    }


def export_onnx(
    model: Generator,
    path: str | Path,
    *,
    metadata: dict[str, Any],
    opset: int = DEFAULT_OPSET,
    static_hw: tuple[int, int] | None = None,
) -> Path:
    """Trace ``model`` into ``path`` (the caller picks a temp name), check it, embed ``metadata``."""
    import onnx

    path = Path(path)
    spec = model.spec
    h, w = static_hw or (max(64, spec.min_size), max(64, spec.min_size))
    if h % spec.pad_multiple or w % spec.pad_multiple:
        raise InputError(f"static size {h}x{w} is not a multiple of {spec.pad_multiple}")
    wrapper = ExportWrapper(model).cpu().float()
    dummy = torch.zeros(1, 3, h, w)
    dynamic = None if static_hw else {"input": {0: "n", 2: "h", 3: "w"}, "output": {0: "n", 2: "h", 3: "w"}}
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter (the one that emits a plain InstanceNormalization node, which
        # TensorRT maps natively) warns that it is legacy and that IN uses input statistics: intended.
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, dummy, str(path), input_names=["input"], output_names=["output"],
                          dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True, dynamo=False)
    proto = onnx.load(str(path))
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer):
        raise ExportError("the exporter wrote external data; refusing a multi-file model", path)
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata, sort_keys=True)
    proto.producer_name, proto.producer_version = "deblur-edge", package_version()
    onnx.save(proto, str(path))
    check(path)
    return path


def export_cpu_onnx(model: Generator, path: str | Path, *, metadata: dict[str, Any], opset: int = DEFAULT_OPSET) -> Path:
    """The ONNX file ONNX Runtime runs on a CPU: the export, then the exact graph rewrites of
    ``onnx_optimize`` (not for TensorRT, which builds from the plain export)."""
    import onnx

    from deblur.runtime.onnx_optimize import optimize

    path = export_onnx(model, path, metadata=metadata, opset=opset)
    onnx.save(optimize(onnx.load(str(path))), str(path))
    return path


def check(path: str | Path) -> None:
    """``onnx.checker`` full check (with shape inference); a failure is an ExportError."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"ONNX checker failed: {str(e).splitlines()[0]}", path) from None


def read_props(path: str | Path) -> dict[str, str]:
    """All ``metadata_props`` of an ONNX file (weights not loaded)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise InputError(f"is not a readable ONNX model ({type(e).__name__})", path, hint="re-export it") from None
    return {p.key: p.value for p in proto.metadata_props}


def read_metadata(path: str | Path, props: dict[str, str] | None = None) -> dict[str, Any]:
    """The deblur JSON of an ONNX file (ours), or an error saying what the file lacks."""
    props = read_props(path) if props is None else props
    if METADATA_KEY not in props:
        raise InputError("is an ONNX model without deblur-edge metadata", path, hint="export it with deblur-export --ckpt")
    return json.loads(props[METADATA_KEY])
