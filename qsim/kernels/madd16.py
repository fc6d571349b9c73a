"""Exact small-M integer products (GEMV and M ≤ 8) through int16 pair multiply-adds.

out[m, n] = Σ_k a16[m, k]·b[k, n] with a16 = a − za as int16 and b raw 8-bit codes, in
int32. The inner kernel is LLVM IR emitted by a Numba intrinsic: for two rows k, k+1 of
the row-major weight it interleaves 16 columns of each, widens them to int16 and
multiplies them by the broadcast pair (a16[m, k], a16[m, k+1]) with a pairwise
multiply-add (16 × i16 products summed in adjacent pairs into 8 × i32: the AVX2
`vpmaddwd` intrinsic when Numba targets an AVX2 host, else the equivalent generic IR).
The weight is read once, 4 rows at a time, in its (K, N) layout with a software prefetch
~64 KiB ahead: no transpose, prepacking or cache, so every call costs the same. A
single-row GEMV is then bound by reading the weight from memory.

Exactness: every product and pair sum is an integer well inside int32 and the running
sums are int32, so the result is exact when K·max|a16|·max|b| < 2^31 and |a16| ≤ 32767
(the caller's check, `madd16_fits`). Integer additions are associative, so the order the
kernel adds in cannot change the value.
"""

from __future__ import annotations

import platform

import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import config as numba_config
from numba import njit, types
from numba.extending import intrinsic

MADD16_ROWS = 8        # at most this many rows of `a` take this path
_I32_LIMIT = 1 << 31

_i8, _i16, _i32, _i64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
_V16I8, _V16I16 = ir.VectorType(_i8, 16), ir.VectorType(_i16, 16)
_V8I32, _V16I32 = ir.VectorType(_i32, 8), ir.VectorType(_i32, 16)


def _host_avx2() -> bool:
    """Numba compiles for this host (no NUMBA_CPU_NAME override) and it has AVX2: the
    kernel may call the AVX2 multiply-add intrinsic directly."""
    if platform.machine().lower() not in ("x86_64", "amd64") or numba_config.CPU_NAME:
        return False
    try:
        return bool(llvm_binding.get_host_cpu_features().get("avx2", False))
    except RuntimeError:
        return False


USE_AVX2_INTRINSIC = _host_avx2()


def _c(v: int):
    return ir.Constant(_i64, v)


