"""PyTorch generator -> ONNX: one small, deterministic export wrapper (segment-anything style).

The graph takes ``input`` and returns ``output``, both float32 ``[N, 3, H, W]`` RGB in [-1, 1],
with N, H and W dynamic unless a static size is asked for. Dropout is off and InstanceNorm uses
per-image statistics (the only mode our generator has). Weights are embedded (no external
data), and the file's metadata holds its ``OnnxContract`` (``deblur.runtime.contract``), so the
runtime needs nothing but the file.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from deblur.runtime.cli import package_version
from deblur.runtime.contract import OnnxContract, exporter_versions, set_onnx_props
from deblur.runtime.errors import ExportError, InputError
from deblur.runtime.spec import ModelSpec
from deblur.train.networks import Generator

DEFAULT_OPSET = 17  # InstanceNormalization and reflect Pad are stable there; TensorRT 10/11 parse it


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


def make_contract(spec: ModelSpec, static_hw: tuple[int, int] | None = None, source: dict[str, str] | None = None,
                  opset: int = DEFAULT_OPSET) -> OnnxContract:
    """The contract stored in the exported file: everything a runtime needs to feed and read it."""
    import onnx

    return OnnxContract(spec, static_hw, source or {},
                        exporter_versions(torch=str(torch.__version__), onnx=onnx.__version__, opset=str(opset)))


def export_onnx(
    model: Generator,
    path: str | Path,
    *,
    source: dict[str, str] | None = None,
    opset: int = DEFAULT_OPSET,
    static_hw: tuple[int, int] | None = None,
) -> Path:
    """Trace ``model`` into ``path`` (the caller picks a temp name), check it, embed its contract."""
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
    set_onnx_props(proto, make_contract(spec, static_hw, source, opset).to_props())
    proto.producer_name, proto.producer_version = "deblur-edge", package_version()
    onnx.save(proto, str(path))
    check(path)
    return path


def export_cpu_onnx(model: Generator, path: str | Path, *, source: dict[str, str] | None = None,
                    opset: int = DEFAULT_OPSET) -> Path:
    """The ONNX file ONNX Runtime runs on a CPU: the export, then the exact graph rewrites of
    ``onnx_optimize`` (not for TensorRT, which builds from the plain export)."""
    import onnx

    from deblur.runtime.onnx_optimize import optimize

    path = export_onnx(model, path, source=source, opset=opset)
    onnx.save(optimize(onnx.load(str(path))), str(path))
    return path


def check(path: str | Path) -> None:
    """``onnx.checker`` full check (with shape inference); a failure is an ExportError."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"ONNX checker failed: {str(e).splitlines()[0]}", path) from None
