"""ONNX round trip of the sequential networks.

`export_onnx(name)` writes a registry network as a float ONNX model (Conv/Relu/MaxPool/
Flatten/Gemm, node names = qsim op names). `network_from_onnx(model, name, dataset)` reads a
model back with `qsim.workload.onnx_import.import_onnx` and turns its layer IR and weights
into a `Network` that the float and quantized executors run like a built-in one.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from qsim.nets.models import Architecture, Conv, Flatten, Linear, MaxPool
from qsim.nets.registry import Network, get_network, register_network
from qsim.workload import Conv2d, Dense, Elementwise, Pool2d, Workload

OPSET = 13


def export_onnx(name: str, path=None, batch: int | None = None):
    """The float network `name` as an `onnx.ModelProto` (also saved to `path` if given).

    `batch` None leaves the batch dimension symbolic ("N")."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    net = get_network(name)
    if net.arch is None:
        raise ValueError(f"network {name!r} is not a sequential architecture; it cannot be exported here")
    params = net.weights()
    arch = net.arch
    n = batch if batch is not None else "N"
    nodes, inits, cur = [], [], "input"
    for op in arch.ops:
        out = f"{op.name}_out"
        if isinstance(op, Conv):
            (ph, pw) = op.padding
            inits += [numpy_helper.from_array(np.asarray(params[f"{op.name}.w"]), f"{op.name}.w"),
                      numpy_helper.from_array(np.asarray(params[f"{op.name}.b"]), f"{op.name}.b")]
            nodes.append(helper.make_node("Conv", [cur, f"{op.name}.w", f"{op.name}.b"], [out], name=op.name,
                                          kernel_shape=list(op.kernel), strides=list(op.stride),
                                          pads=[ph, pw, ph, pw], group=op.groups))
        elif isinstance(op, Linear):
            inits += [numpy_helper.from_array(np.asarray(params[f"{op.name}.w"]), f"{op.name}.w"),
                      numpy_helper.from_array(np.asarray(params[f"{op.name}.b"]), f"{op.name}.b")]
            nodes.append(helper.make_node("Gemm", [cur, f"{op.name}.w", f"{op.name}.b"], [out], name=op.name,
                                          transB=1))
        elif isinstance(op, MaxPool):
            nodes.append(helper.make_node("MaxPool", [cur], [out], name=op.name, kernel_shape=[op.size, op.size],
                                          strides=[op.size, op.size]))
        elif isinstance(op, Flatten):
            nodes.append(helper.make_node("Flatten", [cur], [out], name=op.name, axis=1))
        cur = out
        if isinstance(op, (Conv, Linear)) and op.relu:
            nodes.append(helper.make_node("Relu", [cur], [f"{op.name}_relu_out"], name=f"{op.name}_relu"))
            cur = f"{op.name}_relu_out"
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, [n, *arch.input_shape])],
        [helper.make_tensor_value_info(cur, TensorProto.FLOAT, [n, arch.shapes()[-1][0]])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="qsim")
    model.ir_version = 8
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, str(path))
    return model


def arch_from_workload(workload: Workload, input_shape) -> Architecture:
    """A sequential `Architecture` from layer IR: Conv2d, Dense, max Pool2d (kernel = stride),
    ReLU (fused into the MAC layer before it) and data movers ("copy", e.g. a Flatten that
    became a layer) in a chain. A Flatten is inserted before a Dense that follows a 3-D shape."""
    ops, shape = [], tuple(int(v) for v in input_shape)
    for layer in workload:
        if isinstance(layer, Conv2d):
            if len(shape) != 3:
                raise ValueError(f"layer {layer.name!r}: a conv needs a (C, H, W) input, the chain has {shape}")
            pad = layer.padding if isinstance(layer.padding, (tuple, list)) else (layer.padding, layer.padding)
            op = Conv(layer.name, layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, pad,
                      layer.groups, relu=False)
        elif isinstance(layer, Dense):
            if len(shape) != 1:
                ops.append(Flatten(f"{layer.name}_flatten"))
                shape = (int(np.prod(shape)),)
            op = Linear(layer.name, layer.in_features, layer.out_features, relu=False)
        elif isinstance(layer, Pool2d) and layer.kind == "max" and not layer.global_pool and \
                layer.kernel_size == layer.stride and not any(np.atleast_1d(layer.padding)):
            k = layer.kernel_size if np.isscalar(layer.kernel_size) else layer.kernel_size[0]
            op = MaxPool(layer.name, int(k))
        elif isinstance(layer, Elementwise) and layer.kind == "relu":
            if not ops or not isinstance(ops[-1], (Conv, Linear)) or ops[-1].relu:
                raise ValueError(f"layer {layer.name!r}: a ReLU must follow a conv or dense layer to be fused")
            ops[-1] = dataclasses.replace(ops[-1], relu=True)
            continue
        elif isinstance(layer, Elementwise) and layer.kind == "copy":
            continue
        else:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) is not supported by the sequential "
                             f"executor (conv, dense, max-pool, relu)")
        ops.append(op)
        shape = op.out_shape(shape)
    return Architecture(workload.name, tuple(int(v) for v in input_shape), tuple(ops))


def network_from_onnx(model, name: str, dataset: str, *, register: bool = True) -> Network:
    """A `Network` running the weights of an ONNX model (path or ModelProto) on `dataset`."""
    from qsim.nets.data import load_dataset
    from qsim.workload.onnx_import import import_onnx

    imp = import_onnx(model, batch=1)
    arch = arch_from_workload(imp.workload, load_dataset(dataset).x_test.shape[1:])
    params = {}
    for op in arch.mac_ops:
        if op.name not in imp.weights:
            raise ValueError(f"ONNX model has no float weights for layer {op.name!r}")
        params[f"{op.name}.w"] = np.asarray(imp.weights[op.name], np.float32).reshape(op.weight_shape)
        bias = imp.biases.get(op.name)
        params[f"{op.name}.b"] = (np.zeros(op.weight_shape[0], np.float32) if bias is None
                                  else np.asarray(bias, np.float32).reshape(-1))
    net = Network(name, dataset, arch, None, description=f"imported from ONNX ({imp.workload.name})", params=params)
    if register:
        register_network(net)
    return net
