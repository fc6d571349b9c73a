"""ONNX import: layer shapes, weights and quantization parameters of float, QDQ and QOperator models.

Why this shape: cost studies need only the `Workload`; the numerics side (an executor re-running an exported
network) also needs weights, biases, conv attributes and the QDQ/QLinear parameters, so `import_onnx` returns
all of them keyed by layer name, and `from_onnx` returns just the workload.

Conventions
- A weight is a constant: an initializer, a Constant node, or folded from constants (DequantizeLinear,
  QuantizeLinear, Transpose, Reshape, Cast, ConstantOfShape). Gemm/MatMul with a constant 2-D operand is
  `Dense` (batch = product of the leading output dims); with two activations it is `MatMul`. A MatMul followed
  by an Add of a constant vector (how exporters split a Linear) becomes one Dense with that bias.
- Weights are float32 in the IR's layout: Dense (out_features, in_features) so y = x·Wᵀ + b (an ONNX MatMul
  operand (K, N) is transposed; Gemm's `alpha` is folded into the float weights and `beta` into the bias),
  Conv2d OIHW (1-D convs become H = 1). Quantized weights (QDQ DequantizeLinear of an integer initializer,
  QLinearConv/QLinearMatMul/QGemm, ConvInteger/MatMulInteger) are kept as stored in `int_weights` (same
  layout), and their float value (q − zp)·scale in `weights` where a scale exists (the *Integer ops have none).
- `quant_params[layer]` keys: `x_*` input activation, `w_*` weight, `y_*` output, each `scale`/`zero_point`
  as numpy arrays; `w_axis` (the axis of the IR layout the weight scales run along: 0 = output channels) and,
  for blocked scales, `w_block_size`; `bias_int` for int32 biases. Activation×activation MatMul layers use
  `a_*`/`b_*` for their two operands. x comes from the DequantizeLinear/QuantizeLinear/QLinear op producing the
  input (followed through reshapes and max pooling), y from the op's own QLinear output parameters or from a
  QuantizeLinear consuming the output (directly or after one Relu/Clip).
- ORT's com.microsoft quantized ops (QGemm, QLinearAdd/Mul/Sigmoid/LeakyRelu, QLinearGlobalAveragePool) are
  supported; ONNX has no schema for them, so their output shapes are computed here.
- Asymmetric pads (e.g. TF "SAME" (0, 1)) cannot be written in the IR's symmetric `padding`: the IR gets
  padding = min(begin, end) per axis and `input_hw` grows by |end − begin| (the extra zero rows/columns), so
  `output_hw` and the MACs are exact; the true pads are in `attributes[layer]["pads"]` (ONNX order). Pooling
  with `ceil_mode` grows `input_hw` the same way until the output size matches ONNX's.
- Shape-only ops (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout, Shape, Size, Constant) and the
  quantize markers are not layers; data movers (Transpose, Concat, Slice, Gather, Pad, …) become Elementwise
  "copy". Anything else unsupported also becomes "copy", with a `warnings.warn` naming it.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qsim.workload.layers import (
    Conv2d, Dense, Elementwise, Layer, LayerNorm, MatMul, Pool2d, Softmax, Workload,
)

_MARKERS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
_FREE = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Shape", "Constant", "Size"}
_COPY = {"Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements", "Cast", "Pad", "Expand", "Tile",
         "DepthToSpace", "SpaceToDepth", "Resize", "Upsample"}
_ELTWISE = {"Relu": "relu", "LeakyRelu": "relu", "PRelu": "relu", "Add": "add", "Sub": "add", "Sum": "add",
            "Mul": "mul", "Div": "mul", "BatchNormalization": "mul", "Sigmoid": "sigmoid",
            "HardSigmoid": "sigmoid", "Tanh": "tanh", "Gelu": "gelu", "Erf": "gelu", "HardSwish": "silu",
            "Clip": "clip"}
_ELTWISE.update({"QLinearAdd": "add", "QLinearMul": "mul", "QLinearSigmoid": "sigmoid", "QLinearLeakyRelu": "relu"})
_CONVS = {"Conv", "ConvInteger", "QLinearConv"}
_MATMULS = {"Gemm", "MatMul", "MatMulInteger", "QLinearMatMul", "QGemm"}  # QGemm: ORT com.microsoft
_POOLS = {"MaxPool": "max", "AveragePool": "avg", "GlobalMaxPool": "max", "GlobalAveragePool": "avg",
          "QLinearGlobalAveragePool": "avg"}
# Input positions of the quantization parameters of QOperator / integer ops (ONNX and ORT com.microsoft).
_QLINEAR = dict(x_scale=1, x_zero_point=2, w_scale=4, w_zero_point=5, y_scale=6, y_zero_point=7)
_QUNARY = dict(x_scale=1, x_zero_point=2, y_scale=3, y_zero_point=4)
_QBINARY = dict(a_scale=1, a_zero_point=2, b_scale=4, b_zero_point=5, y_scale=6, y_zero_point=7)
_QPARAMS = {
    "QLinearConv": _QLINEAR, "QLinearMatMul": _QLINEAR, "QGemm": {**_QLINEAR, "y_scale": 7, "y_zero_point": 8},
    "ConvInteger": dict(x_zero_point=2, w_zero_point=3), "MatMulInteger": dict(x_zero_point=2, w_zero_point=3),
    "QLinearAdd": _QBINARY, "QLinearMul": _QBINARY, "QLinearSigmoid": _QUNARY, "QLinearLeakyRelu": _QUNARY,
    "QLinearGlobalAveragePool": _QUNARY,
}


@dataclass
class OnnxImport:
    """Everything read from one ONNX model, keyed by layer name (see the module docstring for layouts).

    Arrays may be read-only views of the model's tensors: copy before modifying in place.
    """

    workload: Workload
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    biases: dict[str, np.ndarray] = field(default_factory=dict)
    int_weights: dict[str, np.ndarray] = field(default_factory=dict)
    quant_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    inputs: dict[str, tuple[int, ...]] = field(default_factory=dict)
    outputs: dict[str, tuple[int, ...]] = field(default_factory=dict)


def from_onnx(path_or_model, batch: int | None = None, dims: dict[str, int] | None = None) -> Workload:
    """The layer shapes of an ONNX model (file path or `onnx.ModelProto`)."""
    return import_onnx(path_or_model, batch=batch, dims=dims).workload


def import_onnx(path_or_model, batch: int | None = None, dims: dict[str, int] | None = None) -> OnnxImport:
    """Read an ONNX model into the layer IR plus its weights, biases and quantization parameters.

    `batch` fixes a symbolic (or unset) leading dimension of the graph inputs; `dims` fixes other symbolic
    dimensions by name, e.g. `{"seq": 128}`.
    """
    import onnx

    model, label = _load(onnx, path_or_model)
    _fix_dims(model, label, batch, dims or {})
    model = _infer(onnx, model, label)
    return _Importer(onnx, model, label).run()


# ------------------------------------------------------------------------------------ loading, shapes


def _load(onnx, path_or_model):
    if isinstance(path_or_model, onnx.ModelProto):
        model, label = onnx.ModelProto(), f"model {path_or_model.graph.name or '<unnamed>'!r}"
        model.CopyFrom(path_or_model)  # never modify the caller's model
    elif isinstance(path_or_model, (str, os.PathLike)):
        label = f"ONNX file {os.fspath(path_or_model)!r}"
        if not os.path.isfile(path_or_model):
            raise FileNotFoundError(f"{label} does not exist")
        try:
            model = onnx.load(os.fspath(path_or_model))
        except Exception as exc:  # protobuf raises its own DecodeError types
            raise ValueError(f"{label} is not an ONNX model: {exc}") from exc
    else:
        raise TypeError(f"expected a path or onnx.ModelProto, got {type(path_or_model).__name__}")
    if model.ir_version <= 0 or not model.opset_import or not model.graph.node:
        raise ValueError(f"{label} is not an ONNX model (no IR version, opset or graph nodes)")
    return model, label


def _fix_dims(model, label, batch, dims):
    if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    initializers = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers or not value.type.tensor_type.HasField("shape"):
            continue
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                continue
            if dim.dim_param in dims:
                dim.dim_value = int(dims[dim.dim_param])
            elif axis == 0 and batch is not None:
                dim.dim_value = batch
            else:
                what = f"symbolic dimension {dim.dim_param!r}" if dim.dim_param else "an unknown dimension"
                raise ValueError(
                    f"{label}: input tensor {value.name!r} has {what} at axis {axis}; shapes cannot be inferred. "
                    f"Pass batch= (axis 0) or dims={{'{dim.dim_param or 'name'}': value}}")


def _infer(onnx, model, label):
    """ONNX shape inference, plus the output shapes of ORT's com.microsoft quantized ops (no ONNX schema)."""
    for _ in range(len(model.graph.node) + 1):
        try:
            model = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
        except Exception as exc:
            raise ValueError(f"{label}: ONNX shape inference failed: {exc}") from exc
        g = model.graph
        known = {v.name: v for v in list(g.value_info) + list(g.input) + list(g.output)
                 if v.type.tensor_type.HasField("shape")
                 and all(d.HasField("dim_value") for d in v.type.tensor_type.shape.dim)}
        dims = {k: [d.dim_value for d in v.type.tensor_type.shape.dim] for k, v in known.items()}
        dims.update({t.name: list(t.dims) for t in g.initializer})
        added = False
        for node in g.node:
            if node.domain in ("", "ai.onnx") or not node.input or node.input[0] not in known:
                continue
            shape = _custom_shape(node, dims, _attrs(onnx, node))
            for out in node.output[:1]:
                if out and out not in known and shape is not None:
                    value = onnx.ValueInfoProto()
                    value.CopyFrom(known[node.input[0]])
                    value.name = out
                    del value.type.tensor_type.shape.dim[:]
                    for d in shape:
                        value.type.tensor_type.shape.dim.add().dim_value = int(d)
                    g.value_info.append(value)
                    added = True
        if not added:
            return model
    return model


