"""``--debug-parity``: find the first node whose output diverges between a candidate and a reference graph.

Both graphs get every node output marked as a graph output and run on ONNX Runtime; tensors with
the same name are compared in the candidate's topological order. The reference is a fresh FP32
export of the checkpoint (or the FP32 graph an FP16 one came from), so node names line up. For a
TensorRT engine the equivalent is Polygraphy with ``--trt-outputs mark all`` (printed, not run).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _mark_all(path: Path, dst: Path) -> list[tuple[str, str, str]]:
    """Copy of the model whose outputs are every typed node output; returns (tensor, node, op) in order."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    typed = {v.name: v for v in [*model.graph.value_info, *model.graph.output]}
    existing = {o.name for o in model.graph.output}
    order = []
    for node in model.graph.node:
        for out in node.output:
            if out in typed:
                order.append((out, node.name, node.op_type))
                if out not in existing:
                    model.graph.output.append(typed[out])
                    existing.add(out)
    onnx.save(model, str(dst))
    return order


def first_divergence(candidate: Path, reference: Path, x: np.ndarray, rel_tol: float, workdir: Path) -> str:
    """One line naming the first diverging node, or saying that none did (the input or I/O differs)."""
    from deblur.runtime.ort_options import session as ort_session

    cand_all, ref_all = workdir / "debug_candidate.onnx", workdir / "debug_reference.onnx"
    order = _mark_all(candidate, cand_all)
    _mark_all(reference, ref_all)
    outs = {}
    for key, path in (("cand", cand_all), ("ref", ref_all)):
        sess = ort_session(path)
        names = [o.name for o in sess.get_outputs()]
        outs[key] = dict(zip(names, sess.run(names, {"input": x}), strict=True))
    for tensor, node, op in order:
        a, b = outs["cand"].get(tensor), outs["ref"].get(tensor)
        if a is None or b is None or a.shape != b.shape:
            continue
        a, b = a.astype(np.float64), b.astype(np.float64)
        d = float(np.max(np.abs(a - b))) if a.size else 0.0
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        if not np.isfinite(d) or d > rel_tol * (scale + 1e-6):
            return (f"first divergence at node {node!r} ({op}, output {tensor!r}): max |d| {d:.3g} "
                    f"vs max |ref| {scale:.3g} (relative {d / (scale + 1e-6):.3g} > {rel_tol:g})")
    return "no intermediate tensor diverges beyond tolerance; compare the inputs and the final crop"


def polygraphy_command(onnx_path: Path) -> str:
    return (f"polygraphy run {onnx_path} --trt --onnxrt --trt-outputs mark all --onnx-outputs mark all "
            "--fail-fast --val-range input:[-1,1]")
