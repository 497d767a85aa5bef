"""Exact ONNX graph rewrites that make the generator faster on ONNX Runtime's CPU provider.

Each rewrite is an exact algebraic identity (the same products, summed in another order), so the
result stays within FP32 parity (|d| <= 1e-4 + 1e-3 |ref|; measured max |d| 1e-6 to 6e-5 vs torch,
the same as the plain export). Profiles (benchmarks/ort_tuning.py --profile) show where ORT's time
goes at 360x640: Conv 55-80 %, ConvTranspose 7-13 %, InstanceNorm 4-10 %, NCHWc reorders 5-9 %,
reflect Pad 2-5 %. Two things are slow for no good reason, and these rewrites remove them:

* The 7x7 ``ngf -> 3`` output conv: ORT's NCHWc kernels (AVX2: blocks of 8 channels) pad its 3
  output channels to 8, so 5/8 of its work is wasted; it was the most expensive node of the small
  specs (28 % of pico). ``subpixel_tail`` computes it on the 2x2 polyphase form of its input,
  ``SpaceToDepth(2) -> Conv(4*ngf -> 12, 4x4) -> activation -> DepthToSpace(2)``: 12 output channels
  at a quarter of the pixels, 35 % fewer multiply-adds as ORT executes them.
* ConvTranspose (gemm + a single-threaded col2im) and the full-resolution DepthToSpace/SpaceToDepth
  (strided copies: 8-11 ms for 16x360x640, more than a convolution). ``phase_tail`` takes the whole
  last stage, ``ConvTranspose(k3,s2) -> InstanceNorm -> Relu -> Pad(reflect 3) -> Conv 7x7 [-> Tanh]``,
  into the polyphase domain: the ConvTranspose becomes a 2x2 conv that yields the four output
  phases (channel ``c*4 + phase``); InstanceNorm runs on them through a free Reshape to
  ``[N, C, 4hw]`` (same statistics); reflection keeps a row's parity, so the reflect padding
  becomes a per-phase Slice/Concat of whole rows and columns (memcpy speed); one conv reads the
  four padded phases and only the 3-channel result is interleaved (one small DepthToSpace).

Their measured effect is in benchmarks/README.md (``python benchmarks/ort_tuning.py``).

The polyphase forms need even H and W at full resolution: true for every input the contract allows
(multiples of ``pad_multiple`` >= 2, read from the deblur metadata; without it ``subpixel_tail``
is not applied); an odd size would make ORT raise, never return different numbers. None of this
helps TensorRT, which has native ConvTranspose and its own channel padding: apply ``optimize`` to
the ONNX file meant for ONNX Runtime on CPU, not to the one an engine is built from. The runtime's
ONNX backend applies it in memory when it opens a plain FP32 export on the CPU (``cpu_rewritten``),
so the files ``deblur-export`` writes run at this speed without a second file, and the export's
parity gate checks the rewritten graph too.
"""
from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any

import numpy as np

from deblur.runtime.contract import (
    METADATA_KEY,
    OnnxContract,
    is_fp16,
    load_onnx,
    onnx_props,
    set_onnx_props,
)

NCHWC_BLOCK = 8  # MLAS NCHWc block on AVX2 (16 on AVX-512): output channels are padded to it
TAIL_MAX_COUT = 4  # polyphase wins only when 4*Cout still wastes little of the padded blocks
TAIL_MIN_KERNEL = 5  # for 3x3 the 2x2-tap polyphase conv saves less than SpaceToDepth costs
_UNARY_ACTIVATIONS = ("Tanh", "Relu", "Sigmoid", "LeakyRelu", "HardSigmoid")


