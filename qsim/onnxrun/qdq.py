"""Fuse QDQ patterns into QLinearConv / QLinearMatMul, as ONNX Runtime does when it deploys.

`DequantizeLinear → Conv|MatMul [→ Relu] → QuantizeLinear` becomes one integer node, so a
QDQ model runs through qsim's integer kernels (accumulator width, pair saturation) and
matches ORT with its default graph optimizations. Only the patterns ORT's CPU provider
fuses with the same arithmetic are rewritten; anything else is left as written:
  * x and y per-tensor; weights (a constant initializer) per-tensor, or per output
    channel (axis 0 for Conv, the last axis for MatMul); type triples (u8, u8|s8, u8) and (s8, s8, s8);
  * Conv bias: absent, DequantizeLinear of an int32 initializer, or a float initializer
    quantized to int32 as rne(fl32(b / fl32(x_scale · w_scale))) (this formula matched ORT
    on random data; bias values exactly between two integers were not separated);
  * a Relu between the op and its QuantizeLinear is dropped only when the zero point is
    the type's minimum (the clamp then does the same).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

F32 = np.float32
# ORT's x86 CPU provider fuses only uint8 activations (int8 ones stay as written there).
TYPE_TRIPLES = {("uint8", "uint8", "uint8"), ("uint8", "int8", "uint8")}
QMIN = {"uint8": 0, "int8": -128}


def _reads(node) -> list[str]:
    """A node's inputs and the outer-scope tensors its subgraphs (If branches) read by name."""
    from qsim.onnxrun.control_flow import _subgraphs, free_names

    names = list(node.input)
    for _, g in _subgraphs(node):
        names += free_names(g)
    return names


class _Graph:
    def __init__(self, model: onnx.ModelProto, nodes: list):
        g = model.graph
        self.inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.outputs = {o.name for o in g.output}
        self.producer = {t: n for n in nodes for t in n.output if t}
        self.consumers: dict[str, list] = {}
        for n in nodes:
            for t in _reads(n):
                if t:
                    self.consumers.setdefault(t, []).append(n)

    def const(self, name: str):
        return self.inits.get(name) if name else None

    def only_consumer(self, tensor: str):
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in self.outputs else None

    def dq(self, tensor: str):
        """(x, scale, zp names, scale array, zp array or None, attrs) of a DequantizeLinear, else None."""
        n = self.producer.get(tensor)
        if n is None or n.op_type != "DequantizeLinear" or n.domain not in ("", "ai.onnx"):
            return None
        return self._params(n)

    def _params(self, n):
        ins = list(n.input) + [""] * (3 - len(n.input))
        s, z = self.const(ins[1]), self.const(ins[2])
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if s is None or (ins[2] and z is None) or attrs.get("block_size", 0):
            return None
        return dict(x=ins[0], s=ins[1], z=ins[2], scale=s, zp=z, axis=int(attrs.get("axis", 1)), node=n)


def _per_tensor(p) -> bool:
    return p["scale"].size == 1 and (p["zp"] is None or p["zp"].size == 1)


def _quantize_output(g: _Graph, out: str):
    """The QuantizeLinear fed by `out` (directly, or through a removable Relu), with the Relu node."""
    user = g.only_consumer(out)
    relu = None
    if user is not None and user.op_type == "Relu":
        relu, user = user, g.only_consumer(user.output[0])
    if user is None or user.op_type != "QuantizeLinear":
        return None
    q = g._params(user)
    if q is None or not _per_tensor(q):
        return None
    ty = q["zp"].dtype.name if q["zp"] is not None else "uint8"
    if relu is not None and (ty not in QMIN or int(0 if q["zp"] is None else q["zp"].ravel()[0]) != QMIN[ty]):
        return None
    return q, relu, ty


