"""FP16 stage: FP32 ONNX -> strongly typed mixed FP16/FP32 ONNX (TensorRT 11, or 10 STRONGLY_TYPED).

Precision lives in the graph (TRT 11 has no FP16 flag). InstanceNorm's variance overflows FP16 once
activations pass ~256 (torch2trt #776, TensorRT #2691, onnxruntime #10079), so InstanceNorm and
reductions stay FP32 behind Casts; graph I/O stays FP32. A maintained converter (onnxconverter-common,
or NVIDIA ModelOpt AutoCast) writes the graph; this module works around its bugs and checks the result.
"""
from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from deblur.runtime.errors import Fp16GraphError, InputError
from deblur.runtime.fileio import atomic_path

if TYPE_CHECKING:
    import onnx
    import torch

log = logging.getLogger(__name__)

TOOLS = ("onnxconverter", "modelopt")
METADATA_KEY = "deblur.fp16"
_FLOAT, _FLOAT16, _BFLOAT16 = 1, 10, 16  # onnx.TensorProto data types, without importing onnx

# The exporter (opset 17) emits InstanceNorm as one node; the rest cover a decomposed norm (the
# variance path: Pow, ReduceMean, Sqrt, Div) and other normalizations. Pad (reflect), Conv,
# ConvTranspose, Relu, Tanh, the residual Add and Clip are safe in FP16 and stay there.
DEFAULT_BLOCK_OPS = [
    "InstanceNormalization", "LayerNormalization", "GroupNormalization",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSumExp", "ReduceProd",
    "Pow", "Sqrt", "Reciprocal", "Div",
]  # fmt: skip


@dataclass
class Fp16Report:
    """What the conversion did; stored as JSON in the graph's metadata under ``deblur.fp16``."""

    tool: str
    tool_version: str
    block_ops: list[str]
    fp32_nodes: list[str] = field(default_factory=list)
    fp16_nodes: int = 0
    cast_nodes: int = 0
    io_types: str = "float32"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def convert_fp16(
    src: str | Path, dst: str | Path, tool: str = "onnxconverter",
    block_ops: Sequence[str] = DEFAULT_BLOCK_OPS, calibration: str | Path | None = None,
) -> Fp16Report:
    """Convert ``src`` (FP32 ONNX) to a mixed FP16 graph at ``dst`` (atomic); check it; return the report.

    ``calibration`` (an .npz of inputs) is for ModelOpt only: it lets AutoCast keep nodes whose
    activations exceed its ``data_max`` in FP32. Without it, only ``block_ops`` decide.
    """
    import onnx

    src, dst = Path(src), Path(dst)
    if tool not in TOOLS:
        raise InputError(f"unknown FP16 tool {tool!r}", hint=f"choose one of {', '.join(TOOLS)}")
    if not src.is_file():
        raise InputError("ONNX model not found", src, hint="export the FP32 ONNX model first")
    try:
        original = onnx.load(str(src))
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise InputError(f"cannot read ONNX model ({e})", src, hint="re-export it") from None
    block = list(dict.fromkeys(block_ops))
    if tool == "onnxconverter":
        if calibration is not None:
            raise InputError("calibration data is used by tool='modelopt' only", hint="drop it or use modelopt")
        model, version, block = _onnxconverter(original, block)
    else:
        model, version = _modelopt(src, block, calibration)

    _check_io(model, original, src)
    types = _infer_types(model, src)
    verify_fp32_ops(model, block, types)
    report = Fp16Report(tool, version, block, *_census(model, types))
    _set_metadata(model, original, report)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # noqa: BLE001 - ValidationError or InferenceError, by check
        raise Fp16GraphError(f"FP16 graph fails the ONNX checker ({e})".replace("\n", " "), src) from None
    _smoke_run(model, src)
    with atomic_path(dst) as tmp:
        onnx.save_model(model, str(tmp), save_as_external_data=False)
    log.debug("fp16 graph %s: %s", dst, report.to_json())
    return report


