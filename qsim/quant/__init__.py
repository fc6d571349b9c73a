"""Quantization core: specs, quantizers, QTensor, calibration observers and block formats."""

from qsim.quant.qtensor import QTensor
from qsim.quant.quantize import fake_quantize, quantize
from qsim.quant.spec import BLOCK_FORMATS, CALIBRATIONS, GRANULARITIES, ROUNDINGS, SCHEMES, QuantSpec

__all__ = [
    "BLOCK_FORMATS", "CALIBRATIONS", "GRANULARITIES", "ROUNDINGS", "SCHEMES", "QTensor", "QuantSpec",
    "fake_quantize", "quantize",
]