def optimize(model: Any, *, phase_tail: bool = True, subpixel_tail: bool = True) -> Any:
    """Return a rewritten copy of ``model`` (an ``onnx.ModelProto``); the input is left untouched.

    Records what was applied in the deblur metadata (``"graph_rewrites"``), so a runtime or a
    report can tell an optimised file from a plain export.
    """
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    consts = _constants(g)
    graph_nodes = list(g.node)  # one list of wrappers, alive throughout: id() below is stable
    consumers: dict[str, list[Any]] = {}
    for n in graph_nodes:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    applied: list[str] = []
    nodes: list[Any] = []
    contract = _contract(out)
    even_hw = contract is not None and contract.spec.pad_multiple % 2 == 0
    skip: set[int] = set()
    replaced: dict[int, list[Any]] = {}
    if phase_tail:
        opset = next((o.version for o in out.opset_import if o.domain in ("", "ai.onnx")), 17)
        for chain in _find_phase_tail_chains(g, graph_nodes, consts, consumers, opset):
            skip.update(id(m) for m in chain[:-1])  # emitted where the chain ends: all its inputs exist there
            replaced[id(chain[-1])] = _rewrite_phase_tail(chain, consts, g)
            applied.append("phase_tail")
    for n in graph_nodes:
        if id(n) in skip:
            continue
        if id(n) in replaced:
            nodes += replaced[id(n)]
            continue
        if subpixel_tail and even_hw and _is_tail_conv(n, consts):
            act = _sole_activation(n, consumers, g)
            nodes += _rewrite_tail(n, consts, g, act)
            if act is not None:
                skip.add(id(act))
            applied.append("subpixel_tail")
            continue
        nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    _drop_unused_initializers(g)
    del g.value_info[:]  # stale shapes of rewritten tensors; ORT re-infers
    if applied:
        _record(out, sorted(set(applied)))
    onnx.checker.check_model(out)
    return out


def cpu_rewritten(source: Any) -> tuple[bytes, list[str]] | None:
    """``optimize``d model bytes for an ONNX Runtime CPU session and the rewrites applied, or None
    where there is nothing to do: ``onnx`` not installed, a graph rewritten already, an FP16 graph
    (its casts are not what the patterns expect), or no pattern found. ``source``: a path, or a
    ``ModelProto`` already read by ``load_onnx`` with its weights (read once, not twice)."""
    if importlib.util.find_spec("onnx") is None:
        return None
    model = source if hasattr(source, "graph") else load_onnx(source)
    contract = _contract(model)
    if is_fp16(onnx_props(model)) or contract is None or contract.graph_rewrites:
        return None
    out = optimize(model)
    applied = list(_contract(out).graph_rewrites)
    return (out.SerializeToString(), applied) if applied else None


# -------------------------------------------------------------------------------------- matching


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _constants(g: Any) -> dict[str, np.ndarray]:
    """Initializers, plus Identity/Constant outputs of them (the exporter dedups equal tensors)."""
    from onnx import numpy_helper

    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Identity" and n.input[0] in consts:
            consts[n.output[0]] = consts[n.input[0]]
        elif n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return consts


def _plain_2d(a: dict[str, Any]) -> bool:
    return (a.get("group", 1) == 1 and a.get("dilations", [1, 1]) == [1, 1] and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"))


def _is_tail_conv(n: Any, consts: dict[str, np.ndarray]) -> bool:
    if n.op_type != "Conv" or n.input[1] not in consts or (len(n.input) > 2 and n.input[2] not in consts):
        return False
    w, a = consts[n.input[1]], _attrs(n)
    return (w.ndim == 4 and w.shape[0] <= TAIL_MAX_COUT and w.shape[2] == w.shape[3] and w.shape[2] % 2 == 1
            and w.shape[2] >= TAIL_MIN_KERNEL and _plain_2d(a) and a.get("strides", [1, 1]) == [1, 1]
            and a.get("pads", [0, 0, 0, 0]) == [0, 0, 0, 0])


def _sole_activation(n: Any, consumers: dict[str, list[Any]], g: Any) -> Any | None:
    """The elementwise activation right after ``n``, moved before DepthToSpace so ORT fuses it."""
    users = consumers.get(n.output[0], [])
    graph_outputs = {o.name for o in g.output}
    if len(users) == 1 and users[0].op_type in _UNARY_ACTIVATIONS and n.output[0] not in graph_outputs:
        return users[0]
    return None




# ------------------------------------------------------------------------------------- rewriting


def _is_upsampling_convtranspose(n: Any, consts: dict[str, np.ndarray]) -> bool:
    if n.op_type != "ConvTranspose" or n.input[1] not in consts or (len(n.input) > 2 and n.input[2] not in consts):
        return False
    a = _attrs(n)
    return (consts[n.input[1]].ndim == 4 and a.get("kernel_shape") == [3, 3] and a.get("strides") == [2, 2]
            and a.get("pads") == [1, 1, 1, 1] and a.get("output_padding") == [1, 1] and _plain_2d(a)
            and "output_shape" not in a)


# ------------------------------------------------------------------------------------- rewriting


def _add_init(g: Any, name: str, value: np.ndarray) -> str:
    from onnx import numpy_helper

    g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name))
    return name