def _custom_shape(node, dims, a) -> list[int] | None:
    """Output shape of a custom-domain op; unknown ops are assumed elementwise (shaped like input 0)."""
    ins = [dims.get(t) for t in node.input]
    op = node.op_type
    if op == "QGemm" and ins[0] and ins[3]:
        m = ins[0][1] if a.get("transA", 0) else ins[0][0]
        return [m, ins[3][0] if a.get("transB", 0) else ins[3][1]]
    if op in ("QLinearAdd", "QLinearMul") and ins[0] and len(ins) > 3 and ins[3]:
        return list(np.broadcast_shapes(tuple(ins[0]), tuple(ins[3])))
    if op == "QLinearGlobalAveragePool" and ins[0]:
        x = ins[0]
        return [x[0], *([1] * (len(x) - 2)), x[-1]] if a.get("channels_last", 0) else [*x[:2], *([1] * (len(x) - 2))]
    return ins[0]


def _attrs(onnx, node) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


# ------------------------------------------------------------------------------------------ importer


class _Importer:
    """One pass over the (topologically sorted) nodes: folds constants, records quant params, emits layers."""

    def __init__(self, onnx, model, label):
        from onnx import numpy_helper

        self.onnx, self.model, self.label = onnx, model, label
        g = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.const = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.dq: dict[str, dict] = {}        # constant tensor -> {"q", "scale", "zero_point", "axis"}
        self.act_q: dict[str, dict] = {}     # activation tensor -> {"scale", "zero_point"} of its DequantizeLinear
        self.shapes: dict[str, tuple] = {}
        self.symbolic: dict[str, str] = {}
        for v in list(g.value_info) + list(g.input) + list(g.output):
            if v.type.tensor_type.HasField("shape"):
                dims = v.type.tensor_type.shape.dim
                if all(d.HasField("dim_value") and d.dim_value > 0 for d in dims):
                    self.shapes[v.name] = tuple(int(d.dim_value) for d in dims)
                else:
                    self.symbolic[v.name] = str([d.dim_param or d.dim_value or "?" for d in dims])
        self.consumers: dict[str, list] = {}
        self.index = {node.output[0]: i for i, node in enumerate(g.node) if node.output}  # SSA: unique
        for node in g.node:
            for t in node.input:
                self.consumers.setdefault(t, []).append(node)
        self.result = OnnxImport(workload=Workload("empty"))
        self.layers: list[Layer] = []
        self.fused: set[int] = set()
        self.names: set[str] = set()
        self.unsupported: dict[str, int] = {}

    # ---- helpers
    def shape(self, tensor: str) -> tuple[int, ...]:
        if tensor in self.const:
            return tuple(self.const[tensor].shape)
        if tensor in self.shapes:
            return self.shapes[tensor]
        why = f"has dynamic dimensions {self.symbolic[tensor]}" if tensor in self.symbolic else "has no inferred shape"
        raise ValueError(f"{self.label}: tensor {tensor!r} {why}; give the inputs static shapes (batch=, dims=)")

    def is_const(self, tensor: str) -> bool:
        return tensor in self.const

    def arg(self, node, i):
        return node.input[i] if len(node.input) > i and node.input[i] else None

    def layer_name(self, node, index):
        base = node.name or f"{node.op_type}_{index}"
        name, k = base, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def run(self) -> OnnxImport:
        g, r = self.model.graph, self.result
        for index, node in enumerate(g.node):
            if index not in self.fused:
                self.visit(node, index)
        for op, count in self.unsupported.items():
            warnings.warn(f"{self.label}: unsupported ONNX op {op!r} ({count} node(s)) imported as a non-MAC "
                          f"'copy' layer", stacklevel=3)
        if not self.layers:
            raise ValueError(f"{self.label}: no layers found in the graph")
        init = set(self.const)
        r.inputs = {v.name: self.shape(v.name) for v in g.input if v.name not in init}
        r.outputs = {v.name: self.shape(v.name) for v in g.output}
        r.workload = Workload(g.name or "onnx", self.layers)
        return r

    def emit(self, layer, node, extra=None, quant=None):
        """Append a layer with its ONNX provenance: tensors, shapes, attributes; constants of non-MAC ops."""
        self.layers.append(layer)
        inputs = [t for t in node.input if t and not self.is_const(t)]
        attrs = {"op_type": node.op_type, "onnx_name": node.name, "inputs": inputs, "outputs": list(node.output),
                 "input_shapes": [self.shapes.get(t) for t in inputs], **_attrs(self.onnx, node), **(extra or {})}
        if not layer.is_mac:
            attrs["constants"] = {t: self.const[t] for t in node.input if t and self.is_const(t)}
        self.result.attributes[layer.name] = attrs
        quant = {k: v for k, v in (quant or {}).items() if v is not None}
        if quant:
            self.result.quant_params.setdefault(layer.name, {}).update(quant)

    # ---- dispatch
    def visit(self, node, index):
        op = node.op_type
        if all(not t or self.is_const(t) for t in node.input) and self.fold(node):
            return
        if op in ("DequantizeLinear", "QuantizeLinear"):  # the quantization grid of this tensor
            if self.qparams(node, 1, 2) is not None:
                self.act_q[node.output[0]] = self.qparams(node, 1, 2)
        elif op in _FREE and node.input and node.input[0] in self.act_q:
            self.act_q[node.output[0]] = self.act_q[node.input[0]]  # a reshape keeps the quantization
        elif op in _MARKERS or op in _FREE or all(not t or self.is_const(t) for t in node.input):
            return
        elif op in _CONVS:
            self.conv(node, self.layer_name(node, index))
        elif op in _MATMULS:
            self.matmul(node, self.layer_name(node, index))
        elif op in _POOLS:
            self.pool(node, self.layer_name(node, index))
        elif op in ("Softmax", "LogSoftmax"):
            self.softmax(node, self.layer_name(node, index))
        elif op == "LayerNormalization":
            self.layernorm(node, self.layer_name(node, index))
        elif op in _ELTWISE:
            self.eltwise(node, self.layer_name(node, index), self.eltwise_kind(node))
        else:
            if op not in _COPY:
                self.unsupported[op] = self.unsupported.get(op, 0) + 1
            self.eltwise(node, self.layer_name(node, index), "copy")

    # ---- constants and quantization parameters
    def fold(self, node) -> bool:
        """Evaluate a node on constants (weights behind DQ/Transpose/…); False if it is not foldable."""
        op, a, ins = node.op_type, _attrs(self.onnx, node), [self.const.get(t) for t in node.input if t]
        if op == "Constant":
            value = a.get("value")
            out = (self.onnx.numpy_helper.to_array(value) if value is not None
                   else np.asarray(next(iter(a.values()))))
        elif op == "DequantizeLinear":
            q, p = ins[0], self.qparams(node, 1, 2)
            out = ((q.astype(np.float64) - self._expand(p["zero_point"], q, p["axis"], p["block_size"]))
                   * self._expand(p["scale"], q, p["axis"], p["block_size"])).astype(p["scale"].dtype)
            self.dq[node.output[0]] = {"q": q, **p}
        elif op == "QuantizeLinear":
            x, p = ins[0], self.qparams(node, 1, 2)
            zp = p["zero_point"]
            info = np.iinfo(zp.dtype)
            q = (np.rint(x / self._expand(p["scale"], x, p["axis"], p["block_size"]))
                 + self._expand(zp, x, p["axis"], p["block_size"]))
            out = np.clip(q, info.min, info.max).astype(zp.dtype)
        elif op == "Transpose":
            perm = a.get("perm", list(range(ins[0].ndim))[::-1])
            out = np.transpose(ins[0], perm)
            src = self.dq.get(node.input[0])
            if src is not None:
                axis = perm.index(src["axis"] % len(perm)) if src["scale"].size > 1 else src["axis"]
                moved = {"q": np.transpose(src["q"], perm), "axis": axis}
                if src["scale"].ndim == len(perm):  # blocked parameters have the weight's rank
                    moved.update(scale=np.transpose(src["scale"], perm),
                                 zero_point=np.transpose(src["zero_point"], perm))
                self.dq[node.output[0]] = {**src, **moved}
        elif op == "ConstantOfShape":
            value = a.get("value")
            fill = self.onnx.numpy_helper.to_array(value) if value is not None else np.zeros(1, np.float32)
            out = np.broadcast_to(fill.reshape(-1)[0], tuple(int(d) for d in ins[0]))  # a view: no memory
        elif op == "Reshape" and len(ins) == 2:
            shape = [int(d) for d in ins[1]]
            if not a.get("allowzero", 0):  # 0 copies the input dimension
                shape = [ins[0].shape[i] if d == 0 else d for i, d in enumerate(shape)]
            out = ins[0].reshape(shape)
        elif op in ("Identity", "Cast") and ins[0] is not None:
            out = ins[0] if op == "Identity" else ins[0].astype(
                self.onnx.helper.tensor_dtype_to_np_dtype(a["to"]))
            if op == "Identity" and node.input[0] in self.dq:
                self.dq[node.output[0]] = self.dq[node.input[0]]
        else:
            return False
        self.const[node.output[0]] = np.asarray(out)
        return True

    def qparams(self, node, si, zi) -> dict | None:
        """Scale, zero point (default uint8 0) and axis of a Q/DQ node; None when the scale is computed at run
        time (dynamic quantization), which a static import cannot know."""
        if self.arg(node, si) not in self.const:
            return None
        scale = np.asarray(self.const[node.input[si]])
        zp_name = self.arg(node, zi)
        zp = np.asarray(self.const[zp_name]) if zp_name in self.const else np.zeros(scale.shape, np.uint8)
        a = _attrs(self.onnx, node)
        return {"scale": scale, "zero_point": zp, "axis": a.get("axis", 1), "block_size": a.get("block_size", 0)}

    @staticmethod
    def _expand(p, x, axis, block=0):
        """Broadcast a per-tensor/per-axis/blocked (`block` elements per value) parameter against x."""
        if p.size == 1 or x.ndim == 0:
            return p.reshape(())
        axis = axis % x.ndim
        if p.ndim == x.ndim:  # blocked (opset 21): repeat each block value; the last block may be ragged
            p = np.repeat(p, block or -(-x.shape[axis] // p.shape[axis]), axis=axis)
            return np.take(p, np.arange(x.shape[axis]), axis=axis)
        shape = [1] * x.ndim
        shape[axis] = p.size
        return p.reshape(shape)

    def output_q(self, tensor) -> dict:
        """y params: the tensor's own (QOperator), or a QuantizeLinear consuming it, directly or after one Relu/Clip."""
        if tensor in self.act_q:
            return {"y_scale": self.act_q[tensor]["scale"], "y_zero_point": self.act_q[tensor]["zero_point"]}
        for node in self.consumers.get(tensor, []):
            if node.op_type == "QuantizeLinear" and self.qparams(node, 1, 2) is not None:
                p = self.qparams(node, 1, 2)
                return {"y_scale": p["scale"], "y_zero_point": p["zero_point"]}
            if node.op_type in ("Relu", "Clip") and len(self.consumers.get(tensor, [])) == 1:
                return self.output_q(node.output[0])
        return {}

    def act_params(self, node) -> dict:
        """x/y params of a non-MAC node: its QLinear inputs, else the DQ before and the Q after it."""
        acts = [t for t in node.input if t and not self.is_const(t)]
        return self.qlinear_params(node) or {**(self.input_q(acts[0], "x") if acts else {}),
                                             **self.output_q(node.output[0])}

    def input_q(self, tensor, prefix) -> dict:
        p = self.act_q.get(tensor)
        return {f"{prefix}_scale": p["scale"], f"{prefix}_zero_point": p["zero_point"]} if p else {}

    def weight(self, name, tensor, scale=None, zp=None, axis=None, transpose=False):
        """Record a constant weight in IR layout; integer weights keep their quant params."""
        r, info = self.result, self.dq.get(tensor)
        w = self.const[tensor]
        fix = (lambda v: v.T) if transpose else (lambda v: v)
        block = 0
        if info is not None:  # QDQ: DequantizeLinear of an integer initializer
            scale, zp, axis, w_int = info["scale"], info["zero_point"], info["axis"], info["q"]
            block = info["block_size"]
        elif np.issubdtype(w.dtype, np.integer):  # QLinear*/ *Integer ops: the operand itself is integer
            w_int = w
            zp = np.zeros((), w.dtype) if zp is None else zp
        else:
            r.weights[name] = fix(w).astype(np.float32, copy=False)  # may be a view of the model's tensor
            return
        r.int_weights[name] = fix(w_int)
        qp = r.quant_params.setdefault(name, {})
        qp["w_zero_point"] = zp
        if scale is not None:
            qp["w_scale"] = scale
            r.weights[name] = fix((w_int.astype(np.float64) - self._expand(zp, w_int, axis or 0, block))
                                  * self._expand(scale, w_int, axis or 0, block)).astype(np.float32)
        param = np.asarray(scale if scale is not None else zp)
        if param.size > 1:  # per-channel or blocked: say along which axis of the IR layout
            axis = (axis or 0) % w_int.ndim
            qp["w_axis"] = (1 - axis) if transpose else axis
            if param.ndim == w_int.ndim:
                qp["w_block_size"] = block or -(-w_int.shape[axis] // param.shape[axis])

    # ---- layers
    def conv(self, node, name):
        op, a = node.op_type, _attrs(self.onnx, node)
        xi, wi, bi = {"Conv": (0, 1, 2), "ConvInteger": (0, 1, None), "QLinearConv": (0, 3, 8)}[op]
        x, w, y = node.input[xi], node.input[wi], node.output[0]
        b = self.arg(node, bi) if bi else None
        xs, ws, ys = self.shape(x), self.shape(w), self.shape(y)
        nd = len(xs) - 2
        if nd not in (1, 2):
            self.unsupported[f"{op} ({nd}-D)"] = self.unsupported.get(f"{op} ({nd}-D)", 0) + 1
            return self.eltwise(node, name, "copy")
        kernel, strides = ws[2:], tuple(a.get("strides", [1] * nd))
        dil = tuple(a.get("dilations", [1] * nd))
        pads = _pads(a, xs[2:], ys[2:], kernel, strides, dil)
        lift = (lambda v: (1, *v)) if nd == 1 else tuple  # a 1-D conv is a 2-D conv with H = 1
        padding, hw = _fit(lift(xs[2:]), [(0, 0)] * (2 - nd) + pads, lift(ys[2:]), lift(kernel), lift(strides),
                           lift(dil), f"{self.label}: layer {name!r}")
        layer = Conv2d(name, in_channels=xs[1], out_channels=ws[0], kernel_size=lift(kernel), input_hw=hw,
                       stride=lift(strides), padding=padding, dilation=lift(dil), groups=int(a.get("group", 1)),
                       batch=xs[0], bias=b is not None)
        extra = {"pads": [p for p, _ in pads] + [q for _, q in pads], "strides": list(strides),
                 "dilations": list(dil), "group": layer.groups, "kernel_shape": list(kernel)}
        quant = self.qlinear_params(node)
        self.emit(layer, node, extra, quant or {**self.input_q(x, "x"), **self.output_q(y)})
        if self.is_const(w):
            self.weight(name, w, **self.weight_q(node, 0))
        if b is not None and self.is_const(b):
            self.bias(name, b, layer.out_channels)

    def matmul(self, node, name):
        op, a = node.op_type, _attrs(self.onnx, node)
        ai, bi = (0, 3) if op in ("QLinearMatMul", "QGemm") else (0, 1)
        A, B, y = node.input[ai], node.input[bi], node.output[0]
        As, Bs, ys = self.shape(A), self.shape(B), self.shape(y)
        gemm = op in ("Gemm", "QGemm")
        trans_b = gemm and bool(a.get("transB", 0))
        quant = self.qlinear_params(node)
        extra = {}
        if self.is_const(B) and len(Bs) == 2:  # activation × weight: Dense
            K, N = (Bs[1], Bs[0]) if trans_b else Bs
            bias, outputs = self.arg(node, {"Gemm": 2, "QGemm": 6}[op]) if gemm else None, [y]
            add = self.fusable_add(node, N) if op in ("MatMul", "MatMulInteger") else None
            if add is not None:  # MatMul + Add(constant bias) → one Dense with bias, as exporters split Linear
                self.fused.add(self.index[add.output[0]])
                bias = next(t for t in add.input if self.is_const(t))
                outputs = list(add.output)
                extra = {"fused_add": add.name or add.output[0]}
            layer = Dense(name, in_features=K, out_features=N, batch=math.prod(ys) // N, bias=bias is not None)
            quant = quant or {**self.input_q(A, "x"), **self.output_q(outputs[0])}
            extra.update({"outputs": outputs})
            self.emit(layer, node, extra, quant)
            self.weight(name, B, **self.weight_q(node, 0 if trans_b else 1), transpose=not trans_b)
            if gemm and name in self.result.weights and a.get("alpha", 1.0) != 1.0:
                self.result.weights[name] = self.result.weights[name] * np.float32(a["alpha"])
            if bias is not None and self.is_const(bias):
                self.bias(name, bias, N, scale=a.get("beta", 1.0) if gemm else 1.0)
            return
        if gemm:
            m = As[1] if a.get("transA", 0) else As[0]
            k, n = As[0] if a.get("transA", 0) else As[1], Bs[0] if trans_b else Bs[1]
        else:
            m, k = (As[-2] if len(As) > 1 else 1), As[-1]
            n = Bs[-1] if len(Bs) > 1 else 1
        layer = MatMul(name, m=m, n=n, k=k, batch=math.prod(ys) // (m * n))
        if quant:  # QLinearMatMul/MatMulInteger naming is x/w; two activations are a/b
            quant = {k.replace("x_", "a_").replace("w_", "b_"): v for k, v in quant.items()}
        else:
            quant = {**self.input_q(A, "a"), **self.input_q(B, "b"), **self.output_q(y)}
        self.emit(layer, node, None, quant)

    def fusable_add(self, node, n):
        users = self.consumers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != "Add" or node.output[0] in {o.name for o in self.model.graph.output}:
            return None
        add = users[0]
        consts = [t for t in add.input if self.is_const(t)]
        if len(add.input) == 2 and len(consts) == 1 and self.const[consts[0]].size == n:
            return add
        return None

    def qlinear_params(self, node) -> dict:
        """Scales/zero points of QLinear*/ *Integer nodes, read from their input positions (see `_QPARAMS`);
        the output's parameters also describe that tensor for the layers that read it."""
        layout = _QPARAMS.get(node.op_type, {})
        out = {k: np.asarray(self.const[self.arg(node, i)])
               for k, i in layout.items() if self.arg(node, i) in self.const}
        if "y_scale" in out:
            zp = out.get("y_zero_point", np.zeros((), np.uint8))
            self.act_q[node.output[0]] = {"scale": out["y_scale"], "zero_point": zp}
        return out

    def weight_q(self, node, axis) -> dict:
        layout = _QPARAMS.get(node.op_type, {})

        def get(key):
            tensor = self.arg(node, layout[key]) if key in layout else None
            return np.asarray(self.const[tensor]) if tensor in self.const else None

        return {"scale": get("w_scale"), "zp": get("w_zero_point"), "axis": axis}

    def bias(self, name, tensor, n, scale=1.0):
        r, b, info = self.result, self.const[tensor], self.dq.get(tensor)
        if info is not None or np.issubdtype(b.dtype, np.integer):
            q = info["q"] if info is not None else b
            r.quant_params.setdefault(name, {})["bias_int"] = np.broadcast_to(q.reshape(-1), (n,)).copy()
            if info is None:  # QLinearConv: int32 bias with scale x_scale · w_scale, zero point 0
                qp = r.quant_params[name]
                b = q.reshape(-1) * (qp["x_scale"].astype(np.float64) * qp["w_scale"].astype(np.float64))
        if b.size not in (1, n):
            raise ValueError(f"{self.label}: layer {name!r} bias {tensor!r} has shape {b.shape}, expected ({n},)")
        r.biases[name] = (np.broadcast_to(b.reshape(-1), (n,)) * scale).astype(np.float32)

    def pool(self, node, name):
        op, a = node.op_type, _attrs(self.onnx, node)
        xs, ys = self.shape(node.input[0]), self.shape(node.output[0])
        if a.get("channels_last", 0):  # QLinearGlobalAveragePool on NHWC
            xs, ys = (xs[0], xs[-1], *xs[1:-1]), (ys[0], ys[-1], *ys[1:-1])
        quant = self.qlinear_params(node) or self.input_q(node.input[0], "x")
        if _POOLS[op] == "max" and node.input[0] in self.act_q:  # max pooling keeps the quantization grid
            self.act_q[node.output[0]] = self.act_q[node.input[0]]
        quant.update(self.output_q(node.output[0]))
        nd = len(xs) - 2
        if nd not in (1, 2):
            self.unsupported[f"{op} ({nd}-D)"] = self.unsupported.get(f"{op} ({nd}-D)", 0) + 1
            return self.eltwise(node, name, "copy")
        lift = (lambda v: (1, *v)) if nd == 1 else tuple
        if op.startswith("Global"):
            layer = Pool2d(name, kind=_POOLS[op], channels=xs[1], input_hw=lift(xs[2:]), batch=xs[0],
                           global_pool=True)
            return self.emit(layer, node, None, quant)
        dil = tuple(a.get("dilations", [1] * nd))
        kernel = tuple(d * (k - 1) + 1 for k, d in zip(a["kernel_shape"], dil))  # Pool2d has no dilation
        strides = tuple(a.get("strides", [1] * nd))
        pads = _pads(a, xs[2:], ys[2:], kernel, strides, [1] * nd)
        padding, hw = _fit(lift(xs[2:]), [(0, 0)] * (2 - nd) + pads, lift(ys[2:]), lift(kernel), lift(strides),
                           (1, 1), f"{self.label}: layer {name!r}")
        layer = Pool2d(name, kind=_POOLS[op], channels=xs[1], input_hw=hw, kernel_size=lift(kernel),
                       stride=lift(strides), padding=padding, batch=xs[0])
        self.emit(layer, node, {"pads": [p for p, _ in pads] + [q for _, q in pads]}, quant)

    def softmax(self, node, name):
        shape = self.shape(node.output[0])
        default = -1 if self.opset >= 13 else 1
        axis = _attrs(self.onnx, node).get("axis", default) % len(shape)
        cols = shape[axis] if self.opset >= 13 else math.prod(shape[axis:])
        self.emit(Softmax(name, rows=math.prod(shape) // cols, cols=cols), node, None, self.act_params(node))

    def layernorm(self, node, name):
        shape = self.shape(node.output[0])
        cols = math.prod(shape[_attrs(self.onnx, node).get("axis", -1) % len(shape):])
        self.emit(LayerNorm(name, rows=math.prod(shape) // cols, cols=cols), node, None, self.act_params(node))
        for i, store in ((1, self.result.weights), (2, self.result.biases)):
            if self.arg(node, i) in self.const:
                store[name] = self.const[self.arg(node, i)].astype(np.float32)

    def eltwise_kind(self, node) -> str:
        kind = _ELTWISE[node.op_type]
        if kind != "clip":
            return kind
        a = _attrs(self.onnx, node)
        if self.opset >= 11:
            lo, hi = (self.const.get(self.arg(node, i)) for i in (1, 2))
        else:
            lo, hi = a.get("min"), a.get("max")
        lo = None if lo is None else float(lo)
        hi = None if hi is None else float(hi)
        # Clip(0, ∞) is ReLU; any other clamp costs what ReLU6 costs (two compares), so it is named relu6.
        return "relu" if lo == 0.0 and hi is None else "relu6"

    def eltwise(self, node, name, kind):
        outs = [t for t in node.output if t]
        acts = [t for t in node.input if t and not self.is_const(t)]
        known = [t for t in outs if t in self.shapes]
        if kind == "copy" and len(known) < len(outs):  # an op shape inference cannot see into (If, Loop, …)
            known = [t for t in acts if t in self.shapes][:1]
        elements = sum(math.prod(self.shape(t)) for t in (known or outs))
        layer = Elementwise(name, kind=kind, elements=max(elements, 1), operands=max(len(acts), 1))
        self.emit(layer, node, None, self.act_params(node))


def _pads(a, in_size, out_size, kernel, strides, dil) -> list[tuple[int, int]]:
    """(begin, end) padding per spatial axis from `pads` or `auto_pad` (SAME_* is derived from the output size)."""
    nd = len(in_size)
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for i, o, k, s, d in zip(in_size, out_size, kernel, strides, dil):
            total = max((o - 1) * s + d * (k - 1) + 1 - i, 0)
            small, big = total // 2, total - total // 2
            out.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return out
    if auto == "VALID":
        return [(0, 0)] * nd
    pads = list(a.get("pads", [0] * (2 * nd)))
    return list(zip(pads[:nd], pads[nd:]))


def _fit(in_hw, pads, out_hw, kernel, strides, dil, where):
    """Symmetric IR padding min(begin, end); input grows by the remainder until the IR output matches ONNX's."""
    padding, sizes = [], []
    for i, (b, e), o, k, s, d in zip(in_hw, pads, out_hw, kernel, strides, dil):
        p, h = min(b, e), i + abs(e - b)
        out = lambda h: (h + 2 * p - d * (k - 1) - 1) // s + 1
        while out(h) < o:
            h += 1
        if out(h) != o:
            raise ValueError(f"{where}: cannot express output size {o} from input {i}, kernel {k}, stride {s}, "
                             f"pads {(b, e)}")
        padding.append(p)
        sizes.append(h)
    return tuple(padding), tuple(sizes)