def _make_rows_kernel(MR: int, KP: int, unsigned_b: bool):
    """Intrinsic kernel(pa, lda, pb, ldb, nchunks, pout, ldo, pf), integer addresses/strides.

    For r < MR, q < KP and n < 16·nchunks:
        out[r, n] += pair(r, q)·(b[2q, n], b[2q+1, n])
    where pair(r, q) is the int32 word at pa + 4·(r·lda + q) holding the int16s
    (a16[r, 2q], a16[r, 2q+1]) (little endian), b rows are `ldb` bytes apart starting at pb
    (int8, or uint8 when unsigned_b), out rows int32 `ldo` elements apart from pout.
    Each step also prefetches the same columns `pf` bytes further on in every b row (a
    prefetch never faults, so it may point past the end of b)."""
    ev = ir.Constant(_V8I32, [2 * j for j in range(8)])
    od = ir.Constant(_V8I32, [2 * j + 1 for j in range(8)])
    lo_mask = ir.Constant(_V16I32, [x for j in range(8) for x in (j, 16 + j)])
    hi_mask = ir.Constant(_V16I32, [x for j in range(8, 16) for x in (j, 16 + j)])

    @intrinsic
    def kernel(typingctx, pa, lda, pb, ldb, nchunks, pout, ldo, pf):
        sig = types.void(*([types.intp] * 8))

        def codegen(context, builder, signature, args):
            pa, lda, pb, ldb, nchunks, pout, ldo, pf = args
            widen = builder.zext if unsigned_b else builder.sext

            if USE_AVX2_INTRINSIC:   # vpmaddwd itself: the generic pattern below is matched to it
                name = "llvm.x86.avx2.pmadd.wd"   # too, but LLVM then rebuilds the a splats in the loop
                fn = builder.module.globals.get(name) or ir.Function(
                    builder.module, ir.FunctionType(_V8I32, [_V16I16, _V16I16]), name)

                def madd(x, y):
                    return builder.call(fn, [x, y])
            else:
                def madd(x, y):   # i16×i16 → i32, adjacent pairs summed (pmaddwd semantics)
                    p = builder.mul(builder.sext(x, _V16I32), builder.sext(y, _V16I32))
                    return builder.add(builder.shuffle_vector(p, p, ev), builder.shuffle_vector(p, p, od))

            pa_p = builder.inttoptr(pa, _i32.as_pointer())
            pb_p = builder.inttoptr(pb, _i8.as_pointer())
            po_p = builder.inttoptr(pout, _i32.as_pointer())
            splats = []
            for r in range(MR):
                row = []
                for q in range(KP):
                    w = builder.load(builder.gep(pa_p, [builder.add(builder.mul(_c(r), lda), _c(q))]), align=4)
                    s = builder.insert_element(ir.Constant(_V8I32, None), w, ir.Constant(_i32, 0))
                    s = builder.shuffle_vector(s, s, ir.Constant(_V8I32, [0] * 8))
                    row.append(builder.bitcast(s, _V16I16))
                splats.append(row)
            brow = [builder.gep(pb_p, [builder.mul(_c(j), ldb)]) for j in range(2 * KP)]
            orow = [builder.gep(po_p, [builder.mul(_c(r), ldo)]) for r in range(MR)]
            entry = builder.block
            loop = builder.append_basic_block("madd16_loop")
            body = builder.append_basic_block("madd16_body")
            done = builder.append_basic_block("madd16_done")
            builder.branch(loop)
            builder.position_at_end(loop)
            iv = builder.phi(_i64)
            iv.add_incoming(_c(0), entry)
            builder.cbranch(builder.icmp_signed("<", iv, nchunks), body, done)
            builder.position_at_end(body)
            col = builder.mul(iv, _c(16))
            prefetch = builder.module.globals.get("llvm.prefetch.p0i8") or ir.Function(
                builder.module, ir.FunctionType(ir.VoidType(), [_i8.as_pointer(), _i32, _i32, _i32]),
                "llvm.prefetch.p0i8")
            for j in range(2 * KP):   # read prefetch, high locality, data cache
                builder.call(prefetch, [builder.gep(brow[j], [builder.add(col, pf)]),
                                        ir.Constant(_i32, 0), ir.Constant(_i32, 3), ir.Constant(_i32, 1)])
            ws = []
            for q in range(KP):
                x0 = builder.load(builder.bitcast(builder.gep(brow[2 * q], [col]), _V16I8.as_pointer()), align=1)
                x1 = builder.load(builder.bitcast(builder.gep(brow[2 * q + 1], [col]), _V16I8.as_pointer()), align=1)
                ws.append((widen(builder.shuffle_vector(x0, x1, lo_mask), _V16I16),
                           widen(builder.shuffle_vector(x0, x1, hi_mask), _V16I16)))
            for r in range(MR):
                for h in range(2):
                    p = builder.bitcast(builder.gep(orow[r], [builder.add(col, _c(8 * h))]), _V8I32.as_pointer())
                    acc = builder.load(p, align=4)
                    for q in range(KP):
                        acc = builder.add(acc, madd(ws[q][h], splats[r][q]))
                    builder.store(acc, p, align=4)
            iv.add_incoming(builder.add(iv, _c(1)), builder.block)
            builder.branch(loop)
            builder.position_at_end(done)
            return context.get_dummy_value()

        return sig, codegen

    return kernel


# 4, 2 or 1 rows of a by 2 k pairs (4 rows of b) per call, with a software prefetch ≥ 64 KiB
# ahead: on Zen3 the fastest of 1–8 rows × 1–8 pairs × 16–64 columns × prefetch distances
# measured against ORT (a single-row GEMV is bound by reading the weight from DRAM).
_S4 = _make_rows_kernel(4, 2, False)
_S2 = _make_rows_kernel(2, 2, False)
_S1 = _make_rows_kernel(1, 2, False)
_U4 = _make_rows_kernel(4, 2, True)
_U2 = _make_rows_kernel(2, 2, True)
_U1 = _make_rows_kernel(1, 2, True)
_PREFETCH_BYTES = 1 << 16


