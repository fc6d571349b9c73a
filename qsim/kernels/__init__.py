"""Bit-accurate integer kernels: matmul/conv with an emulated accumulator, requantization
policies of real runtimes, group-wise and block-scaled products, sub-byte packing.

Every result is exact; `qsim.kernels.reference` holds the int64 NumPy oracles.
"""

from qsim.kernels.blocks import matmul_blocks
from qsim.kernels.conv import conv2d_int
from qsim.kernels.gemm import matmul_int, matmul_int_grouped, rescale_groups
from qsim.kernels.packing import pack_bits, unpack_bits
from qsim.kernels.requant import (
    POLICIES, multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_halfup, quantize_multiplier,
    requantize, rounding_divide_by_pot, srdhm,
)

__all__ = [
    "POLICIES", "conv2d_int", "matmul_blocks", "matmul_int", "matmul_int_grouped", "multiply_by_quantized_multiplier",
    "multiply_by_quantized_multiplier_halfup", "pack_bits", "quantize_multiplier", "requantize", "rescale_groups",
    "rounding_divide_by_pot", "srdhm", "unpack_bits",
]
