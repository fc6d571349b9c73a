"""Exact 8-bit integer products through VNNI `vpdpbusd` (AVX-512 VNNI zmm, AVX-VNNI ymm).

`vpdpbusd acc, u, s` adds to each int32 lane the sum of four u8×s8 products of the bytes
in that lane, with no intermediate saturation (unlike `vpmaddubsw`'s int16 pairs). With
a' = a + ca as unsigned bytes (ca = 128 for int8 activations, else 0) and b' = b − cb as
signed bytes (cb = 128 for a uint8 weight, else 0), every running int32 sum is exact as
long as Kp·max a'·max|b'| ≤ Kp·255·128 < 2^31 (Kp = K rounded up to 4), i.e. for any
8-bit data with K ≤ `K_MAX`: `vnni_fits` checks it from the dtypes, no data pass needed.
The caller's zero points (and bias) are applied exactly afterwards:

    Σ (a − za)(b − zb) = Σ a'b' − za'·Σ_k b' − zb'·Σ_k a' + K·za'·zb',
    za' = za + ca,  zb' = zb − cb,

in the micro-kernel's epilogue in wrapping int32 when the caller knows the exact result
fits int32 (then the value mod 2^32 is the value), else in int64 (`finish_raw`).

Three kernels, all LLVM IR emitted by Numba intrinsics:

- **packed GEMM / conv** (M > `GEMV_ROWS`): the weight is packed into panels of `nr`
  columns × 4 k (b'[4q + t, p·nr + c] at byte 4c + t of panel p, step q, zero padded),
  a' into strips of `rows` rows × 4 k — for a conv straight from the (padded) input image,
  no im2col copy (k order (c, i, j)). The micro-kernel keeps `rows` × `nr` int32
  accumulators in registers (12 × 32 in zmm, 6 × 16 in ymm), broadcasting 4 bytes of a'
  per row and step; loops are blocked over K (`KC`) and N (`NC`) so a weight block stays
  in L2 while strips of a' stream through it. Per call, `vnni_i32` packs the weight
  (`pack_weight`: panels, column sums Σ_k b', epilogue vectors) and `packed_run` packs a'
  (`pack_a`: matrix strips or conv patches) and multiplies (`gemm_vnni512` /
  `gemm_vnni256`): separate Numba functions called from Python, so each compiles once (a
  caller re-optimises every callee linked into it) and only those a call needs compile;
  the operands are padded first (`pad_bytes`, pad bytes pack to 0), so each packer is one
  branch-free loop nest (`pack_b_panels`, `pack_a_strips`, `pack_a_conv` and
  `epilogue_vectors` are the earlier per-tail forms, kept with their NumPy twins).
- **small M over a prepacked weight** (`qsim.kernels.prepack`, M ≤ 8 zmm / ≤ 4 ymm): the
  same tile kernel with 1, 2, 4 or 8 rows runs each panel over the whole K in one call
  (`small_packed`), the epilogue included; a weight packed once skips `pack_weight`.
- **GEMV / small M** (M ≤ `GEMV_ROWS`): the (K, N) weight is read as given (no packing):
  4 rows × 4·lanes columns are interleaved in registers into the quad layout (byte
  unpacks) and multiplied with up to 4 broadcast rows (one or two rows: 4 or 2 column
  chunks per call). When every a − za fits a signed byte (u8 with za = 128, int8 with
  za = 0), d = a − za is the signed operand and the flipped weight b' + 128 the unsigned
  one: Σ d·(b − zb) = raw − (128 + zb')·Σ_k d, no weight sums. Otherwise the column sums
  Σ_k b' come from one extra row of a' holding za' (its products *are* za'·Σ_k b'), so
  the weight is still read once. Results land in a scratch array whose columns are
  permuted within each 4·lanes chunk (`gemv_column_position`); `finish_gemv` reads them
  back in order.

Integer additions are associative, so the kernels' order cannot change the value; each
has a NumPy twin below. Only call the zmm (ymm) functions on a host with AVX-512 VNNI
(AVX-VNNI): `qsim.kernels.cpu` decides, and the two widths never share a Numba function
(the ymm path compiles on a CPU without AVX-512). Work arrays whose addresses the kernels
use are always arguments of the function running the kernel, so they stay alive.
"""

from __future__ import annotations

import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from qsim.kernels._checks import conv_output_hw

GEMV_ROWS = 8            # at most this many rows of a: the unpacked-weight kernel
GEMV_KB = 4              # quads of k (4 weight rows each) per pass of the GEMV kernel over the columns
KC, NC = 512, 512        # K and N cache blocks of the packed GEMM (bytes of k, columns)
K_MAX = ((1 << 31) - 1) // (255 * 128) - 3   # Kp·255·128 < 2^31 for every K ≤ this

# (rows, vectors per row, int32 lanes per vector) of the packed micro-kernel
ZMM_TILE = (12, 2, 16)   # 24 zmm accumulators, panels of 32 columns
YMM_TILE = (6, 2, 8)     # 12 ymm accumulators, panels of 16 columns

_i8, _i32, _i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
_I8_OPERANDS = llvm_binding.llvm_version_info[0] >= 22   # LLVM 22 declares the byte operands as i8 vectors


def _c(v: int):
    return ir.Constant(_i64, v)


def _dpbusd(builder, lanes: int):
    """acc, u (bytes as <lanes x i32>), s (<4·lanes x i8>) → acc + Σ_quad u8·s8 (vpdpbusd)."""
    va, vb = ir.VectorType(_i32, lanes), ir.VectorType(_i8, 4 * lanes)
    name = f"llvm.x86.avx512.vpdpbusd.{32 * lanes}"
    op = vb if _I8_OPERANDS else va
    fn = builder.module.globals.get(name) or ir.Function(builder.module, ir.FunctionType(va, [va, op, op]), name)

    def dp(acc, u, s):
        return builder.call(fn, [acc, builder.bitcast(u, op), builder.bitcast(s, op)])

    return dp


def _splat(builder, word, lanes: int):
    va = ir.VectorType(_i32, lanes)
    s = builder.insert_element(ir.Constant(va, None), word, ir.Constant(_i32, 0))
    return builder.shuffle_vector(s, s, ir.Constant(va, [0] * lanes))


def _make_tile_kernel(rows: int, nv: int, lanes: int):
    """Intrinsic kernel(pa, pb, nq, pout, ldo, first, last, pcol, pnzb, prow), integer
    addresses/strides.

    For r < rows, c < nr = nv·lanes:
        out[r, c] = (0 if first else out[r, c]) + Σ_{q<nq, t<4} a'[r, 4q + t]·b'[4q + t, c]
                    (+ col[c] + row[r]·nzb[c] if last)
    with the strip of a' (uint8) at pa + 4·rows·q + 4r + t, the packed panel (int8) at
    pb + 4·nr·q + 4c + t, out int32 rows `ldo` elements apart from pout, and int32 vectors
    col, nzb at pcol, pnzb and row at prow. All int32 arithmetic wraps (mod 2^32)."""
    va = ir.VectorType(_i32, lanes)
    vb = ir.VectorType(_i8, 4 * lanes)
    nr = nv * lanes

    @intrinsic
    def kernel(typingctx, pa, pb, nq, pout, ldo, first, last, pcol, pnzb, prow):
        sig = types.void(*([types.intp] * 10))

        def codegen(context, builder, signature, args):
            pa, pb, nq, pout, ldo, first, last, pcol, pnzb, prow = args
            dp = _dpbusd(builder, lanes)
            pa_p = builder.inttoptr(pa, _i32.as_pointer())
            pb_p = builder.inttoptr(pb, _i8.as_pointer())
            po_p = builder.inttoptr(pout, _i32.as_pointer())
            is_first = builder.icmp_signed("!=", first, _c(0))
            zero = ir.Constant(va, [0] * lanes)
            optr = [[builder.bitcast(builder.gep(po_p, [builder.add(builder.mul(_c(r), ldo), _c(lanes * v))]),
                                     va.as_pointer()) for v in range(nv)] for r in range(rows)]
            init = [[builder.select(is_first, zero, builder.load(optr[r][v], align=4)) for v in range(nv)]
                    for r in range(rows)]
            entry = builder.block
            loop = builder.append_basic_block("vnni_loop")
            body = builder.append_basic_block("vnni_body")
            done = builder.append_basic_block("vnni_done")
            builder.branch(loop)
            builder.position_at_end(loop)
            iv = builder.phi(_i64)
            iv.add_incoming(_c(0), entry)
            accs = []
            for r in range(rows):
                row = []
                for v in range(nv):
                    ph = builder.phi(va)
                    ph.add_incoming(init[r][v], entry)
                    row.append(ph)
                accs.append(row)
            builder.cbranch(builder.icmp_signed("<", iv, nq), body, done)
            builder.position_at_end(body)
            boff = builder.mul(iv, _c(4 * nr))
            bv = [builder.load(builder.bitcast(builder.gep(pb_p, [builder.add(boff, _c(4 * lanes * v))]),
                                               vb.as_pointer()), align=1) for v in range(nv)]
            aoff = builder.mul(iv, _c(rows))
            new = []
            for r in range(rows):
                w = builder.load(builder.gep(pa_p, [builder.add(aoff, _c(r))]), align=1)
                s = _splat(builder, w, lanes)
                new.append([dp(accs[r][v], s, bv[v]) for v in range(nv)])
            latch = builder.block
            iv.add_incoming(builder.add(iv, _c(1)), latch)
            for r in range(rows):
                for v in range(nv):
                    accs[r][v].add_incoming(new[r][v], latch)
            builder.branch(loop)
            builder.position_at_end(done)
            is_last = builder.icmp_signed("!=", last, _c(0))
            col_p = builder.inttoptr(pcol, va.as_pointer())
            nzb_p = builder.inttoptr(pnzb, va.as_pointer())
            row_p = builder.inttoptr(prow, _i32.as_pointer())
            col = [builder.load(builder.gep(col_p, [_c(v)]), align=4) for v in range(nv)]
            nzb = [builder.load(builder.gep(nzb_p, [_c(v)]), align=4) for v in range(nv)]
            for r in range(rows):
                rv = _splat(builder, builder.load(builder.gep(row_p, [_c(r)]), align=4), lanes)
                for v in range(nv):
                    fin = builder.add(builder.add(accs[r][v], col[v]), builder.mul(rv, nzb[v]))
                    builder.store(builder.select(is_last, fin, accs[r][v]), optr[r][v], align=4)
            return context.get_dummy_value()

        return sig, codegen

    return kernel