@njit(cache=True)
def gemv_madd16(a16, b, unsigned_b):
    """Σ_k a16[m, k]·b[k, n] as int32 (M, N); a16 (M, K2) C-contiguous int16 with K2 ≥ K
    even (columns ≥ K are ignored), b (K, N) C-contiguous int8 (uint8 when unsigned_b).
    The caller guarantees K·max|a16|·max|b| < 2^31."""
    M = a16.shape[0]
    K, N = b.shape
    out = np.zeros((M, N), np.int32)
    if M == 0 or N == 0:
        return out
    K4 = K - K % 4
    N16 = N - N % 16
    nch = N16 // 16
    lda = a16.shape[1] // 2                 # row stride of the int32 pair words
    pa0 = np.int64(a16.ctypes.data)         # addresses as signed ints (uint64 + int64 is float64 in Numba)
    pb0 = np.int64(b.ctypes.data)
    po0 = np.int64(out.ctypes.data)
    pf = (_PREFETCH_BYTES // N + 1) * N     # whole rows ahead
    if nch > 0:
        for k0 in range(0, K4, 4):
            pb = pb0 + k0 * N
            m0 = 0
            while m0 < M:
                pa = pa0 + 4 * (m0 * lda + k0 // 2)
                po = po0 + 4 * m0 * N
                if M - m0 >= 4:
                    if unsigned_b:
                        _U4(pa, lda, pb, N, nch, po, N, pf)
                    else:
                        _S4(pa, lda, pb, N, nch, po, N, pf)
                    m0 += 4
                elif M - m0 >= 2:
                    if unsigned_b:
                        _U2(pa, lda, pb, N, nch, po, N, pf)
                    else:
                        _S2(pa, lda, pb, N, nch, po, N, pf)
                    m0 += 2
                else:
                    if unsigned_b:
                        _U1(pa, lda, pb, N, nch, po, N, pf)
                    else:
                        _S1(pa, lda, pb, N, nch, po, N, pf)
                    m0 += 1
    for m in range(M):           # ragged edges: the last K % 4 rows and the last N % 16 columns
        for k in range(K4, K):
            av = np.int32(a16[m, k])
            for n in range(N16):
                out[m, n] += av * np.int32(b[k, n])
        for n in range(N16, N):
            s = np.int32(0)
            for k in range(K):
                s += np.int32(a16[m, k]) * np.int32(b[k, n])
            out[m, n] = s
    return out


def gemv_madd16_reference(a16, b, unsigned_b=None) -> np.ndarray:
    """NumPy twin of `gemv_madd16` (int64 product, then int32: exact under its bound)."""
    K = b.shape[0]
    return (a16[:, :K].astype(np.int64) @ b.astype(np.int64)).astype(np.int32)


def madd16_fits(M: int, K: int, b: np.ndarray, max_a: int) -> bool:
    """Whether `madd16_matmul` applies: few rows, 8-bit C-contiguous weight, |a − za| ≤ 32767
    and every int32 running sum provably exact (K·max_a·max|b code| < 2^31)."""
    if not (1 <= M <= MADD16_ROWS) or b.dtype not in (np.int8, np.uint8) or not b.flags.c_contiguous:
        return False
    b_max = 128 if b.dtype == np.int8 else 255
    return max_a <= 32767 and max(K, 1) * max_a * b_max < _I32_LIMIT


def madd16_matmul(a: np.ndarray, b: np.ndarray, za: int) -> np.ndarray:
    """Σ_k (a[m, k] − za)·b[k, n] as int32 (raw b: the caller applies b's zero point).
    Only valid when `madd16_fits(M, K, b, max|a − za|)`."""
    M, K = a.shape
    a16 = np.zeros((M, K + (K & 1)), np.int16)
    np.subtract(a, za, out=a16[:, :K], dtype=np.int32, casting="unsafe")   # exact: |a − za| ≤ 32767
    return gemv_madd16(a16, b, b.dtype == np.uint8)