def verify_fp32_ops(model: onnx.ModelProto, ops: Sequence[str], types: dict[str, int] | None = None) -> None:
    """Raise unless every node whose op type is in ``ops`` takes float32 inputs (computes in FP32)."""
    types = _infer_types(model, None) if types is None else types
    bad: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type not in ops:
            continue
        dtypes = [types.get(i) for i in node.input if i]
        floaty = [t for t in dtypes if t in (_FLOAT, _FLOAT16, _BFLOAT16)]
        if (dtypes and dtypes[0] is None) or any(t != _FLOAT for t in floaty):
            bad.setdefault(node.op_type, []).append(node.name or node.output[0])
    if bad:
        what = "; ".join(f"{len(v)} {k} (e.g. {v[0]})" for k, v in bad.items())
        hint = "keep those op types in block_ops, or convert with tool='modelopt'"
        raise Fp16GraphError(f"nodes that must compute in FP32 take FP16 (or untyped) inputs: {what}", hint=hint)


def _onnxconverter(model: onnx.ModelProto, block: list[str]) -> tuple[onnx.ModelProto, str, list[str]]:
    import onnxconverter_common
    from onnxconverter_common import float16

    # Ops the converter itself must keep FP32 (e.g. Resize scales/roi are always float32 in ONNX).
    present = {n.op_type for n in model.graph.node}
    block = block + [op for op in float16.DEFAULT_OP_BLOCK_LIST if op in present and op not in block]
    model = _prepare_for_converter(model, block)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # one warning per tiny weight clamped to 1e-7
            out = float16.convert_float_to_float16(
                model, keep_io_types=True, op_block_list=block, max_finite_val=65504.0
            )
    except ValueError as e:
        if "already converted to float16" in str(e):
            raise InputError("model is already FP16", hint="pass the FP32 ONNX model") from None
        raise Fp16GraphError(f"onnxconverter-common failed ({e})", hint="try tool='modelopt'") from None
    return out, onnxconverter_common.__version__, block


def _prepare_for_converter(model: onnx.ModelProto, block: list[str]) -> onnx.ModelProto:
    """Dodge two onnxconverter-common 1.16 bugs (same semantics, on a copy).

    It keeps a blocked node's initializers FP32, so one shared with a Conv (the exporter dedups equal
    tensors) leaves the Conv an FP32 bias: blocked nodes get their own copy. A blocked node writing a
    graph output turns that output FP16 despite keep_io_types: it is routed through an Identity.
    """
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    users: dict[str, set[bool]] = {}
    for n in g.node:
        for i in n.input:
            if i in inits:
                users.setdefault(i, set()).add(n.op_type in block)
    for name in [k for k, v in users.items() if v == {True, False}]:
        copy = g.initializer.add()
        copy.CopyFrom(inits[name])
        copy.name = f"{name}__fp32"
        for n in g.node:
            if n.op_type in block:
                n.input[:] = [copy.name if i == name else i for i in n.input]
    outputs = {v.name for v in g.output}
    for n in list(g.node):
        if n.op_type in block:
            for k, o in enumerate(n.output):
                if o in outputs:
                    n.output[k] = f"{o}__fp32"
                    g.node.append(onnx.helper.make_node("Identity", [n.output[k]], [o], name=f"{o}__identity"))
    return model


def _modelopt(src: Path, block: list[str], calibration: str | Path | None) -> tuple[onnx.ModelProto, str]:
    try:
        import modelopt
        from modelopt.onnx.autocast import convert_to_mixed_precision
    except ImportError:
        hint = ("install it in its own venv: python -m venv .venv-modelopt && "
                ".venv-modelopt/bin/pip install 'nvidia-modelopt[onnx]' -e '.[export]'")
        raise InputError("tool 'modelopt' needs NVIDIA ModelOpt, which pins its own onnx/onnxruntime", hint=hint) from None
    # Its reference run feeds random data with dynamic dims set to 1, which breaks reflect padding:
    # without calibration data, data_max=inf skips that run and the block list alone decides.
    model = convert_to_mixed_precision(
        onnx_path=str(src), low_precision_type="fp16", op_types_to_exclude=block, keep_io_types=True,
        data_max=512.0 if calibration is not None else float("inf"),
        calibration_data=None if calibration is None else str(calibration), providers=["cpu"],
    )
    return model, str(getattr(modelopt, "__version__", "unknown"))


