"""The prepared DynamicQuantizeLinear (dynamically quantized graphs) in one Numba pass.

`ops.dynamic_quantize_linear` makes five NumPy passes (finite check, min, max, quantize) and
scalar conversions (~9 µs on the VAD's few hundred values); `dql_pass` finds min / max /
non-finite values in one pass, derives the scale and zero point with the same float32
operations and quantizes with `ops._quantize_tensor`: the generic op's result bit for bit
(tests/test_run_onnx_fastdynamic.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from qsim.onnxrun.ops import _quantize_tensor

F32 = np.float32
_F32 = np.dtype(np.float32)


@njit(cache=True, nogil=True)
def dql_pass(x, q):
    """DynamicQuantizeLinear of finite float32 x into q (uint8); returns (ok, scale, zero point),
    ok False when x holds NaN or ±inf, or the scale underflows to 0 (q untouched)."""
    lo = np.float32(0.0)
    hi = np.float32(0.0)
    bad = False
    for i in range(x.size):
        v = x[i]
        bad |= not np.isfinite(v)
        lo = v if v < lo else lo
        hi = v if v > hi else hi
    if bad:
        return False, np.float32(1.0), 0
    s = np.float32(1.0) if hi == lo else np.float32(hi - lo) / np.float32(255.0)
    if s == 0:  # a range below 255 denormal steps: the generic op's NumPy arithmetic decides
        return False, s, 0
    zf = np.float32(0.0) - lo / s
    zf = min(max(zf, np.float32(0.0)), np.float32(255.0))
    z = np.int64(np.rint(zf))
    _quantize_tensor(x, s, z, 0, 255, q)
    return True, s, z


def spec_dynamic_quantize_linear(generic, node, attrs, consts, ex):
    def fast(ctx, args, attrs_):
        x = args[0]
        if type(x) is not np.ndarray or x.dtype != _F32 or not x.flags.c_contiguous or x.size == 0:
            return generic(ctx, args, attrs_)
        q = np.empty(x.shape, np.uint8)
        ok, s, z = dql_pass(x.reshape(-1), q.reshape(-1))
        if not ok:
            return generic(ctx, args, attrs_)  # reports the NaN / Inf
        return [q, np.asarray(s, F32), np.asarray(z, np.uint8)]

    return fast
