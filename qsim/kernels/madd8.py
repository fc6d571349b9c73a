"""Exact square-ish 8-bit integer products through u8×s8 byte multiply-adds (vpmaddubsw).

out[m, n] = Σ_k a'[m, k]·b'[k, n] in int32, with a' = a + ca unsigned bytes (ca = 0 or
128) and b' = b − cb signed bytes (cb = 0 or 128); the caller's zero points are applied
afterwards, exactly, in int64:

    Σ (a − za)(b − zb) = Σ a'b' − za'·Σ_k b' − zb'·Σ_k a' + K·za'·zb'
    with za' = za + ca, zb' = zb − cb.

The micro-kernel is LLVM IR emitted by a Numba intrinsic: 4 rows of a' × 16 columns of b'
held in 8 int32 ymm accumulators; per step of 4 k it broadcasts the 4 bytes a'[r, k..k+3]
of each row, multiplies them with two 32-byte vectors of the packed weight (8 columns ×
4 k each) by `vpmaddubsw` (u8×s8 products, adjacent pairs summed in int16) and widens the
int16 pair sums to int32 quads by `vpmaddwd` with a vector of ones. The weight is packed
once per call into 16-column panels (K rounded up to 4, zero padded: O(K·N)), the
activations into rows padded to 4; the loops are blocked over K and N so a weight block
stays in L2 while 4-row strips of a' stream through it. Without AVX2 (or when Numba
targets another CPU) the same step is emitted as generic IR (widen, multiply, sum quads),
equal to the AVX2 sequence whenever no int16 pair sum saturates.

Exactness: vpmaddubsw saturates a pair sum to int16; with 2·max a'·max|b'| ≤ 32767 no
pair sum can, so every pair sum is exact, and the int32 running sums are exact when
K·max a'·max|b'| < 2^31 (both checked by `madd8_plan` from the data). Integer additions
are associative, so the kernel's order cannot change the value.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from qsim.kernels.madd16 import USE_AVX2_INTRINSIC

MR, NR = 4, 16             # micro-tile: rows of a × columns of b
KC, NC = 256, 512
PAIR_LIMIT = 32767         # 2·max a'·max|b'| ≤ this: no int16 pair sum saturates
_I32_LIMIT = 1 << 31

_i8, _i16, _i32, _i64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
_V32I8, _V16I16, _V8I32, _V32I32 = (ir.VectorType(_i8, 32), ir.VectorType(_i16, 16), ir.VectorType(_i32, 8),
                                    ir.VectorType(_i32, 32))


def _c(v: int):
    return ir.Constant(_i64, v)


def _make_tile_kernel(rows: int):
    """Intrinsic kernel(pa, lda, pb, nq, pout, ldo), integer addresses/strides.

    For r < rows, n < 16 and q < nq:
        out[r, n] += Σ_{t<4} a'[r, 4q + t]·b'[4q + t, n]
    with a' bytes (uint8) at pa + r·lda + 4q + t, the packed weight (int8) at
    pb + 64q + 32·(n // 8) + 4·(n % 8) + t, and out int32 rows `ldo` elements apart
    from pout. Valid (equal to the exact sum) when no pair sum leaves int16."""
    quad = [ir.Constant(_V8I32, [4 * j + t for j in range(8)]) for t in range(4)]

    @intrinsic
    def kernel(typingctx, pa, lda, pb, nq, pout, ldo):
        sig = types.void(*([types.intp] * 6))

        def codegen(context, builder, signature, args):
            pa, lda, pb, nq, pout, ldo = args
            if USE_AVX2_INTRINSIC:
                mod = builder.module
                f_ubsw = mod.globals.get("llvm.x86.avx2.pmadd.ub.sw") or ir.Function(
                    mod, ir.FunctionType(_V16I16, [_V32I8, _V32I8]), "llvm.x86.avx2.pmadd.ub.sw")
                f_wd = mod.globals.get("llvm.x86.avx2.pmadd.wd") or ir.Function(
                    mod, ir.FunctionType(_V8I32, [_V16I16, _V16I16]), "llvm.x86.avx2.pmadd.wd")
                ones = ir.Constant(_V16I16, [1] * 16)

                def step(av, bv):   # u8 × s8 → int16 pairs (vpmaddubsw) → int32 quads (vpmaddwd by 1)
                    return builder.call(f_wd, [builder.call(f_ubsw, [av, bv]), ones])
            else:
                def step(av, bv):   # the same sums in plain IR (no saturation under the caller's bound)
                    p = builder.mul(builder.zext(av, _V32I32), builder.sext(bv, _V32I32))
                    s = builder.add(builder.shuffle_vector(p, p, quad[0]), builder.shuffle_vector(p, p, quad[1]))
                    s2 = builder.add(builder.shuffle_vector(p, p, quad[2]), builder.shuffle_vector(p, p, quad[3]))
                    return builder.add(s, s2)

            pa_p = builder.inttoptr(pa, _i8.as_pointer())
            pb_p = builder.inttoptr(pb, _i8.as_pointer())
            po_p = builder.inttoptr(pout, _i32.as_pointer())
            arow = [builder.gep(pa_p, [builder.mul(_c(r), lda)]) for r in range(rows)]
            optr = [[builder.bitcast(builder.gep(po_p, [builder.add(builder.mul(_c(r), ldo), _c(8 * h))]),
                                     _V8I32.as_pointer()) for h in range(2)] for r in range(rows)]
            init = [[builder.load(optr[r][h], align=4) for h in range(2)] for r in range(rows)]
            entry = builder.block
            loop = builder.append_basic_block("madd8_loop")
            body = builder.append_basic_block("madd8_body")
            done = builder.append_basic_block("madd8_done")
            builder.branch(loop)
            builder.position_at_end(loop)
            iv = builder.phi(_i64)
            iv.add_incoming(_c(0), entry)
            accs = []
            for r in range(rows):
                row = []
                for h in range(2):
                    ph = builder.phi(_V8I32)
                    ph.add_incoming(init[r][h], entry)
                    row.append(ph)
                accs.append(row)
            builder.cbranch(builder.icmp_signed("<", iv, nq), body, done)
            builder.position_at_end(body)
            boff = builder.mul(iv, _c(64))
            bv = [builder.load(builder.bitcast(builder.gep(pb_p, [builder.add(boff, _c(32 * h))]),
                                               _V32I8.as_pointer()), align=1) for h in range(2)]
            aoff = builder.mul(iv, _c(4))
            new = []
            for r in range(rows):
                w = builder.load(builder.bitcast(builder.gep(arow[r], [aoff]), _i32.as_pointer()), align=1)
                s = builder.insert_element(ir.Constant(_V8I32, None), w, ir.Constant(_i32, 0))
                s = builder.bitcast(builder.shuffle_vector(s, s, ir.Constant(_V8I32, [0] * 8)), _V32I8)
                new.append([builder.add(accs[r][h], step(s, bv[h])) for h in range(2)])
            latch = builder.block
            iv.add_incoming(builder.add(iv, _c(1)), latch)
            for r in range(rows):
                for h in range(2):
                    accs[r][h].add_incoming(new[r][h], latch)
            builder.branch(loop)
            builder.position_at_end(done)
            for r in range(rows):
                for h in range(2):
                    builder.store(accs[r][h], optr[r][h], align=4)
            return context.get_dummy_value()

        return sig, codegen

    return kernel


_T4 = _make_tile_kernel(MR)


def packed_shapes(M: int, K: int, N: int) -> tuple[tuple[int, int], tuple[int, int, int], tuple[int, int]]:
    """Shapes of the packed a' (Mp, Kp), the packed b' (Np/16, Kp/4, 64) and the raw product (Mp, Np)."""
    Mp, Kp, Np = -(-M // MR) * MR, -(-K // 4) * 4, -(-N // NR) * NR
    return (Mp, Kp), (Np // NR, Kp // 4, 64), (Mp, Np)


@njit(cache=True)
def pack_a_u8(a, ca, out):
    """out (Mp, Kp) uint8 ← a' = a + ca, zero padded (every byte written); returns the row
    sums Σ_k a'[m, k] as int64 (M,). The caller guarantees 0 ≤ a + ca ≤ 255."""
    M, K = a.shape
    Mp, Kp = out.shape
    sums = np.zeros(M, np.int64)
    for m in range(Mp):
        if m < M:
            s = np.int64(0)
            for k in range(K):
                v = np.int64(a[m, k]) + ca
                out[m, k] = np.uint8(v)
                s += v
            sums[m] = s
            for k in range(K, Kp):
                out[m, k] = 0
        else:
            for k in range(Kp):
                out[m, k] = 0
    return sums


def pack_a_u8_reference(a, ca, out) -> np.ndarray:
    """NumPy twin of `pack_a_u8`."""
    M, K = a.shape
    v = a.astype(np.int64) + ca
    out[...] = 0
    out[:M, :K] = v
    return v.sum(axis=1)


@njit(cache=True)
def pack_b_s8(b, cb, out):
    """out (Np/16, Kp/4, 64) int8 ← b' = b − cb with b'[4q + t, 16p + c] at out[p, q, 4c + t]
    (K, N rounded up to 4, 16, zero padded, every byte written); returns the column sums
    Σ_k b'[k, n] as int64 (N,). The caller guarantees −128 ≤ b − cb ≤ 127."""
    K, N = b.shape
    P, Kq, _ = out.shape
    sums = np.zeros(N, np.int64)
    for q in range(Kq):
        if 4 * q + 4 <= K:          # four whole rows: 4 contiguous bytes per column
            for n in range(N):
                v0 = np.int64(b[4 * q, n]) - cb
                v1 = np.int64(b[4 * q + 1, n]) - cb
                v2 = np.int64(b[4 * q + 2, n]) - cb
                v3 = np.int64(b[4 * q + 3, n]) - cb
                p = n // NR
                c = 4 * (n - p * NR)
                out[p, q, c] = np.int8(v0)
                out[p, q, c + 1] = np.int8(v1)
                out[p, q, c + 2] = np.int8(v2)
                out[p, q, c + 3] = np.int8(v3)
                sums[n] += v0 + v1 + v2 + v3
        else:
            for n in range(N):
                for t in range(4):
                    if 4 * q + t < K:
                        v = np.int64(b[4 * q + t, n]) - cb
                        out[n // NR, q, 4 * (n % NR) + t] = np.int8(v)
                        sums[n] += v
                    else:
                        out[n // NR, q, 4 * (n % NR) + t] = 0
        for n in range(N, P * NR):
            for t in range(4):
                out[n // NR, q, 4 * (n % NR) + t] = 0
    return sums


def pack_b_s8_reference(b, cb, out) -> np.ndarray:
    """NumPy twin of `pack_b_s8`."""
    K, N = b.shape
    P, Kq, _ = out.shape
    v = np.zeros((Kq * 4, P * NR), np.int64)
    v[:K, :N] = b.astype(np.int64) - cb
    out[...] = v.reshape(Kq, 4, P, NR).transpose(2, 0, 3, 1).reshape(P, Kq, 64)
    return v[:K, :N].sum(axis=0)


@njit(cache=True)
def gemm_madd8(ap, bp, out):
    """out (Mp, Np) int32 ← Σ_k a'[m, k]·b'[k, n] from the packed operands of `pack_a_u8`
    (ap (Mp, Kp) uint8) and `pack_b_s8` (bp (Np/16, Kp/4, 64) int8); every element is
    written. The caller guarantees 2·max a'·max|b'| ≤ 32767 and Kp·max a'·max|b'| < 2^31."""
    Mp, Kp = ap.shape
    P = bp.shape[0]
    Np = P * NR
    out[:, :] = 0
    if Mp == 0 or Np == 0 or Kp == 0:
        return
    pa0 = np.int64(ap.ctypes.data)         # addresses as signed ints (uint64 + int64 is float64 in Numba)
    pb0 = np.int64(bp.ctypes.data)
    po0 = np.int64(out.ctypes.data)
    pstride = np.int64(bp.shape[1]) * 64   # bytes per panel
    for k0 in range(0, Kp, KC):
        nq = (min(Kp, k0 + KC) - k0) // 4
        for p0 in range(0, P, NC // NR):
            p1 = min(P, p0 + NC // NR)
            for m0 in range(0, Mp, MR):
                pa = pa0 + m0 * Kp + k0
                for p in range(p0, p1):
                    _T4(pa, Kp, pb0 + p * pstride + k0 * 16, nq, po0 + 4 * (m0 * Np + p * NR), Np)


def gemm_madd8_reference(ap, bp, out) -> None:
    """NumPy twin of `gemm_madd8` (int64 product of the unpacked operands, then int32)."""
    P, Kq, _ = bp.shape
    b = bp.reshape(P, Kq, NR, 4).transpose(1, 3, 0, 2).reshape(Kq * 4, P * NR)
    out[...] = (ap.astype(np.int64) @ b.astype(np.int64)).astype(np.int32)


@njit(cache=True)
def finish_madd8(raw, asum, bsum, za, zb, K, out):
    """out[m, n] = raw[m, n] − za·bsum[n] − zb[n]·asum[m] + K·za·zb[n] (int64 arithmetic,
    then out's dtype: the caller guarantees the exact value fits)."""
    M, N = out.shape
    ot = out.dtype.type
    for m in range(M):
        am = asum[m]
        for n in range(N):
            out[m, n] = ot(np.int64(raw[m, n]) - za * bsum[n] - zb[n] * am + K * za * zb[n])


def finish_madd8_reference(raw, asum, bsum, za, zb, K, out) -> None:
    """NumPy twin of `finish_madd8`."""
    M, N = out.shape
    out[...] = (raw[:M, :N].astype(np.int64) - za * bsum[None, :] - zb[None, :] * asum[:, None]
                + K * za * zb[None, :]).astype(out.dtype)


def madd8_plan(a: np.ndarray, b: np.ndarray) -> tuple[int, int] | None:
    """(ca, cb) making a + ca unsigned and b − cb signed bytes with every int16 pair sum and
    int32 running sum of the byte kernel provably exact (from the data's min/max), else None."""
    if a.dtype.itemsize != 1 or b.dtype.itemsize != 1 or a.size == 0 or b.size == 0:
        return None
    alo, ahi = int(a.min()), int(a.max())
    blo, bhi = int(b.min()), int(b.max())
    ca = 0 if alo >= 0 else 128
    cb = 0 if bhi <= 127 else 128
    if not (0 <= alo + ca and ahi + ca <= 255 and -128 <= blo - cb and bhi - cb <= 127):
        return None
    amax = ahi + ca
    bmax = max(abs(blo - cb), abs(bhi - cb))
    K = a.shape[1]
    if 2 * amax * bmax > PAIR_LIMIT or (K + 3) * amax * bmax >= _I32_LIMIT:
        return None
    return ca, cb


def madd8_matmul(a: np.ndarray, b: np.ndarray, za, zb, plan: tuple[int, int], out_dtype=np.int64,
                 scratch=None) -> np.ndarray:
    """Exact Σ_k (a − za)(b − zb) as `out_dtype` (M, N); zb scalar or (N,); plan from
    `madd8_plan`. out_dtype int32 only when the exact result fits. `scratch(name, shape,
    dtype)` may supply reusable work arrays (fresh ones by default)."""
    ca, cb = plan
    M, K = a.shape
    N = b.shape[1]
    sa, sb, so = packed_shapes(M, K, N)
    get = scratch or (lambda name, shape, dtype: np.empty(shape, dtype))
    ap = get("madd8_a", sa, np.uint8)
    bp = get("madd8_b", sb, np.int8)
    raw = get("madd8_out", so, np.int32)
    asum = pack_a_u8(a, np.int64(ca), ap)
    bsum = pack_b_s8(b, np.int64(cb), bp)
    gemm_madd8(ap, bp, raw)
    zb_ = np.broadcast_to(np.asarray(zb, np.int64) - cb, (N,))
    out = np.empty((M, N), out_dtype)
    finish_madd8(raw, asum, bsum, np.int64(int(za) + ca), np.ascontiguousarray(zb_), np.int64(K), out)
    return out
