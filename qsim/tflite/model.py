"""Parse a .tflite flatbuffer (with the `tflite` schema package) into plain Python objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16, 16: np.uint16,
         9: np.int8, 10: np.float64}
RESOURCE = 13


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple
    dtype: object  # numpy dtype, or "resource"
    scale: np.ndarray | None
    zero_point: np.ndarray | None
    axis: int
    data: np.ndarray | None


@dataclass
class Operator:
    index: int
    op: str
    inputs: list
    outputs: list
    options: object
    custom: bool = False


@dataclass
class Subgraph:
    tensors: list
    inputs: list
    outputs: list
    ops: list = field(default_factory=list)


def _opnames():
    from tflite.BuiltinOperator import BuiltinOperator

    return {v: k for k, v in BuiltinOperator.__dict__.items() if not k.startswith("_")}


def _options(op):
    """The operator's builtin options table as the matching `tflite.*Options` object (or None)."""
    import tflite
    from tflite.BuiltinOptions import BuiltinOptions

    kind = op.BuiltinOptionsType()
    names = {v: k for k, v in BuiltinOptions.__dict__.items() if not k.startswith("_")}
    name = names.get(kind)
    table = op.BuiltinOptions()
    if not name or name == "NONE" or table is None or not hasattr(tflite, name):
        return None
    obj = getattr(tflite, name)()
    obj.Init(table.Bytes, table.Pos)
    return obj


def load_model(path_or_bytes) -> list[Subgraph]:
    """Subgraphs with tensors (constant data decoded), operators and their options."""
    try:
        import tflite
    except ImportError:
        raise ImportError("reading .tflite files needs the `tflite` package: pip install tflite") from None
    if isinstance(path_or_bytes, (str, Path)):
        p = Path(path_or_bytes)
        if not p.is_file():
            raise FileNotFoundError(f"TFLite model file not found: {p}")
        buf = p.read_bytes()
    else:
        buf = bytes(path_or_bytes)
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ValueError("not a TFLite model (no TFL3 flatbuffer identifier)")
    try:
        m = tflite.Model.GetRootAsModel(buf, 0)
        names = _opnames()
        graphs = []
        for si in range(m.SubgraphsLength()):
            sg = m.Subgraphs(si)
            tensors = []
            for ti in range(sg.TensorsLength()):
                t = sg.Tensors(ti)
                shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
                dtype = "resource" if t.Type() == RESOURCE else TYPES.get(t.Type())
                if dtype is None:
                    raise ValueError(f"tensor {t.Name().decode()!r} has unsupported TFLite type {t.Type()}")
                q = t.Quantization()
                scale = zp = None
                axis = 0
                if q is not None and q.ScaleLength():
                    scale = q.ScaleAsNumpy().astype(np.float32)
                    zp = q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength() else np.zeros_like(
                        scale, np.int64)
                    axis = q.QuantizedDimension()
                data = None
                b = m.Buffers(t.Buffer()) if t.Buffer() < m.BuffersLength() else None
                if b is not None and b.DataLength() and dtype != "resource":
                    data = np.frombuffer(b.DataAsNumpy().tobytes(), dtype=dtype).reshape(shape).copy()
                tensors.append(Tensor(ti, t.Name().decode(), shape, dtype, scale, zp, axis, data))
            g = Subgraph(tensors, [int(i) for i in sg.InputsAsNumpy()] if sg.InputsLength() else [],
                         [int(i) for i in sg.OutputsAsNumpy()] if sg.OutputsLength() else [])
            for oi in range(sg.OperatorsLength()):
                op = sg.Operators(oi)
                code = m.OperatorCodes(op.OpcodeIndex())
                bc = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
                name = names.get(bc, str(bc))
                custom = name == "CUSTOM"
                if custom:
                    name = code.CustomCode().decode() if code.CustomCode() else "CUSTOM"
                ins = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
                outs = [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
                g.ops.append(Operator(oi, name, ins, outs, _options(op), custom))
            graphs.append(g)
    except (ValueError, FileNotFoundError, ImportError):
        raise
    except Exception as exc:  # flatbuffer decoding errors of a damaged file
        raise ValueError(f"malformed TFLite model ({type(exc).__name__}: {exc})") from None
    return graphs
