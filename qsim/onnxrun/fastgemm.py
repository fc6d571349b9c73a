"""The prepared float Gemm with a constant B (the unrolled LSTM of silero_vad_op18_ifless).

`f32_ops.gemm` transposes B (transB = 1) and makes it contiguous on every call — a 256 KB copy
for a 512 x 128 weight, ~50 µs of a ~55 µs node — and broadcasts the bias C again. Here B is
transposed once at load and C broadcast once per row count; the product is the same
`f32gemm.sgemm` call on the same values, so the result is the generic op's bit for bit.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


def spec_gemm(generic, node, attrs, consts, ex):
    from qsim.onnxrun.f32_ops import _const
    from qsim.onnxrun.f32gemm import sgemm

    consts = consts + [None] * (3 - len(consts))
    b, c = consts[1], consts[2]
    if b is None or b.dtype != F32 or b.ndim != 2 or (len(node.input) > 2 and node.input[2] and c is None):
        return None
    ta, tb = bool(attrs.get("transA", 0)), bool(attrs.get("transB", 0))
    alpha, beta = F32(attrs.get("alpha", 1.0)), F32(attrs.get("beta", 1.0))
    if alpha != 1:
        return None
    b2 = np.ascontiguousarray(b.T if tb else b)
    inits: dict = {}

    def fast(ctx, args, attrs_):
        a = args[0]
        if type(a) is not np.ndarray or a.dtype != F32 or a.ndim != 2 or args[1] is not b \
                or (c is not None and args[2] is not c):
            return generic(ctx, args, attrs_)
        a2 = a.T if ta else a
        if a2.shape[1] != b2.shape[0]:
            return generic(ctx, args, attrs_)
        init = None
        if c is not None and beta != 0:
            m = a2.shape[0]
            init = inits.get(m)
            if init is None:
                try:
                    init = inits[m] = np.broadcast_to(c.astype(F32), (m, b2.shape[1])) * beta
                except ValueError:
                    return generic(ctx, args, attrs_)
        return [sgemm(a2, b2, packed=_const(ctx, 1), init=init, trans_a=ta)]

    return fast
