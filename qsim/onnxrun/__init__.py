"""Execute quantized ONNX graphs on qsim's bit-exact integer kernels (`qsim run-onnx`)."""

from qsim.onnxrun.executor import OnnxExecutor, compare_outputs, load_model, run_onnx, run_ort

__all__ = ["OnnxExecutor", "compare_outputs", "load_model", "run_onnx", "run_ort"]
