"""Bit-accurate integer kernels: matmul/conv with an emulated accumulator, requantization
policies of real runtimes, group-wise and block-scaled products, sub-byte packing.

Contract shared by every kernel: each output starts at 0, the bias (if any) is the first
addition, then k ascending (conv: k = (input channel, kernel row, kernel column)); after
each addition an `acc_bits` accumulator wraps or saturates and counts one overflow event.
When no partial sum can leave the accumulator (bound from the dtypes or the data) the
result is computed exactly through float BLAS on provably exact blocks or small Numba
kernels; otherwise a sequential Numba kernel emulates every addition. The int64 NumPy
oracles live in `qsim.kernels.reference`.

The vector kernels are chosen once at import from the CPU (`backend()`, see
`qsim.kernels.cpu`): "avx512vnni" / "avxvnni" (`vpdpbusd` in `qsim.kernels.vnni`, exact for
any 8-bit data), "avx2" (`qsim.kernels.madd8` / `madd16`) or "portable" (float-BLAS blocks
and plain loops only); `QSIM_KERNEL_BACKEND` forces one, and a backend the CPU lacks is a
ValueError at import. Every backend gives the same integers.

A constant weight can be packed once (`pack_weights`, `qsim.kernels.prepack`): the
`PackedWeights` stands in for the array in `matmul_int` / `conv2d_int`.
"""

from qsim.kernels.binary import matmul_binary, matmul_ternary  # noqa: F401 - XNOR-popcount / ternary
from qsim.kernels.blocks import matmul_blocks
from qsim.kernels.conv import conv2d_int
from qsim.kernels.cpu import backend
from qsim.kernels.gemm import matmul_int, matmul_int_grouped, rescale_groups
from qsim.kernels.packing import pack_bits, unpack_bits
from qsim.kernels.prepack import PackedWeights, pack_weights
from qsim.kernels.requant import (
    POLICIES, multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_halfup, quantize_multiplier,
    requantize, rounding_divide_by_pot, srdhm,
)

__all__ = [
    "POLICIES", "PackedWeights", "backend", "conv2d_int", "matmul_blocks", "matmul_int", "matmul_int_grouped", "multiply_by_quantized_multiplier",
    "multiply_by_quantized_multiplier_halfup", "pack_bits", "pack_weights", "quantize_multiplier", "requantize", "rescale_groups",
    "rounding_divide_by_pot", "srdhm", "unpack_bits",
]