def _check_io(model: onnx.ModelProto, original: onnx.ModelProto, src: Path) -> None:
    """Graph inputs/outputs keep their names, float32 type and (dynamic) dims."""
    for kind in ("input", "output"):
        before = [(v.name, v.type.SerializeToString()) for v in getattr(original.graph, kind)]
        after = [(v.name, v.type.SerializeToString()) for v in getattr(model.graph, kind)]
        types = {v.type.tensor_type.elem_type for v in getattr(model.graph, kind)}
        if before != after or types != {_FLOAT}:
            raise Fp16GraphError(f"FP16 graph changed the graph {kind}s (names, float32 type or dims)", src)


def _infer_types(model: onnx.ModelProto, src: Path | None) -> dict[str, int]:
    """Element type of every tensor, by strict shape inference (which rejects mismatched Casts)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as e:  # noqa: BLE001 - InferenceError, or RuntimeError on old onnx
        raise Fp16GraphError(f"FP16 graph has inconsistent types ({e})".replace("\n", " "), src) from None
    g = inferred.graph
    types = {t.name: t.data_type for t in g.initializer}
    for v in [*g.input, *g.output, *g.value_info]:
        types[v.name] = v.type.tensor_type.elem_type
    return types


def _census(model: onnx.ModelProto, types: dict[str, int]) -> tuple[list[str], int, int]:
    fp32: list[str] = []
    fp16 = casts = 0
    for n in model.graph.node:
        if n.op_type == "Cast":
            casts += 1
        elif n.op_type != "Constant":
            out = {types.get(o) for o in n.output}
            if _FLOAT16 in out:
                fp16 += 1
            elif _FLOAT in out:
                fp32.append(n.name or n.output[0])
    return fp32, fp16, casts


def _set_metadata(model: onnx.ModelProto, original: onnx.ModelProto, report: Fp16Report) -> None:
    """Keep the source's metadata_props (converters may drop them) and add the report."""
    meta = {p.key: p.value for p in original.metadata_props}
    meta.update({p.key: p.value for p in model.metadata_props})
    meta[METADATA_KEY] = report.to_json()
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)


def _smoke_run(model: onnx.ModelProto, src: Path) -> None:
    """ONNX Runtime CPU must load and run the graph with finite outputs (64x64 where dims are dynamic)."""
    import numpy as np

    try:
        import onnxruntime as ort
    except ImportError:
        return log.warning("onnxruntime not installed: FP16 graph not test-run")
    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        feeds = {}
        for v in model.graph.input:
            dims = [d.dim_value or (1 if i == 0 else 64) for i, d in enumerate(v.type.tensor_type.shape.dim)]
            feeds[v.name] = np.sin(np.arange(int(np.prod(dims)), dtype=np.float32) * 0.01).reshape(dims)
        outs = sess.run(None, feeds)
    except Exception as e:  # noqa: BLE001 - ORT's pybind errors share no useful base
        raise Fp16GraphError(f"ONNX Runtime CPU cannot run the FP16 graph ({e})".replace("\n", " "), src) from None
    if not all(np.isfinite(o).all() for o in outs):
        raise Fp16GraphError("FP16 graph gives NaN/Inf on a smooth test input", src, hint="keep more ops in FP32")


def half_reference(model: torch.nn.Module) -> torch.nn.Module:
    """The stricter CPU FP16 proxy: a deep copy in ``.half()``, InstanceNorm2d in FP32, float32 I/O.

    ONNX Runtime's CPU provider computes FP16 nodes in FP32 (it inserts casts), so its FP16 parity
    only shows weight/tensor rounding. This proxy really computes convs in FP16 on CPU, as a GPU
    would (slow: use small crops). Casts are forward hooks, so the copy keeps its class and
    ``spec``. Eval mode; the argument is left untouched.
    """
    import copy

    import torch
    from torch import nn

    net = copy.deepcopy(model).eval().half()
    for m in net.modules():
        if isinstance(m, nn.InstanceNorm2d):
            m.float().register_forward_pre_hook(lambda _m, args: (args[0].float(), *args[1:]))
            m.register_forward_hook(lambda _m, _args, out: out.half())
    net.register_forward_pre_hook(lambda _m, args: (args[0].to(torch.float16), *args[1:]))
    net.register_forward_hook(lambda _m, _args, out: out.float())
    return net
