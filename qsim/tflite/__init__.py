"""Run int8 TFLite models on qsim's integer kernels (`qsim run-tflite`), vs LiteRT's interpreter."""

from qsim.tflite.runner import TfliteRunner, load_tflite

__all__ = ["TfliteRunner", "load_tflite"]
