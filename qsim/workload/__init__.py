"""Workloads: the layer IR, real network shapes and ONNX import."""

from qsim.workload.layers import (
    Conv2d,
    Dense,
    Elementwise,
    GemmView,
    Layer,
    LayerNorm,
    MatMul,
    Pool2d,
    Softmax,
    Workload,
)
from qsim.workload.onnx_import import OnnxImport, from_onnx, import_onnx
from qsim.workload.zoo import get_workload, list_workloads

__all__ = [
    "Conv2d", "Dense", "Elementwise", "GemmView", "Layer", "LayerNorm", "MatMul", "Pool2d", "Softmax", "Workload",
    "OnnxImport", "from_onnx", "import_onnx", "get_workload", "list_workloads",
]