def polyphase_conv_weight(w: np.ndarray) -> np.ndarray:
    """Weights of the stride-1 ``k x k`` conv ``w`` [Co, Ci, k, k] applied to SpaceToDepth(2) input.

    Output channel ``(ah*2 + aw)*Co + co`` is output phase (ah, aw) (DepthToSpace DCR order); input
    channel ``(rh*2 + rw)*Ci + ci`` is SpaceToDepth's order. Tap (qh, qw) of the ``t x t`` kernel,
    t = (k+1)//2, reads original offset ``kh = 2*qh + rh - ah`` (zero where outside 0..k-1).
    """
    co, ci, k, _ = w.shape
    t = (k + 1) // 2
    out = np.zeros((2, 2, co, 2, 2, ci, t, t), np.float64)
    for ah in range(2):
        for aw in range(2):
            for rh in range(2):
                for rw in range(2):
                    for qh in range(t):
                        for qw in range(t):
                            kh, kw = 2 * qh + rh - ah, 2 * qw + rw - aw
                            if 0 <= kh < k and 0 <= kw < k:
                                out[ah, aw, :, rh, rw, :, qh, qw] = w[:, :, kh, kw]
    return out.reshape(4 * co, 4 * ci, t, t).astype(np.float32)




def subpixel_convtranspose_weight(w: np.ndarray) -> np.ndarray:
    """Weights of a 2x2 conv (pads: one zero row/column at the end) giving the four output phases
    of ConvTranspose(k3, s2, p1, op1) with weight ``w`` [Ci, Co, 3, 3], in DepthToSpace DCR order.

    1-D: y[2m] = x[m] w[1];  y[2m+1] = x[m] w[2] + x[m+1] w[0].
    """
    ci, co = w.shape[:2]
    tap = {(0, 0): 1, (0, 1): None, (1, 0): 2, (1, 1): 0}  # (phase, tap) -> ConvTranspose kernel index
    out = np.zeros((2, 2, co, ci, 2, 2), np.float32)
    for ph in range(2):
        for pw in range(2):
            for u in range(2):
                for v in range(2):
                    kh, kw = tap[(ph, u)], tap[(pw, v)]
                    if kh is not None and kw is not None:
                        out[ph, pw, :, :, u, v] = w[:, :, kh, kw].T
    return out.reshape(4 * co, ci, 2, 2)


def _bias(n: Any, consts: dict[str, np.ndarray], count: int) -> np.ndarray:
    return consts[n.input[2]] if len(n.input) > 2 and n.input[2] else np.zeros(count, np.float32)


def _rewrite_tail(n: Any, consts: dict[str, np.ndarray], g: Any, act: Any | None) -> list[Any]:
    from onnx import helper

    w = consts[n.input[1]]
    co, t = w.shape[0], (w.shape[2] + 1) // 2
    base = n.name or n.output[0]
    wn = _add_init(g, f"{base}/polyphase_w", polyphase_conv_weight(w))
    bn = _add_init(g, f"{base}/polyphase_b", np.tile(_bias(n, consts, co), 4))
    s2d, phases = f"{base}/s2d_out", f"{base}/phases"
    nodes = [
        helper.make_node("SpaceToDepth", [n.input[0]], [s2d], name=f"{base}/s2d", blocksize=2),
        helper.make_node("Conv", [s2d, wn, bn], [phases], name=f"{base}/polyphase", kernel_shape=[t, t],
                         pads=[0, 0, 0, 0], strides=[1, 1]),
    ]
    final = n.output[0]
    if act is not None:
        act_out = f"{base}/phases_act"
        moved = helper.make_node(act.op_type, [phases], [act_out], name=act.name or f"{base}/act")
        moved.attribute.extend(act.attribute)
        nodes.append(moved)
        phases, final = act_out, act.output[0]
    nodes.append(helper.make_node("DepthToSpace", [phases], [final], name=f"{base}/d2s", blocksize=2, mode="DCR"))
    return nodes




