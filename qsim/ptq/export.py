"""QDQ ONNX export of a PTQ'd sequential network.

The float graph of `qsim.nets.onnx_io.export_onnx` (Conv / Gemm / Relu / MaxPool / Flatten) with
every MAC layer's input as QuantizeLinear→DequantizeLinear (uint8/int8 activations, the layer's
calibrated scale and zero point), its weight as an int8 initializer (the PTQ codes) behind a
per-axis DequantizeLinear, and its bias as int32 in units s_in·s_w (the integer bias qsim's
pipeline adds) behind DequantizeLinear. Linear layers are written as 1×1 convolutions on an
(N, K, 1, 1) view so ONNX Runtime fuses every layer to QLinearConv with per-channel scales.
The last layer's output is quantized too (`logits` ActParams): ORT's fused QLinearConv then
returns integer codes that must equal qsim's `int_forward(..., logits_act=...)` exactly.
"""

from __future__ import annotations

import numpy as np

from qsim.nets.models import Conv, Flatten, Linear, MaxPool


def export_qdq(net, prep, acts: dict, logits_act, path=None):
    """A QDQ `onnx.ModelProto` of the PTQ'd network (8-bit activations, ≤ 8-bit per-tensor/channel weights)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from qsim.nets.quant_exec import int_bias

    arch = net.arch
    for op in arch.mac_ops:
        qt = prep.qweights[op.name]
        if qt.spec.granularity not in ("tensor", "channel") or qt.has_zero_point or qt.qmin < -128 or qt.qmax > 127:
            raise ValueError(f"QDQ export: layer {op.name!r} needs symmetric per-tensor/per-channel weights of at most "
                             f"8 bits, got {qt.spec.label()}")
    for a in list(acts.values()) + [logits_act]:
        if (a.qmin, a.qmax) not in ((0, 255), (-128, 127)):
            raise ValueError("QDQ export: activations must be 8-bit (uint8 or int8 codes)")
    nodes, inits = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def a_type(a):
        return np.uint8 if a.qmin == 0 else np.int8

    def qdq(x, a, tag, dq=True):
        s = const(f"{tag}.s", np.float32(a.scale))
        z = const(f"{tag}.z", a_type(a)(a.zero_point))
        nodes.append(helper.make_node("QuantizeLinear", [x, s, z], [f"{tag}.q"], name=f"{tag}.Q"))
        if not dq:
            return f"{tag}.q"
        nodes.append(helper.make_node("DequantizeLinear", [f"{tag}.q", s, z], [f"{tag}.dq"], name=f"{tag}.DQ"))
        return f"{tag}.dq"

    macs = arch.mac_ops
    nxt = {op.name: (acts[macs[i + 1].name] if i + 1 < len(macs) else logits_act) for i, op in enumerate(macs)}
    cur = "input"
    for op in arch.ops:
        if isinstance(op, (Conv, Linear)):
            a = acts[op.name]
            qt = prep.qweights[op.name]
            w_shape = prep.params[f"{op.name}.w"].shape
            if isinstance(op, Linear):
                nodes.append(helper.make_node("Reshape", [cur, const(f"{op.name}.shape4", np.array([0, -1, 1, 1]))],
                                              [f"{op.name}.in4"], name=f"{op.name}.reshape"))
                cur = f"{op.name}.in4"
                w_shape = w_shape + (1, 1)
            x = qdq(cur, a, f"{op.name}.in")
            ws = np.broadcast_to(qt.scale, (w_shape[0],)).astype(np.float32)
            wq = const(f"{op.name}.wq", qt.q.astype(np.int8).reshape(w_shape))
            nodes.append(helper.make_node("DequantizeLinear", [wq, const(f"{op.name}.ws", ws),
                                                               const(f"{op.name}.wz", np.zeros(len(ws), np.int8))],
                                          [f"{op.name}.w"], name=f"{op.name}.wDQ", axis=0))
            bq = int_bias(prep.biases[op.name], a.scale, qt.scale).astype(np.int32)
            bs = (np.float32(a.scale) * ws).astype(np.float32)
            nodes.append(helper.make_node("DequantizeLinear", [const(f"{op.name}.bq", np.broadcast_to(bq, ws.shape).copy()),
                                                               const(f"{op.name}.bs", bs),
                                                               const(f"{op.name}.bz", np.zeros(len(ws), np.int32))],
                                          [f"{op.name}.b"], name=f"{op.name}.bDQ", axis=0))
            attrs = ({"kernel_shape": list(op.kernel), "strides": list(op.stride), "group": op.groups,
                      "pads": [op.padding[0], op.padding[1], op.padding[0], op.padding[1]]} if isinstance(op, Conv)
                     else {"kernel_shape": [1, 1]})
            nodes.append(helper.make_node("Conv", [x, f"{op.name}.w", f"{op.name}.b"], [f"{op.name}.y"], name=op.name,
                                          **attrs))
            cur = f"{op.name}.y"
            if op.relu:
                nodes.append(helper.make_node("Relu", [cur], [f"{op.name}.r"], name=f"{op.name}.relu"))
                cur = f"{op.name}.r"
            last = op is macs[-1]
            cur = qdq(cur, nxt[op.name], f"{op.name}.out", dq=not last)
            if isinstance(op, Linear) and not last:
                nodes.append(helper.make_node("Flatten", [cur], [f"{op.name}.flat"], name=f"{op.name}.flatten"))
                cur = f"{op.name}.flat"
        elif isinstance(op, MaxPool):
            nodes.append(helper.make_node("MaxPool", [cur], [f"{op.name}.y"], name=op.name,
                                          kernel_shape=[op.size, op.size], strides=[op.size, op.size]))
            cur = f"{op.name}.y"
        elif isinstance(op, Flatten):
            nodes.append(helper.make_node("Flatten", [cur], [f"{op.name}.y"], name=op.name, axis=1))
            cur = f"{op.name}.y"
    nodes.append(helper.make_node("Flatten", [cur], ["logits_q"], name="out_flatten", axis=1))
    out_t = TensorProto.UINT8 if logits_act.qmin == 0 else TensorProto.INT8
    graph = helper.make_graph(nodes, f"{net.name}_qdq",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *arch.input_shape])],
                              [helper.make_tensor_value_info("logits_q", out_t, ["N", macs[-1].weight_shape[0]])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="qsim.ptq")
    model.ir_version = 8
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, str(path))
    return model