def _unpack_masks(lanes: int):
    """Shuffle masks of the byte/word unpacks (per 128-bit block, as vpunpck{l,h}{bw,wd})
    that turn 4 rows × 4·lanes bytes into 4 vectors of quads (see `gemv_column_position`)."""
    nb = 4 * lanes            # bytes per row vector
    blocks = nb // 16

    def unpack(width, hi, n_elems):    # elements of `width` bytes: interleave x, y per 16-byte block
        per = 16 // width
        half = per // 2
        m = []
        for blk in range(blocks):
            for j in range(half):
                src = blk * per + (half if hi else 0) + j
                m += [src, n_elems + src]
        return ir.Constant(ir.VectorType(_i32, nb // width), m)

    return (unpack(1, False, nb), unpack(1, True, nb), unpack(2, False, nb // 2), unpack(2, True, nb // 2))


def gemv_column_position(c: int, lanes: int) -> int:
    """Where column c of a 4·lanes-column chunk lands in the GEMV kernel's accumulators:
    vector g = (c mod 16) // 4 holds, in its 128-bit block c // 16, the columns 4g..4g+3."""
    return ((c % 16) // 4) * lanes + 4 * (c // 16) + c % 4


def _make_rows_kernel(rows: int, lanes: int, swapped: bool = False, chunks: int = 1):
    """Intrinsic kernel(pa, lda, pb, ldb, nq, pout, ldo, first, pf), integer addresses/strides.

    For r < rows and each of the `chunks` adjacent chunks of cw = 4·lanes columns from pb
    (chunk h's accumulators at out columns h·cw + pos(c)):
        out[r, pos(c)] = (0 if first else out[r, pos(c)]) + Σ_{q<nq, t<4} a'[r, 4q+t]·b'[4q+t, c]
    with a' bytes (uint8) at pa + r·lda + 4q + t, the weight (int8, row-major) at
    pb + (4q + t)·ldb + c, pos = `gemv_column_position`, out int32 rows `ldo` apart.
    `pf` is unused (software prefetching the next rows measured slower on Zen 5).
    swapped: the activation bytes are signed (d, int8) and the weight bytes are flipped to
    unsigned (b + 128, XOR 0x80), so the sums are Σ d·(b + 128)."""
    va = ir.VectorType(_i32, lanes)
    nb = 4 * lanes
    vrow = ir.VectorType(_i8, nb)
    vw = ir.VectorType(ir.IntType(16), nb // 2)
    m_bl, m_bh, m_wl, m_wh = _unpack_masks(lanes)

    @intrinsic
    def kernel(typingctx, pa, lda, pb, ldb, nq, pout, ldo, first, pf):
        sig = types.void(*([types.intp] * 9))

        def codegen(context, builder, signature, args):
            pa, lda, pb, ldb, nq, pout, ldo, first, pf = args
            del pf      # reserved (software prefetching measured slower than the hardware's)
            dp = _dpbusd(builder, lanes)
            pa_p = builder.inttoptr(pa, _i8.as_pointer())
            pb_p = builder.inttoptr(pb, _i8.as_pointer())
            po_p = builder.inttoptr(pout, _i32.as_pointer())
            is_first = builder.icmp_signed("!=", first, _c(0))
            zero = ir.Constant(va, [0] * lanes)
            arow = [builder.gep(pa_p, [builder.mul(_c(r), lda)]) for r in range(rows)]
            nacc = 4 * chunks
            optr = [[builder.bitcast(builder.gep(po_p, [builder.add(builder.mul(_c(r), ldo),
                                                                    _c(nb * (g // 4) + lanes * (g % 4)))]),
                                     va.as_pointer()) for g in range(nacc)] for r in range(rows)]
            init = [[builder.select(is_first, zero, builder.load(optr[r][g], align=4)) for g in range(nacc)]
                    for r in range(rows)]
            ldb4 = builder.mul(ldb, _c(4))
            entry = builder.block
            loop = builder.append_basic_block("gemv_loop")
            body = builder.append_basic_block("gemv_body")
            done = builder.append_basic_block("gemv_done")
            builder.branch(loop)
            builder.position_at_end(loop)
            iv = builder.phi(_i64)
            iv.add_incoming(_c(0), entry)
            accs = []
            for r in range(rows):
                row = []
                for g in range(nacc):
                    ph = builder.phi(va)
                    ph.add_incoming(init[r][g], entry)
                    row.append(ph)
                accs.append(row)
            builder.cbranch(builder.icmp_signed("<", iv, nq), body, done)
            builder.position_at_end(body)
            base0 = builder.gep(pb_p, [builder.mul(iv, ldb4)])
            aoff = builder.mul(iv, _c(4))
            splats = [_splat(builder, builder.load(builder.bitcast(builder.gep(arow[r], [aoff]), _i32.as_pointer()),
                                                   align=1), lanes) for r in range(rows)]
            new = [[] for _ in range(rows)]
            for h in range(chunks):
                base = builder.gep(base0, [_c(nb * h)])
                x = [builder.load(builder.bitcast(builder.gep(base, [builder.mul(_c(t), ldb)]), vrow.as_pointer()),
                                  align=1) for t in range(4)]
                lo01 = builder.bitcast(builder.shuffle_vector(x[0], x[1], m_bl), vw)
                hi01 = builder.bitcast(builder.shuffle_vector(x[0], x[1], m_bh), vw)
                lo23 = builder.bitcast(builder.shuffle_vector(x[2], x[3], m_bl), vw)
                hi23 = builder.bitcast(builder.shuffle_vector(x[2], x[3], m_bh), vw)
                quads = [builder.shuffle_vector(lo01, lo23, m_wl), builder.shuffle_vector(lo01, lo23, m_wh),
                         builder.shuffle_vector(hi01, hi23, m_wl), builder.shuffle_vector(hi01, hi23, m_wh)]
                if swapped:
                    flip = ir.Constant(vw, [-32640] * (nb // 2))          # 0x8080: every byte's top bit
                    quads = [builder.xor(qv, flip) for qv in quads]
                for r in range(rows):
                    new[r] += [dp(accs[r][4 * h + g], quads[g], splats[r]) if swapped
                               else dp(accs[r][4 * h + g], splats[r], quads[g]) for g in range(4)]
            latch = builder.block
            iv.add_incoming(builder.add(iv, _c(1)), latch)
            for r in range(rows):
                for g in range(nacc):
                    accs[r][g].add_incoming(new[r][g], latch)
            builder.branch(loop)
            builder.position_at_end(done)
            for r in range(rows):
                for g in range(nacc):
                    builder.store(accs[r][g], optr[r][g], align=4)
            return context.get_dummy_value()

        return sig, codegen

    return kernel


_Z_TILE = _make_tile_kernel(*ZMM_TILE)
_Y_TILE = _make_tile_kernel(*YMM_TILE)
_Z_ROWS4, _Z_ROWS2, _Z_ROWS1 = (_make_rows_kernel(r, 16) for r in (4, 2, 1))
_Y_ROWS2, _Y_ROWS1 = (_make_rows_kernel(r, 8) for r in (2, 1))
_ZS_ROWS4, _ZS_ROWS2, _ZS_ROWS1 = (_make_rows_kernel(r, 16, True) for r in (4, 2, 1))
# one or two rows: 4 or 2 chunks (256 / 128 columns) per call, so each weight row is read in longer runs
_Z_ROWS1X4, _ZS_ROWS1X4 = _make_rows_kernel(1, 16, False, 4), _make_rows_kernel(1, 16, True, 4)
_Z_ROWS2X2, _ZS_ROWS2X2 = _make_rows_kernel(2, 16, False, 2), _make_rows_kernel(2, 16, True, 2)
_YS_ROWS2, _YS_ROWS1 = (_make_rows_kernel(r, 8, True) for r in (2, 1))


# -- packing ------------------------------------------------------------------------------
def packed_shapes(M: int, K: int, N: int, tile) -> tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int]]:
    """Shapes of the packed a' (S, Kp/4, 4·rows), the packed b' (P, Kp/4, 4·nr) and the raw
    product (S·rows, P·nr), for a micro-tile (rows, nv, lanes)."""
    rows, nv, lanes = tile
    nr = nv * lanes
    S, Kq, P = -(-M // rows), -(-K // 4), -(-N // nr)
    return (S, Kq, 4 * rows), (P, Kq, 4 * nr), (S * rows, P * nr)


@njit(cache=True)
def pack_b_panels(bu, flip, out32):
    """Pack b' = b − cb into panels from the bytes bu (K, N) uint8 of b (its uint8 view):
    cb = 128 for a uint8 b, given as flip = 0x80808080, else 0 (an int8 b's bytes already
    are b'). out32 (P, Kp/4, nr) uint32 is the view of the int8 (P, Kp/4, 4·nr) array with
    b'[4q + t, p·nr + c] at byte 4c + t of out32[p, q, c] (zero padded, every word written)."""
    K, N = bu.shape
    P, Kq, nr = out32.shape
    K4 = K - K % 4
    f8 = flip & np.uint32(0xFF)
    Pf = N // nr                                  # full panels
    for q in range(K4 // 4):
        k = 4 * q
        for p in range(Pf):
            n0 = p * nr
            for c in range(nr):
                out32[p, q, c] = (np.uint32(bu[k, n0 + c]) | (np.uint32(bu[k + 1, n0 + c]) << np.uint32(8))
                                  | (np.uint32(bu[k + 2, n0 + c]) << np.uint32(16))
                                  | (np.uint32(bu[k + 3, n0 + c]) << np.uint32(24))) ^ flip
        for p in range(Pf, P):
            n0 = p * nr
            nw = N - n0
            for c in range(nr):
                if c < nw:
                    out32[p, q, c] = (np.uint32(bu[k, n0 + c]) | (np.uint32(bu[k + 1, n0 + c]) << np.uint32(8))
                                      | (np.uint32(bu[k + 2, n0 + c]) << np.uint32(16))
                                      | (np.uint32(bu[k + 3, n0 + c]) << np.uint32(24))) ^ flip
                else:
                    out32[p, q, c] = 0
    if K4 < K:
        q = K4 // 4
        for p in range(P):
            n0 = p * nr
            nw = min(nr, N - n0)
            for c in range(nr):
                w = np.uint32(0)
                if c < nw:
                    for t in range(K - K4):
                        w |= (np.uint32(bu[K4 + t, n0 + c]) ^ f8) << np.uint32(8 * t)
                out32[p, q, c] = w


@njit(cache=True)
def column_sums(b, shift, sums):
    """sums[n] ← Σ_k b[k, n] − K·shift (int32: the caller guarantees K·256 < 2^31)."""
    K, N = b.shape
    for n in range(N):
        sums[n] = -K * shift
    for k in range(K):
        for n in range(N):
            sums[n] += np.int32(b[k, n])


def pack_b_panels_reference(bu, flip, out32) -> None:
    """NumPy twin of `pack_b_panels`."""
    K, N = bu.shape
    P, Kq, nr = out32.shape
    v = np.zeros((Kq * 4, P * nr), np.int64)
    v[:K, :N] = bu.view(np.uint8 if flip else np.int8).astype(np.int64) - (128 if flip else 0)
    out32.view(np.int8)[...] = v.reshape(Kq, 4, P, nr).transpose(2, 0, 3, 1).reshape(P, Kq, 4 * nr)


def column_sums_reference(b, shift, sums) -> None:
    """NumPy twin of `column_sums`."""
    sums[:] = b.astype(np.int64).sum(axis=0) - b.shape[0] * shift


@njit(cache=True)
def pack_a_strips(au, flip, out32, row, need_sum):
    """Pack a' = a + ca into strips from the bytes au (M, K) uint8 of a (its uint8 view):
    ca = 128 for an int8 a, given as flip = 0x80808080 (a + 128 = a's byte XOR 0x80), else 0.
    out32 (S, Kp/4, rows) uint32, the view of the uint8 (S, Kp/4, 4·rows) array
    with a'[s·rows + r, 4q + t] at byte t of out32[s, q, r] (rows beyond M and k beyond K
    zero, every word written). With need_sum, row[m] ← Σ_k a'[m, k] (wrapping int32,
    zero padded)."""
    M, K = au.shape
    S, Kq, rows = out32.shape
    K4 = K - K % 4
    f8 = flip & np.uint32(0xFF)
    if need_sum:
        b8 = np.uint8(f8)
        for m in range(S * rows):
            t = np.int64(0)
            if m < M:
                for k in range(K):
                    t += np.int64(au[m, k] ^ b8)
            row[m] = np.int32(t)
    for s_ in range(S):
        for r in range(rows):
            m = s_ * rows + r
            if m < M:
                for q in range(K4 // 4):
                    k = 4 * q
                    out32[s_, q, r] = (np.uint32(au[m, k]) | (np.uint32(au[m, k + 1]) << np.uint32(8))
                                       | (np.uint32(au[m, k + 2]) << np.uint32(16))
                                       | (np.uint32(au[m, k + 3]) << np.uint32(24))) ^ flip
                if K4 < K:
                    w = np.uint32(0)
                    for t in range(K - K4):
                        w |= (np.uint32(au[m, K4 + t]) ^ f8) << np.uint32(8 * t)
                    out32[s_, K4 // 4, r] = w
            else:
                for q in range(Kq):
                    out32[s_, q, r] = 0


def pack_a_strips_reference(au, flip, out32, row, need_sum) -> None:
    """NumPy twin of `pack_a_strips`."""
    M, K = au.shape
    S, Kq, rows = out32.shape
    v = np.zeros((S * rows, Kq * 4), np.int64)
    v[:M, :K] = au.view(np.int8 if flip else np.uint8).astype(np.int64) + (128 if flip else 0)
    out32.view(np.uint8)[...] = v.reshape(S, rows, Kq, 4).transpose(0, 2, 1, 3).reshape(S, Kq, 4 * rows)
    if need_sum:
        row[:] = v.sum(axis=1).astype(np.int32)


# -- packed GEMM --------------------------------------------------------------------------
@njit(cache=True)
def gemm_vnni512(ap, bp, out, col, nzb, row):
    """out (S·12, P·32) int32 ← Σ_k a'[m, k]·b'[k, n] from `pack_a_strips` (12-row strips)
    and `pack_b_panels` (32-column panels), every element written; AVX-512 VNNI only.
    With col, nzb (P·32,) and row (S·12,) int32 non-empty the epilogue adds
    col[n] + row[m]·nzb[n] (wrapping int32; empty arrays: the raw sums).
    The caller guarantees Kp·max a'·max|b'| < 2^31."""
    S, Kq = ap.shape[0], ap.shape[1]
    P = bp.shape[0]
    WA = ap.shape[2] * ap.itemsize          # bytes per quad of k: uint8 or its uint32 view
    W = bp.shape[2] * bp.itemsize
    rows = WA // 4
    nr = W // 4
    Np = P * nr
    if S == 0 or Np == 0:
        return
    enable = col.shape[0] > 0
    if Kq == 0:
        for m in range(out.shape[0]):
            for n in range(Np):
                out[m, n] = (col[n] + row[m] * nzb[n]) if enable else 0
        return
    pa0 = np.int64(ap.ctypes.data)
    pb0 = np.int64(bp.ctypes.data)
    po0 = np.int64(out.ctypes.data)
    pc0 = np.int64(col.ctypes.data)
    pz0 = np.int64(nzb.ctypes.data)
    pr0 = np.int64(row.ctypes.data)
    astride = np.int64(Kq) * WA
    pstride = np.int64(Kq) * W
    for q0 in range(0, Kq, KC // 4):
        nq = min(Kq, q0 + KC // 4) - q0
        first = 1 if q0 == 0 else 0
        last = 1 if enable and q0 + KC // 4 >= Kq else 0
        for p0 in range(0, P, NC // nr):
            p1 = min(P, p0 + NC // nr)
            for s_ in range(S):
                pa = pa0 + s_ * astride + q0 * WA
                for p in range(p0, p1):
                    _Z_TILE(pa, pb0 + p * pstride + q0 * W, nq, po0 + 4 * (s_ * rows * Np + p * nr), Np, first, last,
                        pc0 + 4 * p * nr, pz0 + 4 * p * nr, pr0 + 4 * s_ * rows)


@njit(cache=True)
def gemm_vnni256(ap, bp, out, col, nzb, row):
    """`gemm_vnni512` with the ymm micro-kernel (6-row strips, 16-column panels); AVX-VNNI."""
    S, Kq = ap.shape[0], ap.shape[1]
    P = bp.shape[0]
    WA = ap.shape[2] * ap.itemsize          # bytes per quad of k: uint8 or its uint32 view
    W = bp.shape[2] * bp.itemsize
    rows = WA // 4
    nr = W // 4
    Np = P * nr
    if S == 0 or Np == 0:
        return
    enable = col.shape[0] > 0
    if Kq == 0:
        for m in range(out.shape[0]):
            for n in range(Np):
                out[m, n] = (col[n] + row[m] * nzb[n]) if enable else 0
        return
    pa0 = np.int64(ap.ctypes.data)
    pb0 = np.int64(bp.ctypes.data)
    po0 = np.int64(out.ctypes.data)
    pc0 = np.int64(col.ctypes.data)
    pz0 = np.int64(nzb.ctypes.data)
    pr0 = np.int64(row.ctypes.data)
    astride = np.int64(Kq) * WA
    pstride = np.int64(Kq) * W
    for q0 in range(0, Kq, KC // 4):
        nq = min(Kq, q0 + KC // 4) - q0
        first = 1 if q0 == 0 else 0
        last = 1 if enable and q0 + KC // 4 >= Kq else 0
        for p0 in range(0, P, NC // nr):
            p1 = min(P, p0 + NC // nr)
            for s_ in range(S):
                pa = pa0 + s_ * astride + q0 * WA
                for p in range(p0, p1):
                    _Y_TILE(pa, pb0 + p * pstride + q0 * W, nq, po0 + 4 * (s_ * rows * Np + p * nr), Np, first, last,
                        pc0 + 4 * p * nr, pz0 + 4 * p * nr, pr0 + 4 * s_ * rows)


def gemm_vnni_reference(ap, bp, out, col, nzb, row) -> None:
    """NumPy twin of `gemm_vnni512` / `gemm_vnni256` (int64 product of the unpacked operands,
    then the epilogue, wrapped to int32)."""
    P, Kq, W = bp.shape
    S, _, WA = ap.shape
    nr, rows = W // 4, WA // 4
    b = bp.view(np.int8).reshape(P, Kq, nr, 4).transpose(1, 3, 0, 2).reshape(Kq * 4, P * nr)
    a = ap.view(np.uint8).reshape(S, Kq, rows, 4).transpose(0, 2, 1, 3).reshape(S * rows, Kq * 4)
    v = a.astype(np.int64) @ b.astype(np.int64)
    if len(col):
        v += col.astype(np.int64)[None, :] + row.astype(np.int64)[:, None] * nzb.astype(np.int64)[None, :]
    out[...] = v.astype(np.int32)     # wraps like the kernel's int32 lanes


@njit(cache=True)
def finish_raw(raw, asum, bsum, za, zb, K, out):
    """out[m, n] = raw[m, n] − za·bsum[n] − zb[n]·asum[m] + K·za·zb[n] in int64 (then out's
    dtype: the caller guarantees the exact value fits)."""
    M, N = out.shape
    ot = out.dtype.type
    for m in range(M):
        am = asum[m]
        for n in range(N):
            out[m, n] = ot(np.int64(raw[m, n]) - za * bsum[n] - zb[n] * am + K * za * zb[n])


def finish_raw_reference(raw, asum, bsum, za, zb, K, out) -> None:
    """NumPy twin of `finish_raw`."""
    M, N = out.shape
    out[...] = (raw[:M, :N].astype(np.int64) - za * bsum[None, :] - zb[None, :] * asum[:, None]
                + K * za * zb[None, :]).astype(out.dtype)


# -- GEMV / small M -----------------------------------------------------------------------
@njit(cache=True)
def _z_rows(n, pa, lda, pb, ldb, nq, po, ldo, swapped):
    """Run the widest zmm rows kernel (4, 2 or 1 rows) for the n rows left; returns the rows done."""
    if swapped:
        if n >= 4:
            _ZS_ROWS4(pa, lda, pb, ldb, nq, po, ldo, 0, 0)
            return 4
        if n >= 2:
            _ZS_ROWS2(pa, lda, pb, ldb, nq, po, ldo, 0, 0)
            return 2
        _ZS_ROWS1(pa, lda, pb, ldb, nq, po, ldo, 0, 0)
        return 1
    if n >= 4:
        _Z_ROWS4(pa, lda, pb, ldb, nq, po, ldo, 0, 0)
        return 4
    if n >= 2:
        _Z_ROWS2(pa, lda, pb, ldb, nq, po, ldo, 0, 0)
        return 2
    _Z_ROWS1(pa, lda, pb, ldb, nq, po, ldo, 0, 0)
    return 1


@njit(cache=True)
def _y_rows(n, pa, lda, pb, ldb, nq, po, ldo, swapped):
    """Run the widest ymm rows kernel (2 or 1 rows) for the n rows left; returns the rows done."""
    if swapped:
        if n >= 2:
            _YS_ROWS2(pa, lda, pb, ldb, nq, po, ldo, 0, 0)
            return 2
        _YS_ROWS1(pa, lda, pb, ldb, nq, po, ldo, 0, 0)
        return 1
    if n >= 2:
        _Y_ROWS2(pa, lda, pb, ldb, nq, po, ldo, 0, 0)
        return 2
    _Y_ROWS1(pa, lda, pb, ldb, nq, po, ldo, 0, 0)
    return 1


@njit(cache=True)
def _tail_copies(b, Kp, cw):
    """Zero-padded copies of the weight's last K % 4 rows (4, N1) and last N % cw columns
    (Kp, cw), N1 = N − N % cw (empty when there is no such tail)."""
    K, N = b.shape
    K4, N1 = K - K % 4, N - N % cw
    bt = np.zeros((4 if K4 < K and N1 > 0 else 0, N1), np.int8)
    for k in range(K4, K if bt.shape[0] else K4):
        for n in range(N1):
            bt[k - K4, n] = b[k, n]
    bn = np.zeros((Kp if N1 < N else 0, cw), np.int8)
    if N1 < N:
        for k in range(K):
            for n in range(N1, N):
                bn[k, n - N1] = b[k, n]
    return bt, bn


@njit(cache=True)
def gemv_vnni512(ap, b, out, swapped):
    """out (R, Nc) int32 ← Σ_k a'[r, k]·b[k, n] for the rows of ap (R, Kp) uint8 (zero
    padded beyond K) and b (K, N) C-contiguous int8, read as given (blocks of `GEMV_KB`
    quads × 64 columns, up to 4 rows at a time); out's columns are grouped in chunks of
    64 permuted by `gemv_column_position` (Nc = N rounded up to 64), every element
    written. swapped: ap holds signed bytes d and the sums are Σ_k d[r, k]·(b[k, n] + 128).
    The weight's K and N tails go through zero-padded copies. AVX-512 VNNI only; the
    caller guarantees Kp·255·128 < 2^31."""
    R, Kp = ap.shape
    K, N = b.shape
    out[:, :] = 0
    N1 = N - N % 64
    _z_pass(ap, 0, b, (K - K % 4) // 4, out, 0, N1, swapped)
    bt, bn = _tail_copies(b, Kp, 64)
    _z_pass(ap, K - K % 4, bt, bt.shape[0] // 4, out, 0, bt.shape[1], swapped)
    _z_pass(ap, 0, bn, bn.shape[0] // 4, out, N1, 64 if bn.shape[0] else 0, swapped)


@njit(cache=True)
def _z_pass(ap, k0, bc, nq, out, n0, ncols, swapped):
    """Add Σ a'[:, k0:k0 + 4·nq]·bc[:4·nq, :ncols] into out's chunks from column n0 (bc an
    argument: alive while the kernels read it by address), GEMV_KB quads at a time."""
    R, Kp = ap.shape
    Nc = out.shape[1]
    ldb = bc.shape[1]
    pa0 = np.int64(ap.ctypes.data) + k0
    pb0 = np.int64(bc.ctypes.data)
    po0 = np.int64(out.ctypes.data)
    wide = 256 if R == 1 else 128
    kb = GEMV_KB if R > 2 else GEMV_KB // 2   # fewer weight-row streams where fewer rows use them
    for q0 in range(0, nq, kb):
        nb = min(nq - q0, kb)
        c0 = 0
        if R <= 2:                            # one or two rows: several chunks per call
            while c0 + wide <= ncols:
                pa, pb, po = pa0 + 4 * q0, pb0 + 4 * q0 * ldb + c0, po0 + 4 * (n0 + c0)
                if R == 1:
                    if swapped:
                        _ZS_ROWS1X4(pa, Kp, pb, ldb, nb, po, Nc, 0, 0)
                    else:
                        _Z_ROWS1X4(pa, Kp, pb, ldb, nb, po, Nc, 0, 0)
                elif swapped:
                    _ZS_ROWS2X2(pa, Kp, pb, ldb, nb, po, Nc, 0, 0)
                else:
                    _Z_ROWS2X2(pa, Kp, pb, ldb, nb, po, Nc, 0, 0)
                c0 += wide
        while c0 < ncols:
            r = 0
            while r < R:
                r += _z_rows(R - r, pa0 + r * Kp + 4 * q0, Kp, pb0 + 4 * q0 * ldb + c0, ldb, nb,
                             po0 + 4 * (r * Nc + n0 + c0), Nc, swapped)
            c0 += 64


@njit(cache=True)
def gemv_vnni256(ap, b, out, swapped):
    """`gemv_vnni512` with ymm kernels (chunks of 32 columns, up to 2 rows at a time); AVX-VNNI."""
    R, Kp = ap.shape
    K, N = b.shape
    out[:, :] = 0
    N1 = N - N % 32
    _y_pass(ap, 0, b, (K - K % 4) // 4, out, 0, N1, swapped)
    bt, bn = _tail_copies(b, Kp, 32)
    _y_pass(ap, K - K % 4, bt, bt.shape[0] // 4, out, 0, bt.shape[1], swapped)
    _y_pass(ap, 0, bn, bn.shape[0] // 4, out, N1, 32 if bn.shape[0] else 0, swapped)


@njit(cache=True)
def _y_pass(ap, k0, bc, nq, out, n0, ncols, swapped):
    """`_z_pass` with the ymm kernels (32-column chunks)."""
    R, Kp = ap.shape
    Nc = out.shape[1]
    ldb = bc.shape[1]
    pa0 = np.int64(ap.ctypes.data) + k0
    pb0 = np.int64(bc.ctypes.data)
    po0 = np.int64(out.ctypes.data)
    for q0 in range(0, nq, GEMV_KB):
        nb = min(nq - q0, GEMV_KB)
        for c0 in range(0, ncols, 32):
            r = 0
            while r < R:
                r += _y_rows(R - r, pa0 + r * Kp + 4 * q0, Kp, pb0 + 4 * q0 * ldb + c0, ldb, nb,
                             po0 + 4 * (r * Nc + n0 + c0), Nc, swapped)


def gemv_vnni_reference(ap, b, out, cw: int, swapped: bool = False) -> None:
    """NumPy twin of `gemv_vnni512` (cw = 64) / `gemv_vnni256` (cw = 32)."""
    K, N = b.shape
    R, Nc = out.shape
    full = np.zeros((R, Nc), np.int64)
    if swapped:
        d = ap[:, :K].view(np.int8).astype(np.int64)
        full[:, :] = 128 * d.sum(axis=1)[:, None]          # padded columns: (0 + 128)·d
        full[:, :N] += d @ b.astype(np.int64)
    else:
        full[:, :N] = ap[:, :K].astype(np.int64) @ b.astype(np.int64)
    pos = np.array([gemv_column_position(c, cw // 4) for c in range(cw)])
    for c0 in range(0, Nc, cw):
        out[:, c0 + pos] = full[:, c0:c0 + cw].astype(np.int32)


@njit(cache=True)
def finish_gemv(raw, cw, asum, zrow, za, zb, K, out):
    """out[m, n] = raw[m, pos(n)] − raw[zrow, pos(n)] − zb[n]·asum[m] + K·za·zb[n] in int64,
    pos = `gemv_column_position` in chunks of cw columns; raw[zrow] = za·Σ_k b'[k, n] (the
    extra row of a' holding za; zrow < 0 when there is none)."""
    M, N = out.shape
    ot = out.dtype.type
    lanes = cw // 4
    pos = np.empty(cw, np.int64)
    for c in range(cw):
        pos[c] = ((c % 16) // 4) * lanes + 4 * (c // 16) + c % 4
    zk = np.empty(N, np.int64)
    for n in range(N):
        zk[n] = K * za * zb[n]
    for m in range(M):
        am = asum[m]
        for c0 in range(0, N, cw):
            for c in range(min(cw, N - c0)):
                n = c0 + c
                j = c0 + pos[c]
                v = np.int64(raw[m, j]) - zb[n] * am + zk[n]
                if zrow >= 0:
                    v -= np.int64(raw[zrow, j])
                out[m, n] = ot(v)


# -- the exact product --------------------------------------------------------------------
FLIP = np.uint32(0x80808080)


def vnni_fits(a: np.ndarray, b: np.ndarray) -> bool:
    """Both operands 8-bit and K short enough for exact int32 sums whatever the data."""
    return a.dtype.itemsize == 1 and b.dtype.itemsize == 1 and a.dtype.kind in "iu" and b.dtype.kind in "iu" \
        and a.shape[1] <= K_MAX


@njit(cache=True)
def epilogue_vectors(bu, fb, za, zb, bias, col, nzb):
    """The epilogue's int32 vectors (wrapping; zero padded to col's length):
    col[n] = bias[n] + K·za·zb[n] − za·Σ_k b'[k, n] and nzb[n] = −zb[n], from the bytes
    bu (K, N) of b (flip as in `pack_b_panels`); za = za', zb (N,) = zb' int64, bias (N,)
    int64 or empty."""
    K, N = bu.shape
    f8 = fb & np.uint32(0xFF)
    for n in range(col.shape[0]):
        col[n] = 0
        nzb[n] = 0
    if za != 0:
        for k in range(K):                     # Σ_k b' (int32: |sum| ≤ K·128)
            for n in range(N):
                col[n] += np.int32(np.int8(np.uint8(bu[k, n] ^ f8)))
    has_bias = bias.shape[0] > 0
    for n in range(N):
        v = K * za * zb[n] - za * np.int64(col[n])
        if has_bias:
            v += bias[n]
        col[n] = np.int32(v)
        nzb[n] = np.int32(-zb[n])


@njit(cache=True)
def pack_a_conv(xu, fa, geom, out8, row, need_sum):
    """Pack the conv patches a'[m, k] straight from the (already padded) input bytes xu
    (N, C, Hp, Wp), C-contiguous — no im2col copy: m = (n, y, x), k = (c, i, j),
    a' = byte XOR 0x80 when fa ≠ 0 (a + 128 for int8), else the byte. geom = (kh, kw, sh,
    sw, dh, dw, Ho, Wo). out8 (S, Kp/4, 4·rows) uint8 as `pack_a_strips` (every byte
    written), through per-k offset tables of the source and the destination; with
    need_sum, row[m] ← Σ_k a'[m, k] (wrapping int32, zero padded)."""
    N, C, H, W = xu.shape
    kh, kw, sh, sw, dh, dw, Ho, Wo = geom[0], geom[1], geom[2], geom[3], geom[4], geom[5], geom[6], geom[7]
    S, Kq, WA = out8.shape
    rows = WA // 4
    K = C * kh * kw
    M = N * Ho * Wo
    f8 = np.uint8(fa & np.uint32(0xFF))
    src = xu.ravel()
    dst = out8.ravel()
    soff = np.empty(K, np.int64)
    doff = np.empty(4 * Kq, np.int64)
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                soff[(c * kh + i) * kw + j] = (c * H + i * dh) * W + j * dw
    for k in range(4 * Kq):
        doff[k] = (k >> 2) * WA + (k & 3)
    for m in range(S * rows):
        s_ = m // rows
        base = s_ * Kq * WA + 4 * (m - s_ * rows)
        tot = np.int64(0)
        if m < M:
            n = m // (Ho * Wo)
            p = m - n * Ho * Wo
            y = p // Wo
            pix = (n * C * H + y * sh) * W + (p - y * Wo) * sw
            for k in range(K):
                v = src[pix + soff[k]] ^ f8
                dst[base + doff[k]] = v
                tot += v
            for k in range(K, 4 * Kq):
                dst[base + doff[k]] = 0
        else:
            for k in range(4 * Kq):
                dst[base + doff[k]] = 0
        if need_sum:
            row[m] = np.int32(tot)


def pack_a_conv_reference(xu, fa, geom, out8, row, need_sum) -> None:
    """NumPy twin of `pack_a_conv` (explicit im2col, then the strip layout)."""
    kh, kw, sh, sw, dh, dw, Ho, Wo = (int(g) for g in geom)
    N, C, H, W = xu.shape
    xp = xu.astype(np.int64) ^ (0x80 if fa else 0)
    cols = np.empty((N, Ho, Wo, C, kh, kw), np.int64)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, :, i, j] = xp[:, :, i * dh:i * dh + sh * (Ho - 1) + 1:sh,
                                        j * dw:j * dw + sw * (Wo - 1) + 1:sw].transpose(0, 2, 3, 1)
    A = cols.reshape(N * Ho * Wo, C * kh * kw)
    S, Kq, WA = out8.shape
    rows = WA // 4
    v = np.zeros((S * rows, Kq * 4), np.int64)
    v[:A.shape[0], :A.shape[1]] = A
    out8[...] = v.reshape(S, rows, Kq, 4).transpose(0, 2, 1, 3).reshape(S, Kq, WA)
    if need_sum:
        row[:] = 0
        row[:A.shape[0]] = A.sum(axis=1).astype(np.int32)


def vnni_i32(src, geom, conv, fa, bu, fb, za, zb, bias, need_asum, width: int, get=None):
    """The int32 result (Mp, Np) of a'·b' plus the zero-point/bias epilogue (the caller slices
    [:M, :N]): the weight bytes bu (K, N) packed per call (`pack_b_panels`, its column sums
    in `epilogue_vectors`), then `packed_run`; a' the conv patches of src when conv, else
    src = a (M, K, 1, 1). `get(name, shape, dtype)` may supply the weight's work array."""
    K, N = bu.shape
    tile = ZMM_TILE if width == 512 else YMM_TILE
    nr = tile[1] * tile[2]
    P, Kq = -(-N // nr), -(-K // 4)
    bp = (get or (lambda name, shape, dtype: np.empty(shape, dtype)))("vnni_b32", (P, Kq, nr), np.uint32)
    colsum, col, nzb = np.empty(P * nr, np.int32), np.empty(P * nr, np.int32), np.empty(P * nr, np.int32)
    pack_weight(pad_bytes(bu, fb, 4 * Kq, P * nr), np.int64(K), fb, bp, colsum, np.int64(za), zb, bias, col, nzb)
    if not conv:
        src = pad_bytes(src.reshape(src.shape[0], src.shape[1]), fa, src.shape[0], 4 * Kq).reshape(-1, 4 * Kq, 1, 1)
    return packed_run(src, geom, conv, fa, bp, col, nzb, need_asum, width)[0]


def vnni512_i32(src, geom, conv, fa, bu, fb, za, zb, bias, need_asum):
    """`vnni_i32` with the 12 × 32 zmm tiles; AVX-512 VNNI only."""
    return vnni_i32(src, geom, conv, fa, bu, fb, za, zb, bias, need_asum, 512)


def vnni256_i32(src, geom, conv, fa, bu, fb, za, zb, bias, need_asum):
    """`vnni_i32` with the 6 × 16 ymm tiles; AVX-VNNI."""
    return vnni_i32(src, geom, conv, fa, bu, fb, za, zb, bias, need_asum, 256)


_NO_GEOM = np.ones(8, np.int64)
_NO_BIAS = np.zeros(0, np.int64)
_NO_ROW = np.zeros(0, np.int32)


def _ro(x: np.ndarray) -> np.ndarray:
    """A read-only C-contiguous view (a copy only if x is not contiguous): the kernels get
    one array type whatever the caller's flags, so Numba compiles them once."""
    if not x.flags.writeable and x.flags.c_contiguous:
        return x
    v = np.ascontiguousarray(x).view()
    v.flags.writeable = False
    return v


_ZB_CACHE: dict = {}


def _zero_points(za, zb, ca: int, cb: int, N: int):
    """(za', zb' (N,) int64 (read-only), whether any zb' ≠ 0)."""
    if np.ndim(zb) == 0:
        zbi = int(zb) - cb
        v = _ZB_CACHE.get((N, zbi))
        if v is None:
            if len(_ZB_CACHE) > 64:
                _ZB_CACHE.clear()
            v = np.full(N, zbi, np.int64)
            v.flags.writeable = False
            v = _ZB_CACHE.setdefault((N, zbi), v)
        return int(za) + ca, v, zbi != 0
    zb_ = np.asarray(zb, np.int64) - cb
    zb_.flags.writeable = False             # one array type for the kernels (see `_ro`)
    return int(za) + ca, zb_, bool(np.any(zb_ != 0))


def vnni_matmul(a: np.ndarray, b: np.ndarray, za, zb, width: int, out_dtype=np.int64, scratch=None,
                bias=None) -> np.ndarray:
    """Exact Σ_k (a − za)(b − zb) (+ bias) as `out_dtype` (M, N) for 8-bit a, b
    (`vnni_fits`); zb scalar or (N,); width 512 (AVX-512 VNNI) or 256 (AVX-VNNI).
    out_dtype int32 only when the exact result (with bias) fits: then the zero-point terms
    and the bias are added in the kernel's epilogue in wrapping int32, exact because the
    true value fits. The result may be a view of a padded array. `scratch(name, shape,
    dtype)` may supply reusable work arrays."""
    M, K = a.shape
    N = b.shape[1]
    ca = 128 if a.dtype.kind == "i" else 0          # 8-bit operands (`vnni_fits`): int8 or uint8
    cb = 128 if b.dtype.kind == "u" else 0
    za_, zb_, need_asum = _zero_points(za, zb, ca, cb, N)
    get = scratch or (lambda name, shape, dtype: np.empty(shape, dtype))
    if M <= GEMV_ROWS:
        out = _gemv(a, b, ca, cb, za_, zb_, need_asum, width, out_dtype, get)
        if bias is not None:
            out += np.asarray(bias).astype(out.dtype)[None, :]
        return out
    au, bu = a.view(np.uint8), b.view(np.uint8)
    fa, fb = (FLIP if ca else np.uint32(0)), (FLIP if cb else np.uint32(0))
    if out_dtype is np.int32 or np.dtype(out_dtype) == np.int32:
        bias_ = _NO_BIAS if bias is None else np.asarray(bias, np.int64)
        src = _ro(au.reshape(M, K, 1, 1))
        out = vnni_i32(src, _NO_GEOM, False, fa, _ro(bu), fb, za_, zb_, bias_, need_asum, width, get)
        return out[:M, :N] if out.shape != (M, N) else out
    tile = ZMM_TILE if width == 512 else YMM_TILE
    _, (P, Kq, W), _ = packed_shapes(M, K, N, tile)
    bp = get("vnni_b32", (P, Kq, W // 4), np.uint32)
    colsum = np.empty(P * W // 4, np.int32)
    pack_weight(pad_bytes(bu, fb, 4 * Kq, P * W // 4), np.int64(K), fb, bp, colsum, np.int64(0), zb_, _NO_BIAS, _NO_ROW,
                _NO_ROW)
    src = pad_bytes(au, fa, M, 4 * Kq).reshape(M, 4 * Kq, 1, 1)
    raw, row = packed_run(src, _NO_GEOM, False, fa, bp, _NO_ROW, _NO_ROW, need_asum, width)
    out = np.empty((M, N), out_dtype)
    finish_raw(raw, row[:M].astype(np.int64), colsum[:N].astype(np.int64), np.int64(za_), zb_, np.int64(K), out)
    if bias is not None:
        out += np.asarray(bias).astype(out.dtype)[None, :]
    return out


def vnni_conv(x: np.ndarray, w2: np.ndarray, zx, zw, bias, kernel, stride, padding, dilation,
              width: int) -> tuple[np.ndarray, int, int]:
    """Exact conv (groups = 1) of 8-bit x (N, C, H, W) with the 8-bit weight w2 (O, C·kh·kw)
    as an int32 product whose patches are packed straight from x (no im2col copy): returns
    (acc int32 incl. bias, rows (n, y, x) and columns o of its top-left (N·Ho·Wo, O) block
    — the rest is padding —, Ho, Wo). Only
    when the exact result fits int32 (the caller's bound) and C·kh·kw ≤ K_MAX."""
    N, C, H, W = x.shape
    kh, kw = kernel
    top, left, bottom, right = padding
    Ho, Wo = conv_output_hw(H, W, (kh, kw), stride, padding, dilation)
    O = w2.shape[0]
    ca = 128 if x.dtype == np.int8 else 0
    cb = 128 if w2.dtype == np.uint8 else 0
    za_, zb_, need_asum = _zero_points(zx, zw, ca, cb, O)
    geom = np.array([kh, kw, stride[0], stride[1], dilation[0], dilation[1], Ho, Wo], np.int64)
    fa, fb = (FLIP if ca else np.uint32(0)), (FLIP if cb else np.uint32(0))
    bias_ = _NO_BIAS if bias is None else np.asarray(bias, np.int64)
    if any(padding):               # the padding holds the zero point: a' − za' = 0 there
        xp = np.full((N, C, H + top + bottom, W + left + right), zx, x.dtype)
        xp[:, :, top:top + H, left:left + W] = x
    else:
        xp = np.ascontiguousarray(x)
    out = vnni_i32(_ro(xp.view(np.uint8)), geom, True, fa, _ro(w2.T.view(np.uint8)), fb, za_, zb_, bias_, need_asum,
                   width)
    return out, Ho, Wo


def _gemv(a, b, ca, cb, za_, zb_, need_asum, width, out_dtype, get):
    """M ≤ GEMV_ROWS against the weight as given. When every d = a − za fits a signed byte
    (e.g. uint8 with za = 128), d is the signed operand and the flipped weight b' + 128 the
    unsigned one: Σ d·(b − zb) = raw − (128 + zb')·Σ_k d, no weight sums needed. Otherwise
    rows of a' plus, when za' ≠ 0, one row of za' whose products are za'·Σ_k b'."""
    M, K = a.shape
    N = b.shape[1]
    Kp = -(-K // 4) * 4
    za = za_ - ca
    d = a.astype(np.int16) - za
    swapped = bool(K and d.min() >= -128 and d.max() <= 127)
    bs = b if cb == 0 else (b ^ np.uint8(0x80)).view(np.int8)        # b' = b − 128 for a uint8 weight
    bs = np.ascontiguousarray(bs).view(np.int8)
    cw = 64 if width == 512 else 32
    if swapped:
        extra = 0
        ap = np.zeros((M, Kp), np.int8)
        ap[:, :K] = d
        asum, zrow, zk, zbk = d.sum(axis=1, dtype=np.int64), -1, 0, _ro(zb_ + 128)
    else:
        extra = 1 if za_ != 0 else 0
        ap = np.zeros((M + extra, Kp), np.uint8)
        np.add(a, ca, out=ap[:M, :K], dtype=np.int16, casting="unsafe")   # a' in [0, 255]
        if extra:
            ap[M, :K] = za_
        asum = (a.sum(axis=1, dtype=np.int64) + ca * K) if need_asum else np.zeros(M, np.int64)
        zrow, zk, zbk = M if extra else -1, za_, zb_
    raw = get("vnni_gemv", (M + extra, -(-N // cw) * cw), np.int32)
    (gemv_vnni512 if width == 512 else gemv_vnni256)(ap.view(np.uint8), bs, raw, swapped)
    out = np.empty((M, N), out_dtype)
    finish_gemv(raw, cw, asum, zrow, np.int64(zk), zbk, np.int64(K), out)
    return out


# -- prepacked weights (`qsim.kernels.prepack`) --------------------------------------------
# Small M over the packed panels: the tile kernel with `rows` = 1, 2, 4 or 8 (zmm; 1, 2, 4 on
# ymm) runs each 32-column (16 on ymm) panel over the whole K in one call, so the weight is
# read once as one contiguous stream per panel, the epilogue in the same call. M is padded
# up to the next variant with zero rows (their results are never read).
SMALL_ROWS = {512: (1, 2, 4, 8), 256: (1, 2, 4)}
_ZP1, _ZP2, _ZP4, _ZP8 = (_make_tile_kernel(r, 2, 16) for r in (1, 2, 4, 8))
_YP1, _YP2, _YP4 = (_make_tile_kernel(r, 2, 8) for r in (1, 2, 4))


def small_rows(M: int, width: int) -> int:
    """The small-M variant (rows) for M rows, 0 when M is too large for one."""
    return next((r for r in SMALL_ROWS[width] if r >= M), 0)


# one Numba function per variant, integer arguments only: each compiles on first use
@njit(cache=True)
def panels_z1(pa, pb, pstride, nq, po, ldo, P, pc, pz, pr, last):
    """Run the 1-row zmm tile kernel over P panels (addresses as in `_make_tile_kernel`)."""
    for p in range(P):
        _ZP1(pa, pb + p * pstride, nq, po + 128 * p, ldo, 1, last, pc + 128 * p, pz + 128 * p, pr)


@njit(cache=True)
def panels_z2(pa, pb, pstride, nq, po, ldo, P, pc, pz, pr, last):
    """`panels_z1` with 2 rows."""
    for p in range(P):
        _ZP2(pa, pb + p * pstride, nq, po + 128 * p, ldo, 1, last, pc + 128 * p, pz + 128 * p, pr)


@njit(cache=True)
def panels_z4(pa, pb, pstride, nq, po, ldo, P, pc, pz, pr, last):
    """`panels_z1` with 4 rows."""
    for p in range(P):
        _ZP4(pa, pb + p * pstride, nq, po + 128 * p, ldo, 1, last, pc + 128 * p, pz + 128 * p, pr)


@njit(cache=True)
def panels_z8(pa, pb, pstride, nq, po, ldo, P, pc, pz, pr, last):
    """`panels_z1` with 8 rows."""
    for p in range(P):
        _ZP8(pa, pb + p * pstride, nq, po + 128 * p, ldo, 1, last, pc + 128 * p, pz + 128 * p, pr)


@njit(cache=True)
def panels_y1(pa, pb, pstride, nq, po, ldo, P, pc, pz, pr, last):
    """`panels_z1` with the ymm kernel (16-column panels); AVX-VNNI."""
    for p in range(P):
        _YP1(pa, pb + p * pstride, nq, po + 64 * p, ldo, 1, last, pc + 64 * p, pz + 64 * p, pr)


@njit(cache=True)
def panels_y2(pa, pb, pstride, nq, po, ldo, P, pc, pz, pr, last):
    """`panels_y1` with 2 rows."""
    for p in range(P):
        _YP2(pa, pb + p * pstride, nq, po + 64 * p, ldo, 1, last, pc + 64 * p, pz + 64 * p, pr)


@njit(cache=True)
def panels_y4(pa, pb, pstride, nq, po, ldo, P, pc, pz, pr, last):
    """`panels_y1` with 4 rows."""
    for p in range(P):
        _YP4(pa, pb + p * pstride, nq, po + 64 * p, ldo, 1, last, pc + 64 * p, pz + 64 * p, pr)


PANELS = {(512, 1): panels_z1, (512, 2): panels_z2, (512, 4): panels_z4, (512, 8): panels_z8,
          (256, 1): panels_y1, (256, 2): panels_y2, (256, 4): panels_y4}


def small_packed(ap, bp, out, col, nzb, row, width: int, enable: bool) -> None:
    """out (R, Np) int32 ← Σ_k a'·b' (+ col[n] + row[m]·nzb[n] when enable) for the strip
    ap (1, Kq, R) uint32 (`pack_a_strips`, R in `SMALL_ROWS[width]`) and the panels bp
    (P, Kq, nr) uint32 (`pack_b_panels`), every element written. The caller holds every
    array (the kernels read them by address) and guarantees Kp·max a'·max|b'| < 2^31."""
    _, Kq, R = ap.shape
    P, _, nr = bp.shape
    if P == 0:
        return
    if Kq == 0:
        out[...] = (col[None, :] + row[:R, None] * nzb[None, :]) if enable else 0
        return
    PANELS[(width, R)](ap.ctypes.data, bp.ctypes.data, 4 * Kq * nr, Kq, out.ctypes.data, out.shape[1], P,
                       col.ctypes.data, nzb.ctypes.data, row.ctypes.data, 1 if enable else 0)


@njit(cache=True)
def packed_epilogue(colsum, K, za, zb, bias, col, nzb):
    """The epilogue vectors from the packed weight's column sums Σ_k b' (colsum, zero
    padded): col[n] = bias[n] + K·za·zb[n] − za·colsum[n], nzb[n] = −zb[n] in wrapping
    int32 (zero beyond zb's length); za = za', zb (N,) = zb' int64, bias (N,) int64 or empty."""
    N = zb.shape[0]
    has_bias = bias.shape[0] > 0
    for n in range(col.shape[0]):
        if n < N:
            v = K * za * zb[n] - za * np.int64(colsum[n])
            if has_bias:
                v += bias[n]
            col[n] = np.int32(v)
            nzb[n] = np.int32(-zb[n])
        else:
            col[n] = 0
            nzb[n] = 0


def packed_epilogue_reference(colsum, K, za, zb, bias, col, nzb) -> None:
    """NumPy twin of `packed_epilogue`."""
    N = zb.shape[0]
    v = K * za * zb - za * colsum[:N].astype(np.int64)
    if bias.shape[0]:
        v = v + bias
    col[:] = 0
    nzb[:] = 0
    col[:N] = v.astype(np.int32)
    nzb[:N] = (-zb).astype(np.int32)


@njit(cache=True)
def pack_weight(bu, K, flip, out32, colsum, za, zb, bias, col, nzb):
    """Everything a product needs from the weight, in one function: the panels out32
    (P, Kq, nr) of `pack_b_panels`, the column sums colsum[n] ← Σ_k b'[k, n] (int32;
    |sum| ≤ 128·K) and, when col is not empty, the epilogue vectors of `packed_epilogue`
    for za = za', zb (N,) = zb' int64 and bias (N,) int64 or empty. bu (4·Kq, P·nr) is the
    weight's bytes padded by `pad_bytes` (pad bytes b' = 0), so one branch-free loop nest
    packs every shape (compiles in half the time of `pack_b_panels`' tail loops)."""
    P, Kq, nr = out32.shape
    for q in range(Kq):
        k = 4 * q
        for p in range(P):
            n0 = p * nr
            for c in range(nr):
                out32[p, q, c] = (np.uint32(bu[k, n0 + c]) | (np.uint32(bu[k + 1, n0 + c]) << np.uint32(8))
                                  | (np.uint32(bu[k + 2, n0 + c]) << np.uint32(16))
                                  | (np.uint32(bu[k + 3, n0 + c]) << np.uint32(24))) ^ flip
    f8 = np.uint8(flip & np.uint32(0xFF))
    colsum[:] = 0
    for k in range(bu.shape[0]):
        for n in range(bu.shape[1]):
            colsum[n] += np.int32(np.int8(bu[k, n] ^ f8))
    if col.shape[0]:
        N = zb.shape[0]
        has_bias = bias.shape[0] > 0
        for n in range(col.shape[0]):
            if n < N:
                v = K * za * zb[n] - za * np.int64(colsum[n])
                if has_bias:
                    v += bias[n]
                col[n] = np.int32(v)
                nzb[n] = np.int32(-zb[n])
            else:
                col[n] = 0
                nzb[n] = 0


def pad_bytes(x: np.ndarray, flip, rows: int, cols: int) -> np.ndarray:
    """The uint8 matrix x zero padded to (rows, cols) as a read-only C array: the pad byte
    is the flip byte (0x80 when flip ≠ 0), so the packed a' or b' of a pad is 0. x itself
    (read-only) when it already has that shape."""
    if x.shape == (rows, cols):
        return _ro(x)
    out = np.full((rows, cols), 0x80 if flip else 0, np.uint8)
    out[:x.shape[0], :x.shape[1]] = x
    out.flags.writeable = False
    return out


def pack_weight_reference(bu, K, flip, out32, colsum, za, zb, bias, col, nzb) -> None:
    """NumPy twin of `pack_weight`."""
    pack_b_panels_reference(bu, flip, out32)
    colsum[:] = (bu.view(np.int8 if not flip else np.uint8).astype(np.int64)
                 - (128 if flip else 0)).sum(axis=0).astype(np.int32)
    if col.shape[0]:
        packed_epilogue_reference(colsum, K, za, zb, bias, col, nzb)


@njit(cache=True)
def pack_a(src, conv, fa, geom, out32, row, need_sum):
    """The strips of a' into out32 (S, Kp/4, rows) uint32 (layout of `pack_a_strips`, every
    word written) and, with need_sum, row[m] ← Σ_k a'[m, k] (wrapping int32, 0 beyond M):
    from a = src (M, 4·Kq, 1, 1) as `pack_a_strips` (K padded by `pad_bytes`), or with conv from the conv patches of
    the (padded) input src (N, C, Hp, Wp) as `pack_a_conv` (m = (n, y, x), k = (c, i, j),
    geom = (kh, kw, sh, sw, dh, dw, Ho, Wo)); a' = byte XOR 0x80 when fa ≠ 0. One function
    for both, so a process compiles one packing kernel for a; the patches are gathered
    4 bytes to a word (measured 1.25× faster than `pack_a_conv`'s byte stores).
    (Unsigned offsets ran 2× faster still but took 0.25 s more to compile: see issue item
    "cold quickstart".)"""
    if not conv:                                # a (M, Kp, 1, 1), Kp = 4·Kq padded by `pad_bytes`
        M = src.shape[0]
        au = src.reshape(M, src.shape[1])
        S, Kq, rows = out32.shape
        for s_ in range(S):
            for r in range(rows):
                m = s_ * rows + r
                if m < M:
                    for q in range(Kq):
                        k = 4 * q
                        out32[s_, q, r] = (np.uint32(au[m, k]) | (np.uint32(au[m, k + 1]) << np.uint32(8))
                                           | (np.uint32(au[m, k + 2]) << np.uint32(16))
                                           | (np.uint32(au[m, k + 3]) << np.uint32(24))) ^ fa
                else:
                    for q in range(Kq):
                        out32[s_, q, r] = 0
        if need_sum:
            f8 = np.uint8(fa & np.uint32(0xFF))
            for m in range(S * rows):
                t = np.int64(0)
                if m < M:
                    for k in range(au.shape[1]):
                        t += np.int64(au[m, k] ^ f8)
                row[m] = np.int32(t)
        return
    N, C, H, W = src.shape
    kh, kw, sh, sw, dh, dw, Ho, Wo = geom[0], geom[1], geom[2], geom[3], geom[4], geom[5], geom[6], geom[7]
    S, Kq, rows = out32.shape
    K = C * kh * kw
    K4 = K - K % 4
    M = N * Ho * Wo
    flat = src.reshape(src.size)
    soff = np.zeros(4 * Kq, np.int64)
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                soff[(c * kh + i) * kw + j] = (c * H + i * dh) * W + j * dw
    f8 = fa & np.uint32(0xFF)
    m8 = np.uint32(0xFF)
    for m in range(S * rows):
        s_ = m // rows
        r = m - s_ * rows
        tot = np.uint32(0)
        if m < M:
            n = m // (Ho * Wo)
            p = m - n * Ho * Wo
            y = p // Wo
            pix = (n * C * H + y * sh) * W + (p - y * Wo) * sw
            for q in range(K4 // 4):
                k = 4 * q
                w = (np.uint32(flat[pix + soff[k]]) | (np.uint32(flat[pix + soff[k + 1]]) << np.uint32(8))
                     | (np.uint32(flat[pix + soff[k + 2]]) << np.uint32(16))
                     | (np.uint32(flat[pix + soff[k + 3]]) << np.uint32(24))) ^ fa
                out32[s_, q, r] = w
                tot += (w & m8) + ((w >> np.uint32(8)) & m8) + ((w >> np.uint32(16)) & m8) + (w >> np.uint32(24))
            if K4 < K:
                w = np.uint32(0)
                for t in range(K - K4):
                    v = np.uint32(flat[pix + soff[K4 + t]]) ^ f8
                    w |= v << np.uint32(8 * t)
                    tot += v
                out32[s_, K4 // 4, r] = w
        else:
            for q in range(Kq):
                out32[s_, q, r] = 0
        if need_sum:
            row[m] = np.int32(tot)


def pack_a_reference(src, conv, fa, geom, out32, row, need_sum) -> None:
    """NumPy twin of `pack_a`."""
    if conv:
        pack_a_conv_reference(src, fa, geom, out32.view(np.uint8), row, need_sum)
    else:
        pack_a_strips_reference(src.reshape(src.shape[0], src.shape[1]), fa, out32, row, need_sum)


def packed_run(src, geom, conv: bool, fa, bp, col, nzb, need_asum: bool, width: int):
    """(out (Mp, Np) int32, row sums Σ_k a' (Mp,) int32) of a'·b' with the packed panels
    bp (P, Kq, nr) uint32 through `gemm_vnni512` (width 512, 12 × 32 tiles) or
    `gemm_vnni256` (6 × 16); a' the conv patches of src (`pack_a_conv`, rows m = (n, y, x))
    when conv, else src = a (M, K, 1, 1) (`pack_a_strips`). With col, nzb non-empty the
    int32 epilogue col[n] + row[m]·nzb[n] is added (else the raw sums). The steps are
    separate Numba functions called from here (measured as fast as one fused function,
    and each compiles once: Numba re-optimises every callee linked into a caller)."""
    rows = ZMM_TILE[0] if width == 512 else YMM_TILE[0]
    M = src.shape[0] * int(geom[6]) * int(geom[7]) if conv else src.shape[0]
    S, Kq = -(-M // rows), bp.shape[1]
    ap = np.empty((S, Kq, rows), np.uint32)
    row = np.zeros(S * rows, np.int32)
    out = np.empty((S * rows, bp.shape[0] * bp.shape[2]), np.int32)
    pack_a(src, conv, fa, geom, ap, row, need_asum)
    (gemm_vnni512 if width == 512 else gemm_vnni256)(ap, bp, out, col, nzb, row)
    return out, row