def _input_dtype(model: onnx.ModelProto, g: _Graph, p) -> str | None:
    """Element type of a DequantizeLinear's code input (its zero point, initializer or graph input)."""
    if p["zp"] is not None:
        return p["zp"].dtype.name
    if p["x"] in g.inits:
        return g.inits[p["x"]].dtype.name
    for vi in list(model.graph.input) + list(model.graph.value_info):
        if vi.name == p["x"] and vi.type.tensor_type.elem_type:
            return np.dtype(helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)).name
    return None


def fuse_qdq(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of `model` with the fusable QDQ patterns rewritten; returns (model, fused node names)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph_nodes = list(model.graph.node)  # one wrapper per node, so id() identifies nodes below
    g = _Graph(model, graph_nodes)
    new_inits, replace, drop, fused = [], {}, set(), []
    for i, n in enumerate(graph_nodes):
        if n.op_type not in ("Conv", "MatMul") or n.domain not in ("", "ai.onnx"):
            continue
        name = n.name or f"{n.op_type}_{i}"
        x, w = g.dq(n.input[0]), g.dq(n.input[1])
        out = _quantize_output(g, n.output[0])
        if x is None or w is None or out is None or not _per_tensor(x) or w["x"] not in g.inits:
            continue
        q, relu, ty = out
        types = (_input_dtype(model, g, x), g.inits[w["x"]].dtype.name, ty)
        if types not in TYPE_TRIPLES:
            continue
        wcodes = g.inits[w["x"]]
        if n.op_type == "Conv" and wcodes.ndim not in (3, 4):
            continue  # qsim's integer conv is 1-D or 2-D
        channel_axis = 0 if n.op_type == "Conv" else wcodes.ndim - 1  # Conv: output channels; MatMul: columns
        per_channel_ok = (wcodes.ndim >= 2 and w["axis"] % wcodes.ndim == channel_axis
                          and w["scale"].size == wcodes.shape[channel_axis])
        if not (_per_tensor(w) or per_channel_ok):
            continue
        zero = {}

        def zp_name(p, dtype, tag):
            if p["z"]:
                return p["z"]
            zname = f"{name}__qsim_{tag}_zero"
            zero[zname] = numpy_helper.from_array(np.zeros((), dtype), zname)
            return zname

        args = [x["x"], x["s"], zp_name(x, types[0], "x"), w["x"], w["s"], zp_name(w, types[1], "w"),
                q["s"], zp_name(q, types[2], "y")]
        if n.op_type == "Conv" and len(n.input) > 2 and n.input[2]:
            b = g.dq(n.input[2])
            if b is not None and b["x"] in g.inits and g.inits[b["x"]].dtype == np.int32:
                args.append(b["x"])
            elif n.input[2] in g.inits and g.inits[n.input[2]].dtype.kind == "f":
                s_b = F32(x["scale"].ravel()[0]) * w["scale"].astype(F32).ravel()
                bq = np.rint(g.inits[n.input[2]].astype(F32) / s_b)
                bname = f"{name}__qsim_bias_q"
                zero[bname] = numpy_helper.from_array(
                    np.clip(bq, -(2**31), 2**31 - 1).astype(np.int32).reshape(-1), bname)
                args.append(bname)
            else:
                continue
        op = "QLinearConv" if n.op_type == "Conv" else "QLinearMatMul"
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        fused_node = helper.make_node(op, args, [q["node"].output[0]], name=name, **attrs)
        replace[id(q["node"])] = fused_node
        drop.update({id(n)} | ({id(relu)} if relu is not None else set()))
        new_inits.extend(zero.values())
        fused.append(name)
    nodes = [replace.get(id(n), n) for n in graph_nodes if id(n) not in drop]
    nodes = _prune_dead(nodes, {o.name for o in model.graph.output})
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(new_inits)
    return model, fused


def _prune_dead(nodes, graph_outputs: set) -> list:
    """Drop DequantizeLinear nodes whose outputs nobody reads any more."""
    while True:
        used = {t for n in nodes for t in _reads(n)} | graph_outputs
        keep = [n for n in nodes if n.op_type != "DequantizeLinear" or any(t in used for t in n.output)]
        if len(keep) == len(nodes):
            return keep
        nodes = keep
