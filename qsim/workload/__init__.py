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

__all__ = [
    "Conv2d", "Dense", "Elementwise", "GemmView", "Layer", "LayerNorm", "MatMul", "Pool2d", "Softmax", "Workload",
]
