"""Prepacked constant weights: pack a weight once, multiply by it many times.

`pack_weights(b)` copies a constant integer weight — a matmul weight (K, N) or a conv
weight (O, C/groups, kh, kw) — and, on a VNNI backend, packs it once into the panel layout
of the `vpdpbusd` micro-kernels (`qsim.kernels.vnni.pack_weight`) with its column sums
Σ_k b' and per-column code ranges. `matmul_int(a, pw, ...)` and `conv2d_int(x, pw, ...)`
accept the `PackedWeights` wherever they accept the array, with the same arguments and
the same integers as a result: the packed form only changes how fast it is found.

- M ≤ 8 rows (GEMV, small batches; ≤ 4 on AVX-VNNI): one call of the small-M tile kernel
  (`qsim.kernels.vnni.small_packed`, 1/2/4/8 rows × 32 columns in registers, K unrolled
  by the panel layout) per 32-column panel, over the whole K, with the zero points and
  bias added in its int32 epilogue;
- more rows: the 12 × 32 tile GEMM (`qsim.kernels.vnni.packed_run`) packing only `a` per call;
- whenever the packed path does not apply (another backend, wider codes, K > `K_MAX`, an
  accumulator that can overflow, pair_saturate16, groups > 1) the original array is
  used exactly as without packing.

Like ONNX Runtime's prepacked constant initializers, the packing is not redone per call
(a weight of N columns costs K·N bytes more memory). The copy makes later writes to the
caller's array invisible: repack after changing a weight.

Exactness: as `qsim.kernels.vnni` — raw sums of a' = a + ca (u8) and b' = b − cb (s8) in
int32 are exact for K ≤ K_MAX; Σ(a − za)(b − zb) = Σa'b' − za'·Σ_k b' − zb'·Σ_k a' +
K·za'·zb' (+ bias) is added in wrapping int32 only when the exact result provably fits
int32 (then the wrapped value is the value), else in int64 (`finish_raw`).
"""

from __future__ import annotations

import numpy as np

from qsim.kernels._checks import (
    check_acc, check_bias, check_codes, check_product_fits, check_zero_point, conv_output_hw, max_abs_shifted,
    type_max_abs,
)
from qsim.kernels.exact import VNNI_WIDTH
from qsim.kernels.vnni import (
    FLIP, K_MAX, YMM_TILE, ZMM_TILE, _NO_GEOM, _ro, _zero_points, finish_raw, pack_a, pack_weight, pad_bytes,
    packed_epilogue, packed_run, packed_shapes, small_packed, small_rows,
)

_EMPTY32 = np.zeros(0, np.int32)
_NO_BIAS = np.zeros(0, np.int64)
_NO_ZB = np.zeros(0, np.int64)
_NO_ZB.flags.writeable = False            # the read-only zero-point type of `_zero_points` (one signature)