# ----------------------------------------------------------------- phase tail (ConvT ... Conv7x7)


def _find_phase_tail_chains(g: Any, nodes: list[Any], consts: dict[str, np.ndarray],
                            consumers: dict[str, list[Any]], opset: int) -> list[list[Any]]:
    """ConvTranspose(k3,s2) -> InstanceNorm -> Relu -> Pad(reflect) -> tail Conv [-> activation], each
    node feeding only the next: the generator's last up-sampling stage and output conv."""
    chains = []
    outputs = {o.name for o in g.output}

    def only_user(n: Any, op: str) -> Any | None:
        users = consumers.get(n.output[0], [])
        if len(users) == 1 and users[0].op_type == op and n.output[0] not in outputs:
            return users[0]
        return None

    for n in nodes:
        if not _is_upsampling_convtranspose(n, consts):
            continue
        inorm = only_user(n, "InstanceNormalization")
        relu = inorm is not None and only_user(inorm, "Relu")
        pad = relu and only_user(relu, "Pad")
        conv = pad and only_user(pad, "Conv")
        if not conv or not all(name in consts for name in inorm.input[1:3]):
            continue
        k = consts[conv.input[1]].shape[-1] if conv.input[1] in consts else 0
        if not (_is_tail_conv(conv, consts) and _reflect_pad_amount(pad, consts, g, opset) == (k - 1) // 2):
            continue
        chain = [n, inorm, relu, pad, conv]
        act = _sole_activation(conv, consumers, g)
        chains.append(chain + ([act] if act is not None else []))
    return chains


def _reflect_pad_amount(pad: Any, consts: dict[str, np.ndarray], g: Any, opset: int) -> int | None:
    """p for a reflect Pad of p on all four spatial sides of NCHW (and nothing else), else None."""
    mode = _attrs(pad).get("mode", b"constant")
    if mode not in (b"reflect", "reflect") or len(pad.input) < 2:
        return None
    value = consts.get(pad.input[1])
    if value is None:
        value = _fold(g, pad.input[1], opset)  # the exporter computes pads with a small constant subgraph
    if value is None:
        return None
    pads = [int(v) for v in np.asarray(value).ravel()]
    if len(pads) != 8 or pads[:2] != [0, 0] or pads[4:6] != [0, 0] or len({pads[2], pads[3], pads[6], pads[7]}) != 1:
        return None
    return pads[2]


def _fold(g: Any, name: str, opset: int) -> np.ndarray | None:
    """Evaluate ``name`` if it depends on constants only (onnx's reference evaluator), else None."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    producers = {o: n for n in g.node for o in n.output}
    init_names = {i.name for i in g.initializer}
    needed, stack, seen = [], [name], set()
    while stack:
        t = stack.pop()
        if t in seen or t in init_names or not t:
            continue
        seen.add(t)
        n = producers.get(t)
        if n is None or len(needed) > 64:
            return None  # a graph input, or not a small constant subgraph
        needed.append(n)
        stack.extend(n.input)
    order = [n for n in g.node if any(n is m for m in needed)]
    used = {i for n in order for i in n.input}
    inits = [i for i in g.initializer if i.name in used]
    sub = helper.make_graph(order, "fold", [], [helper.make_tensor_value_info(name, 0, None)], inits)
    model = helper.make_model(sub, opset_imports=[helper.make_opsetid("", opset)])
    try:
        return np.asarray(ReferenceEvaluator(model).run(None, {})[0])
    except Exception:  # noqa: BLE001 - anything unexpected: just don't rewrite
        return None


def phase_plan(k: int, p: int) -> tuple[int, list[int], dict[tuple[int, int, int], int]]:
    """How a k-tap conv over a reflect-p-padded signal reads the signal's two polyphase components.

    Output phase a at m reads x[refl(2m + a + kk - p)]; with i = 2(m + q) + r that is component r at
    offset q. Returns T (taps per component), the start offset s_r of each extended component, and
    {(a, r, t): kk} mapping tap t of component r for output phase a to the original tap kk.
    """
    qs: dict[int, list[int]] = {0: [], 1: []}
    for a in range(2):
        for kk in range(k):
            off = a + kk - p
            qs[off % 2].append(off // 2)
    starts = [min(qs[0]), min(qs[1])]
    taps = max(max(qs[r]) - starts[r] + 1 for r in range(2))
    table = {}
    for a in range(2):
        for kk in range(k):
            off = a + kk - p
            r = off % 2
            table[(a, r, off // 2 - starts[r])] = kk
    return taps, starts, table


def phase_conv_weight(w: np.ndarray, p: int) -> np.ndarray:
    """Weights for the tail conv reading the four extended components, channel ``(rh*2+rw)*Ci + ci``;
    output channel ``(ah*2+aw)*Co + co`` (DepthToSpace DCR)."""
    co, ci, k, _ = w.shape
    taps, _, table = phase_plan(k, p)
    out = np.zeros((2, 2, co, 2, 2, ci, taps, taps), np.float64)
    for (ah, rh, th), kh in table.items():
        for (aw, rw, tw), kw in table.items():
            out[ah, aw, :, rh, rw, :, th, tw] = w[:, :, kh, kw]
    return out.reshape(4 * co, 4 * ci, taps, taps).astype(np.float32)


def _extension_rows(r: int, start: int, length_extra: int) -> tuple[list[int], list[int]]:
    """Source rows of component r, as negative-from-end or from-start indices, for the extended
    component E_r[q] = x_r[refl(2q + r) // 2], q = start .. h - 1 + length_extra + start."""
    head = [(-2 * q - r) // 2 for q in range(start, 0)]  # reflect about 0 keeps the parity
    tail_count = length_extra + start  # rows past h - 1
    tail = [-(d + 1 + r) for d in range(tail_count)]  # reflect about H - 1 (H even) keeps it too
    return head, tail


def _rewrite_phase_tail(chain: list[Any], consts: dict[str, np.ndarray], g: Any) -> list[Any]:
    """The last up-sampling stage and output conv computed on the 2x2 polyphase components.

    ConvTranspose becomes a 2x2 conv producing the four output phases (channel c*4 + phase), the
    InstanceNorm runs on them unchanged (a Reshape to [N, C, 4hw]: same statistics), and the
    reflect Pad + k x k conv become, per component, a Slice/Concat extension (reflection keeps the
    row parity, so each component only needs its own rows) and one conv over all four. Nothing is
    interleaved at full resolution except the 3-channel output (one DepthToSpace).
    """
    from onnx import helper

    convt, inorm, _relu, _pad, conv = chain[:5]
    act = chain[5] if len(chain) > 5 else None
    base = conv.name or conv.output[0]
    wt = consts[convt.input[1]]
    c = wt.shape[1]
    k = consts[conv.input[1]].shape[-1]
    p = (k - 1) // 2
    taps, starts, _ = phase_plan(k, p)
    # 1. ConvTranspose -> 2x2 conv, output channel c*4 + (ph*2 + pw)
    ksub = subpixel_convtranspose_weight(wt).reshape(4, c, -1, 2, 2).transpose(1, 0, 2, 3, 4).reshape(4 * c, -1, 2, 2)
    wn = _add_init(g, f"{base}/pt_up_w", ksub)
    bn = _add_init(g, f"{base}/pt_up_b", np.repeat(_bias(convt, consts, c), 4))
    shape3 = _add_init_i64(g, f"{base}/pt_shape3", [0, c, -1])
    nodes = [
        helper.make_node("Conv", [convt.input[0], wn, bn], [f"{base}/pt_up"], name=f"{base}/pt_up", kernel_shape=[2, 2],
                         pads=[0, 0, 1, 1]),
        helper.make_node("Shape", [f"{base}/pt_up"], [f"{base}/pt_up_shape"], name=f"{base}/pt_up_shape"),
        helper.make_node("Reshape", [f"{base}/pt_up", shape3], [f"{base}/pt_flat"], name=f"{base}/pt_flat"),
        # 2. InstanceNorm over each channel's four phases together = over the full-resolution plane
        helper.make_node("InstanceNormalization", [f"{base}/pt_flat", inorm.input[1], inorm.input[2]], [f"{base}/pt_in"],
                         name=f"{base}/pt_in", epsilon=_attrs(inorm).get("epsilon", 1e-5)),
        helper.make_node("Relu", [f"{base}/pt_in"], [f"{base}/pt_relu"], name=f"{base}/pt_relu"),
        helper.make_node("Reshape", [f"{base}/pt_relu", f"{base}/pt_up_shape"], [f"{base}/pt_phases"], name=f"{base}/pt_unflat"),
    ]
    # 3. per component: channel slice, extend rows (axis 2) and columns (axis 3) by reflection
    ext = []
    for rh in range(2):
        for rw in range(2):
            name = f"{base}/pt_x{rh}{rw}"
            nodes.append(_slice(g, f"{base}/pt_phases", name, axis=1, start=rh * 2 + rw, end=None, step=4))
            for axis, r in ((2, rh), (3, rw)):
                head, tail = _extension_rows(r, starts[r], taps - 1)
                parts = []
                for j, idx in enumerate(head + [None] + tail):
                    if idx is None:
                        parts.append(name)
                        continue
                    part = f"{name}_a{axis}_{j}"
                    nodes.append(_slice(g, name, part, axis=axis, start=idx, end=idx + 1 if idx != -1 else None, step=1))
                    parts.append(part)
                out = f"{name}_e{axis}"
                nodes.append(helper.make_node("Concat", parts, [out], name=out, axis=axis))
                name = out
            ext.append(name)
    nodes.append(helper.make_node("Concat", ext, [f"{base}/pt_ext"], name=f"{base}/pt_ext", axis=1))
    # 4. one conv over the four extended components -> output phases, activation, interleave
    w2 = _add_init(g, f"{base}/pt_w", phase_conv_weight(consts[conv.input[1]], p))
    b2 = _add_init(g, f"{base}/pt_b", np.tile(_bias(conv, consts, consts[conv.input[1]].shape[0]), 4))
    phases = f"{base}/pt_out_phases"
    nodes.append(helper.make_node("Conv", [f"{base}/pt_ext", w2, b2], [phases], name=f"{base}/pt_conv",
                                  kernel_shape=[taps, taps]))
    final = conv.output[0]
    if act is not None:
        moved = helper.make_node(act.op_type, [phases], [f"{phases}_act"], name=act.name or f"{base}/pt_act")
        moved.attribute.extend(act.attribute)
        nodes.append(moved)
        phases, final = f"{phases}_act", act.output[0]
    nodes.append(helper.make_node("DepthToSpace", [phases], [final], name=f"{base}/pt_d2s", blocksize=2, mode="DCR"))
    return nodes


def _add_init_i64(g: Any, name: str, values: list[int]) -> str:
    from onnx import numpy_helper

    g.initializer.append(numpy_helper.from_array(np.array(values, np.int64), name))
    return name


def _slice(g: Any, src: str, dst: str, *, axis: int, start: int, end: int | None, step: int) -> Any:
    from onnx import helper

    big = np.iinfo(np.int64).max
    names = [_add_init_i64(g, f"{dst}/{what}", [v]) for what, v in
             (("starts", start), ("ends", big if end is None else end), ("axes", axis), ("steps", step))]
    return helper.make_node("Slice", [src, *names], [dst], name=dst)


def _drop_unused_initializers(g: Any) -> None:
    """Remove Identity/Constant nodes and initializers nothing reads any more."""
    outputs = {o.name for o in g.output}
    while True:
        used = {name for n in g.node for name in n.input} | outputs
        live = [n for n in g.node if n.op_type not in ("Identity", "Constant") or any(o in used for o in n.output)]
        if len(live) == len(g.node):
            break
        del g.node[:]
        g.node.extend(live)
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)


def _contract(model: Any) -> OnnxContract | None:
    props = onnx_props(model)
    return OnnxContract.from_props(props) if METADATA_KEY in props else None


def _record(model: Any, applied: list[str]) -> None:
    contract = _contract(model)
    if contract is None:
        return
    rewrites = tuple(sorted(set(contract.graph_rewrites) | set(applied)))
    set_onnx_props(model, {**onnx_props(model), **dataclasses.replace(contract, graph_rewrites=rewrites).to_props()})