class PackedWeights:
    """A constant integer weight packed once (see the module docstring); make one with
    `pack_weights`. `np.asarray(pw)` is the (read-only) copy of the original weight."""

    __slots__ = ("array", "matrix", "K", "N", "width", "panels", "colsum", "lo", "hi", "lo_min", "hi_max", "cb",
                 "_epi", "_plans", "__weakref__")

    def __init__(self, b):
        arr = check_codes(b, "b")
        if arr.ndim not in (2, 4):
            raise ValueError(f"a weight to pack must be 2-D (K, N) or a 4-D conv weight (O, C, kh, kw), "
                             f"got shape {arr.shape}")
        arr = np.array(arr, copy=True, order="C")
        arr.flags.writeable = False
        self.array = arr
        # the (K, N) matrix the products use: a conv weight's columns are its outputs o, rows k = (c, i, j)
        self.matrix = arr if arr.ndim == 2 else arr.reshape(arr.shape[0], -1).T
        self.K, self.N = self.matrix.shape
        if self.K and self.N:
            self.lo = self.matrix.min(axis=0).astype(np.int64)
            self.hi = self.matrix.max(axis=0).astype(np.int64)
        else:
            self.lo = self.hi = np.zeros(self.N, np.int64)
        self.lo_min = int(self.lo.min(initial=0))
        self.hi_max = int(self.hi.max(initial=0))
        self.width, self.panels, self.colsum, self.cb = 0, None, None, 0
        self._epi: dict = {}
        self._plans: dict = {}
        if VNNI_WIDTH and arr.dtype.itemsize == 1 and 0 < self.K <= K_MAX and self.N > 0:
            self.cb = 128 if arr.dtype.kind == "u" else 0
            tile = ZMM_TILE if VNNI_WIDTH == 512 else YMM_TILE
            _, shape, _ = packed_shapes(1, self.K, self.N, tile)
            panels = np.empty(shape[:2] + (shape[2] // 4,), np.uint32)
            fb = FLIP if self.cb else np.uint32(0)
            P, Kq, nr = panels.shape
            bu = pad_bytes(np.ascontiguousarray(self.matrix).view(np.uint8), fb, 4 * Kq, P * nr)
            colsum = np.empty(P * nr, np.int32)      # Σ_k b' (|sum| ≤ 128·K_MAX)
            pack_weight(bu, np.int64(self.K), fb, panels, colsum, np.int64(0), _NO_ZB, _NO_BIAS, _EMPTY32, _EMPTY32)
            self.width, self.panels, self.colsum = VNNI_WIDTH, panels, colsum

    # array-like: the original weight
    def __array__(self, dtype=None, copy=None):
        return self.array if dtype is None else self.array.astype(dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def ndim(self) -> int:
        return self.array.ndim

    @property
    def packed(self) -> bool:
        """Whether the VNNI panels exist (else every product uses the original array)."""
        return self.panels is not None

    def __repr__(self) -> str:
        how = f"VNNI panels ({self.width}-bit)" if self.packed else "not packed on this backend"
        return f"PackedWeights(shape={self.shape}, dtype={self.dtype}, {how})"

    def max_abs(self, zb: np.ndarray) -> int:
        """max |b − zb| over the weight (zb scalar or per column (N,))."""
        if self.K == 0 or self.N == 0:
            return 0
        if zb.ndim == 0:
            z = int(zb)
            return max(abs(self.lo_min - z), abs(self.hi_max - z))
        return int(max(np.abs(self.lo - zb).max(), np.abs(self.hi - zb).max()))

    def epilogue(self, za_: int, zb_: np.ndarray, zb_scalar: bool, bias) -> tuple[np.ndarray, np.ndarray]:
        """The int32 epilogue vectors (col, nzb) for za', zb' (`packed_epilogue`); cached for a
        scalar zb and no bias (the common case)."""
        key = (za_, int(zb_[0]) if zb_.shape[0] else 0) if zb_scalar and bias is None else None
        if key is not None and key in self._epi:
            return self._epi[key]
        n = self.colsum.shape[0]
        col, nzb = np.empty(n, np.int32), np.empty(n, np.int32)
        packed_epilogue(self.colsum, np.int64(self.K), np.int64(za_), zb_, _NO_BIAS if bias is None else bias, col, nzb)
        if key is not None:
            if len(self._epi) > 16:
                self._epi.clear()
            self._epi[key] = (col, nzb)
        return col, nzb


def pack_weights(b) -> PackedWeights:
    """Pack a constant weight once for `matmul_int` ((K, N) matrix) or `conv2d_int`
    ((O, C/groups, kh, kw) conv weight): the result stands in for the array in those calls
    (same arguments, same integers), faster on VNNI hosts. Works on every backend (where
    nothing is packed, the products use the stored copy)."""
    return PackedWeights(b)


def _bound_args(a, pw: PackedWeights, a_zero_point, b_zero_point, bias, acc_bits, overflow):
    """Validated (za, zb, bias, bits, hi) and the bound |bias| + K·max|a − za|·max|b − zb|
    (from a's dtype, or its data when that is needed to prove no overflow)."""
    za = check_zero_point(a_zero_point, a, "a_zero_point")
    zb = check_zero_point(b_zero_point, pw.matrix, "b_zero_point", (pw.N,))
    bias = check_bias(bias, pw.N)
    bits, _, hi = check_acc(acc_bits, overflow)
    bias_max = 0 if bias is None else int(np.abs(bias).max(initial=0))
    max_a, max_b = type_max_abs(a.dtype, za), pw.max_abs(zb)
    bound = bias_max + max(pw.K, 1) * max_a * max_b
    if bound > hi and bits != 64:
        max_a = max_abs_shifted(a, za)
        bound = bias_max + max(pw.K, 1) * max_a * max_b
    return za, zb, bias, bits, hi, bound, max_a, max_b


def packed_matmul(a, pw: PackedWeights, a_zero_point, b_zero_point, bias, acc_bits, overflow):
    """`matmul_int(a, pw, ...)` through the packed panels: (acc, 0), or None when the packed
    path does not apply (the caller then runs the ordinary path on the original array).
    Plain-int zero points without bias (the usual call) reuse a per-weight plan: the
    validation and epilogue vectors of the first such call."""
    if pw.panels is None or pw.width != VNNI_WIDTH or pw.ndim != 2:
        return None
    if type(a) is not np.ndarray:
        a = np.asarray(a)
    if a.ndim != 2 or a.shape[1] != pw.K or a.dtype.itemsize != 1 or a.dtype.kind not in "iu" or a.shape[0] == 0:
        return None
    key = None
    if bias is None and type(a_zero_point) is int and type(b_zero_point) is int and type(acc_bits) is int \
            and type(overflow) is str:
        key = (a.dtype.char, a_zero_point, b_zero_point, acc_bits, overflow)
        plan = pw._plans.get(key)
        if plan is not None:
            return _run(a, pw, *plan), 0
    za, zb, bias, bits, hi, bound, max_a, max_b = _bound_args(a, pw, a_zero_point, b_zero_point, bias, acc_bits,
                                                              overflow)
    if bound > hi and bits != 64:
        return None                              # an overflow is possible: the emulating path counts it
    check_product_fits(max_a, max_b, hi, bits)
    plan = _plan(a, pw, int(za), zb, bias, bound < (1 << 31), np.int32 if bits <= 32 else np.int64)
    if key is not None and type_max_abs(a.dtype, za) == max_a:     # the bound held for any data of a's dtype
        if len(pw._plans) > 16:
            pw._plans.clear()
        pw._plans[key] = plan
    return _run(a, pw, *plan), 0


def _plan(a, pw: PackedWeights, za: int, zb, bias, int32_epi: bool, out_dtype):
    """What `_run` needs besides a: (za', zb', need Σ_k a', flip of a, int32 epilogue?,
    col, nzb, bias, result dtype)."""
    ca = 128 if a.dtype.kind == "i" else 0
    za_, zb_, need_asum = _zero_points(za, zb, ca, pw.cb, pw.N)
    if int32_epi:
        col, nzb = pw.epilogue(za_, zb_, np.ndim(zb) == 0, bias)
    else:
        col = nzb = _EMPTY32
    return za_, zb_, need_asum, FLIP if ca else np.uint32(0), int32_epi, col, nzb, bias, out_dtype


def packed_product(a, pw: PackedWeights, za: int, zb, bias, int32_epi: bool) -> np.ndarray:
    """Exact Σ_k (a − za)(b − zb) (+ bias) (M, N) for 8-bit a and the packed weight: int32
    (epilogue in the kernel) when int32_epi (the caller proved the exact result fits), else
    int64. The result may be a view of a padded array."""
    return _run(a, pw, *_plan(a, pw, za, zb, bias, int32_epi, np.int32 if int32_epi else np.int64))


def _run(a, pw: PackedWeights, za_, zb_, need_asum, fa, int32_epi, col, nzb, bias, out_dtype) -> np.ndarray:
    M, K = a.shape
    N = pw.N
    Kq = pw.panels.shape[1]
    au = pad_bytes(a.view(np.uint8), fa, M, 4 * Kq)
    R = small_rows(M, pw.width)
    if R:
        ap = np.empty((1, Kq, R), np.uint32)
        row = np.zeros(R, np.int32)
        pack_a(au.reshape(M, 4 * Kq, 1, 1), False, fa, _NO_GEOM, ap, row, need_asum)
        out = np.empty((R, pw.colsum.shape[0]), np.int32)
        small_packed(ap, pw.panels, out, col, nzb, row, pw.width, int32_epi)
    else:
        out, row = packed_run(au.reshape(M, 4 * Kq, 1, 1), _NO_GEOM, False, fa, pw.panels, col, nzb, need_asum,
                              pw.width)
    if int32_epi:
        res = out[:M, :N] if out.shape != (M, N) else out
    else:
        res = np.empty((M, N), np.int64)
        finish_raw(out, row[:M].astype(np.int64), pw.colsum[:N].astype(np.int64), np.int64(za_), zb_, np.int64(K),
                   res)
        if bias is not None:
            res += bias[None, :]
    return res if res.dtype == out_dtype else res.astype(out_dtype)


def packed_conv(x, pw: PackedWeights, zx: int, zw, bias, kernel, stride, padding, dilation):
    """`qsim.kernels.vnni.vnni_conv` with the packed conv weight (groups = 1): (acc int32
    incl. bias with rows (n, y, x) × columns o in its top-left block, Ho, Wo). Only when the
    exact result fits int32 (the caller's bound)."""
    N, C, H, W = x.shape
    kh, kw = kernel
    top, left, bottom, right = padding
    Ho, Wo = conv_output_hw(H, W, (kh, kw), stride, padding, dilation)
    ca = 128 if x.dtype == np.int8 else 0
    za_, zb_, need_asum = _zero_points(zx, zw, ca, pw.cb, pw.N)
    col, nzb = pw.epilogue(za_, zb_, np.ndim(zw) == 0, bias)
    geom = np.array([kh, kw, stride[0], stride[1], dilation[0], dilation[1], Ho, Wo], np.int64)
    if any(padding):               # the padding holds the zero point: a' − za' = 0 there
        xp = np.full((N, C, H + top + bottom, W + left + right), zx, x.dtype)
        xp[:, :, top:top + H, left:left + W] = x
    else:
        xp = x
    out, _ = packed_run(_ro(xp.view(np.uint8)), geom, True, FLIP if ca else np.uint32(0), pw.panels, col, nzb,
                        need_asum, pw.width)
    return out, Ho, Wo

