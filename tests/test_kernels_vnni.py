"""VNNI (vpdpbusd) kernels and the CPU-feature backend: exact integer equality with int64 oracles.

Kernel tests run where the host has the instructions (AVX-512 VNNI for the zmm kernels,
AVX-VNNI — or AVX-512 VNNI + VL, which encodes the same ymm instruction — for the ymm
ones) and are skipped with the reason elsewhere; packing, the backend choice and its
errors are tested on every host.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qsim.kernels.conv as conv_mod
import qsim.kernels.exact as exact
from qsim.kernels import conv2d_int, matmul_int
from qsim.kernels import cpu
from qsim.kernels import vnni as V
from qsim.kernels.reference import ref_conv2d, ref_matmul

FEATS = cpu.host_features()
HAS_512 = "avx512vnni" in cpu.available()
HAS_256 = HAS_512 or "avxvnni" in cpu.available()     # the ymm form needs AVX-VNNI or AVX-512 VNNI + VL
need512 = pytest.mark.skipif(not HAS_512, reason="host (as Numba targets it) has no AVX-512 VNNI")
need256 = pytest.mark.skipif(not HAS_256, reason="host (as Numba targets it) has no AVX-VNNI / AVX-512 VNNI")
WIDTHS = [pytest.param(512, marks=need512), pytest.param(256, marks=need256)]
SETTINGS = settings(max_examples=25, deadline=None)


def _codes(rng, dtype, shape, extreme=False):
    info = np.iinfo(dtype)
    if extreme:
        return rng.choice(np.array([info.min, info.max], dtype), shape)
    return rng.integers(int(info.min), int(info.max) + 1, shape).astype(dtype)


# -- backend selection (every host) -------------------------------------------------------
def test_select_backend_from_features():
    none = {f: False for f in FEATS}
    avx2 = dict(none, avx2=True)
    vnni256 = dict(avx2, avxvnni=True)
    vnni512 = dict(avx2, avx512f=True, avx512bw=True, avx512vl=True, avx512vnni=True)
    assert cpu.select_backend(None, none) == "portable"
    assert cpu.select_backend("auto", avx2) == "avx2"
    assert cpu.select_backend("", vnni256) == "avxvnni"
    assert cpu.select_backend(None, vnni512) == "avx512vnni"
    assert cpu.select_backend("AVX2", vnni512) == "avx2"          # a slower backend may always be forced
    assert cpu.select_backend("portable", vnni512) == "portable"
    with pytest.raises(ValueError, match="lacks avx512f, avx512bw, avx512vl, avx512vnni"):
        cpu.select_backend("avx512vnni", avx2)
    with pytest.raises(ValueError, match="lacks avxvnni"):
        cpu.select_backend("avxvnni", avx2)
    with pytest.raises(ValueError, match="not a kernel backend"):
        cpu.select_backend("avx3", vnni512)


def test_backend_is_exported_and_consistent():
    from qsim.kernels import backend
    assert backend() in cpu.available()
    assert cpu.ort_pair_saturates() == (FEATS["avx2"] and not (FEATS["avxvnni"] or FEATS["avx512vnni"])) \
        or cpu.host_features() != FEATS


def _run(code: str, **env) -> subprocess.CompletedProcess:
    e = dict(os.environ, OPENBLAS_NUM_THREADS="1", **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=300)


def test_forced_backend_the_cpu_lacks_is_a_clear_error():
    """A backend the compile target lacks fails at import with the reason, never SIGILL.
    NUMBA_CPU_NAME=generic makes any host lack every SIMD backend."""
    wanted = next((b for b in ("avx512vnni", "avxvnni", "avx2") if b not in cpu.available()), None)
    env = {"QSIM_KERNEL_BACKEND": wanted} if wanted else {"QSIM_KERNEL_BACKEND": "avx2", "NUMBA_CPU_NAME": "generic"}
    r = _run("import qsim.kernels", **env)
    assert r.returncode == 1, (r.returncode, r.stderr[-500:])
    assert "ValueError" in r.stderr and "cannot run here" in r.stderr and "available backends" in r.stderr


def test_forced_portable_backend_stays_exact():
    code = (
        "import numpy as np\n"
        "from qsim.kernels import backend, matmul_int\n"
        "from qsim.kernels.reference import ref_matmul\n"
        "rng = np.random.default_rng(0)\n"
        "for M in (1, 5, 70):\n"
        "    a = rng.integers(0, 256, (M, 301)).astype(np.uint8)\n"
        "    b = rng.choice(np.array([-128, 127], np.int8), (301, 40))\n"
        "    acc, n = matmul_int(a, b, 3, 1)\n"
        "    assert np.array_equal(acc, ref_matmul(a, b, 3, 1)[0]) and n == 0\n"
        "print(backend())\n")
    r = _run(code, QSIM_KERNEL_BACKEND="portable")
    assert r.returncode == 0, r.stderr[-800:]
    assert r.stdout.strip() == "portable"


# -- packing (every host: plain Numba loops) ------------------------------------------------
@SETTINGS
@given(M=st.integers(1, 30), K=st.integers(1, 41), N=st.integers(1, 70), seed=st.integers(0, 2**32 - 1),
       adt=st.sampled_from([np.uint8, np.int8]), bdt=st.sampled_from([np.int8, np.uint8]),
       tile=st.sampled_from([V.ZMM_TILE, V.YMM_TILE]))
def test_packing_equals_numpy_twins(M, K, N, seed, adt, bdt, tile):
    rng = np.random.default_rng(seed)
    a, b = _codes(rng, adt, (M, K)), _codes(rng, bdt, (K, N))
    fa = V.FLIP if adt == np.int8 else np.uint32(0)
    fb = V.FLIP if bdt == np.uint8 else np.uint32(0)
    sa, sb, _ = V.packed_shapes(M, K, N, tile)
    ap, ap2 = np.full(sa, 7, np.uint8), np.full(sa, 9, np.uint8)        # garbage: every byte must be written
    bp, bp2 = np.full(sb, 7, np.int8), np.full(sb, 9, np.int8)
    r1, r2 = np.full(sa[0] * tile[0], 5, np.int32), np.full(sa[0] * tile[0], 6, np.int32)
    V.pack_a_strips(a.view(np.uint8), fa, ap.view(np.uint32), r1, True)
    V.pack_a_strips_reference(a.view(np.uint8), fa, ap2.view(np.uint32), r2, True)
    assert np.array_equal(r1, r2)
    V.pack_b_panels(b.view(np.uint8), fb, bp.view(np.uint32))
    V.pack_b_panels_reference(b.view(np.uint8), fb, bp2.view(np.uint32))
    assert np.array_equal(ap, ap2) and np.array_equal(bp, bp2)
    s, s2 = np.zeros(N, np.int32), np.zeros(N, np.int32)
    V.column_sums(b, np.int32(128 if fb else 0), s)
    V.column_sums_reference(b, 128 if fb else 0, s2)
    assert np.array_equal(s, s2)
    # the packed bytes are a' = a + ca (u8) and b' = b − cb (s8)
    S, Kq, rows = ap.shape[0], ap.shape[1], ap.shape[2] // 4
    unpacked = ap.reshape(S, Kq, rows, 4).transpose(0, 2, 1, 3).reshape(S * rows, Kq * 4)
    assert np.array_equal(unpacked[:M, :K], a.astype(np.int64) + (128 if adt == np.int8 else 0))


def test_gemv_column_positions_are_a_permutation():
    for lanes in (16, 8):
        pos = [V.gemv_column_position(c, lanes) for c in range(4 * lanes)]
        assert sorted(pos) == list(range(4 * lanes))


# -- micro-kernels against the int64 oracle (where the host has them) -----------------------
def _gemm(width):
    return (V.gemm_vnni512, V.ZMM_TILE) if width == 512 else (V.gemm_vnni256, V.YMM_TILE)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("M,K,N", [(1, 1, 1), (12, 4, 32), (13, 7, 5), (25, 601, 33), (40, 1030, 70), (7, 3, 129)])
def test_packed_gemm_kernel_equals_oracle(width, M, K, N):
    """Raw sums and the int32 epilogue on ragged shapes, random and extreme (255 × −128) data,
    over garbage-filled outputs; K > KC exercises the K blocks, N > NC the N blocks."""
    gemm, tile = _gemm(width)
    rng = np.random.default_rng(M * 1000 + K + N)
    for extreme in (False, True):
        a, b = _codes(rng, np.uint8, (M, K), extreme), _codes(rng, np.int8, (K, N), extreme)
        sa, sb, so = V.packed_shapes(M, K, N, tile)
        ap, bp = np.empty(sa, np.uint8), np.empty(sb, np.int8)
        V.pack_a_strips(a, np.uint32(0), ap.view(np.uint32), V._NO_ROW, False)
        V.pack_b_panels(b.view(np.uint8), np.uint32(0), bp.view(np.uint32))
        empty = np.zeros(0, np.int32)
        raw, want = np.full(so, 5, np.int32), np.full(so, 6, np.int32)
        gemm(ap, bp, raw, empty, empty, empty)
        V.gemm_vnni_reference(ap, bp, want, empty, empty, empty)
        assert np.array_equal(raw, want)
        assert np.array_equal(raw[:M, :N], a.astype(np.int64) @ b.astype(np.int64))
        col = rng.integers(-2**31, 2**31, so[1]).astype(np.int32)     # epilogue wraps like int32 lanes
        nzb = rng.integers(-2**31, 2**31, so[1]).astype(np.int32)
        row = rng.integers(-2**31, 2**31, so[0]).astype(np.int32)
        gemm(ap, bp, raw, col, nzb, row)
        V.gemm_vnni_reference(ap, bp, want, col, nzb, row)
        assert np.array_equal(raw, want)


def test_extreme_products_everywhere_at_the_int32_bound():
    """255 × −128 in every position up to K_MAX: the largest raw sums the bound admits."""
    assert (V.K_MAX + 3) * 255 * 128 < 2**31 <= (V.K_MAX + 4 + 3) * 255 * 128
    a = np.full((9, V.K_MAX), 255, np.uint8)
    b = np.full((V.K_MAX, 3), -128, np.int8)
    assert V.vnni_fits(a, b) and not V.vnni_fits(np.zeros((2, V.K_MAX + 1), np.uint8), np.zeros((V.K_MAX + 1, 2), np.int8))
    for width in [w for w, ok in ((512, HAS_512), (256, HAS_256)) if ok]:
        for M in (9, 1):
            got = V.vnni_matmul(a[:M], b, 0, 0, width, np.int64)
            assert np.array_equal(got, np.full((M, 3), V.K_MAX * 255 * -128, np.int64))


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("swapped", [False, True])
@pytest.mark.parametrize("R,K,N", [(1, 256, 128), (1, 9, 330), (2, 7, 5), (2, 13, 270), (3, 130, 200), (4, 1, 64),
                                   (5, 9, 70), (9, 33, 130)])
def test_gemv_kernel_equals_oracle(width, swapped, R, K, N):
    """Unpacked-weight kernel: K odd and K < 4 (padded copy of the last rows), N tails
    (padded copy of the last columns), 1–9 rows (kernels of 4/2/1 rows; 1 × 4 and 2 × 2 column
    chunks where N allows), both operand
    orders, random and extreme codes."""
    fn, cw = (V.gemv_vnni512, 64) if width == 512 else (V.gemv_vnni256, 32)
    rng = np.random.default_rng(R * 100 + K + N)
    Kp, Nc = -(-K // 4) * 4, -(-N // cw) * cw
    for extreme in (False, True):
        ap = np.zeros((R, Kp), np.uint8)
        ap[:, :K] = _codes(rng, np.int8 if swapped else np.uint8, (R, K), extreme).view(np.uint8)
        b = _codes(rng, np.int8, (K, N), extreme)
        out, want = np.full((R, Nc), 3, np.int32), np.full((R, Nc), 4, np.int32)
        fn(ap, b, out, swapped)
        V.gemv_vnni_reference(ap, b, want, cw, swapped)
        assert np.array_equal(out, want)


# -- the whole product and the dispatch -----------------------------------------------------
@SETTINGS
@given(M=st.integers(1, 40), K=st.integers(1, 300), N=st.integers(1, 80), seed=st.integers(0, 2**32 - 1),
       adt=st.sampled_from([np.uint8, np.int8]), bdt=st.sampled_from([np.int8, np.uint8]),
       per_column=st.booleans(), extreme=st.booleans(), out32=st.booleans(),
       width=st.sampled_from([w for w, ok in ((512, HAS_512), (256, HAS_256)) if ok] or [0]))
def test_vnni_matmul_equals_oracle(M, K, N, seed, adt, bdt, per_column, extreme, out32, width):
    """Any 8-bit data (full range, both signs), scalar and per-column zero points, int32
    (epilogue) and int64 (finish) results, GEMV (M ≤ 8) and packed paths."""
    if not width:
        pytest.skip("host has no VNNI")
    rng = np.random.default_rng(seed)
    a, b = _codes(rng, adt, (M, K), extreme), _codes(rng, bdt, (K, N), extreme)
    ai, bi = np.iinfo(adt), np.iinfo(bdt)
    za = int(rng.integers(int(ai.min), int(ai.max) + 1))
    zb = _codes(rng, bdt, (N,)) if per_column else int(rng.integers(int(bi.min), int(bi.max) + 1))
    want = (a.astype(np.int64) - za) @ (b.astype(np.int64) - np.asarray(zb, np.int64))
    got = V.vnni_matmul(a, b, za, zb, width, np.int32 if out32 else np.int64)
    assert got.dtype == (np.int32 if out32 else np.int64)
    assert np.array_equal(got, want)      # |want| ≤ 300·255·255 < 2^31: int32 fits


def _vnni_calls(monkeypatch):
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return V.vnni_matmul(*args, **kwargs)

    monkeypatch.setattr(exact, "vnni_matmul", counted)
    return calls


@pytest.mark.skipif(not exact.VNNI_WIDTH, reason="backend is not a VNNI one on this host")
def test_matmul_int_full_range_takes_vnni_and_is_exact(monkeypatch):
    """On a VNNI backend full-range u8×s8 (which the AVX2 byte kernel must refuse) is exact
    through vpdpbusd, with bias (int32 epilogue), both accumulator widths, M = 8 (GEMV) up."""
    calls = _vnni_calls(monkeypatch)
    rng = np.random.default_rng(1)
    for M, K, N in [(1, 4096, 64), (3, 33, 17), (8, 255, 100), (64, 517, 96), (257, 64, 33)]:
        a, b = _codes(rng, np.uint8, (M, K), True), _codes(rng, np.int8, (K, N), True)
        bias = rng.integers(-2**20, 2**20, N)
        for za, zb, bits in [(0, 0, 32), (128, 0, 32), (255, -128, 64), (7, _codes(rng, np.int8, (N,)), 32)]:
            acc, n = matmul_int(a, b, za, zb, bias, acc_bits=bits)
            want, _ = ref_matmul(a, b, za, zb, bias, bits, "wrap")
            assert np.array_equal(acc, want) and n == 0
    assert len(calls) == 3 * 4      # M = 1 and 3 take the madd16 GEMV (exact too)


@pytest.mark.skipif(not exact.VNNI_WIDTH, reason="backend is not a VNNI one on this host")
def test_conv2d_int_through_vnni_equals_oracle(monkeypatch):
    """Patches packed straight from x (border taps = zero point), bias in the epilogue,
    every signedness, strides, dilation, asymmetric padding, per-channel zero points."""
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return V.vnni_conv(*args, **kwargs)

    monkeypatch.setattr(conv_mod, "vnni_conv", counted)
    rng = np.random.default_rng(2)
    geoms = [((2, 5, 9, 8), (7, 5, 3, 3), (2, 1), (1, 2, 0, 1), (1, 1)),
             ((1, 1, 28, 28), (16, 1, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
             ((3, 16, 7, 7), (33, 16, 3, 2), (1, 1), (2, 0, 1, 1), (2, 1))]
    for xdt, wdt in [(np.uint8, np.int8), (np.int8, np.int8), (np.uint8, np.uint8)]:
        for xs, ws, st, pad, dil in geoms:
            x, w = _codes(rng, xdt, xs, True), _codes(rng, wdt, ws, True)
            zx, zw = int(np.iinfo(xdt).max), _codes(rng, wdt, (ws[0],))
            bias = rng.integers(-1000, 1000, ws[0])
            for z in ((0, 0, None), (zx, zw, bias)):
                acc, n = conv2d_int(x, w, *z, stride=st, padding=pad, dilation=dil)
                want, _ = ref_conv2d(x, w, *z, stride=st, padding=pad, dilation=dil)
                assert np.array_equal(acc, want) and n == 0 and acc.dtype == np.int32
    assert len(calls) == 3 * 3 * 2


@pytest.mark.parametrize("fa", [0, 1])
@pytest.mark.parametrize("need_sum", [False, True])
def test_pack_a_conv_equals_numpy_twin(fa, need_sum):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (2, 3, 9, 8)).astype(np.uint8)     # an already padded input
    flip = V.FLIP if fa else np.uint32(0)
    for kh, kw, sh, sw, dh, dw in [(3, 3, 1, 1, 1, 1), (2, 3, 2, 1, 2, 1), (1, 1, 1, 1, 1, 1)]:
        Ho, Wo = (9 - dh * (kh - 1) - 1) // sh + 1, (8 - dw * (kw - 1) - 1) // sw + 1
        geom = np.array([kh, kw, sh, sw, dh, dw, Ho, Wo], np.int64)
        sa, _, _ = V.packed_shapes(2 * Ho * Wo, 3 * kh * kw, 1, V.ZMM_TILE)
        out, want = np.full(sa, 7, np.uint8), np.full(sa, 9, np.uint8)
        row, row2 = np.full(sa[0] * 12, 5, np.int32), np.full(sa[0] * 12, 5, np.int32)
        V.pack_a_conv(x, flip, geom, out, row, need_sum)
        V.pack_a_conv_reference(x, flip, geom, want, row2, need_sum)
        assert np.array_equal(out, want) and np.array_equal(row, row2)



def test_overflow_prone_operands_never_take_vnni(monkeypatch):
    """Wider-than-8-bit codes, K beyond K_MAX, or an accumulator that can overflow go
    elsewhere (emulation or BLAS), so the VNNI path is never inexact."""
    calls = _vnni_calls(monkeypatch)
    rng = np.random.default_rng(3)
    a16 = rng.integers(0, 300, (10, 20)).astype(np.int16)
    b = _codes(rng, np.int8, (20, 6))
    assert np.array_equal(matmul_int(a16, b, 0, 0)[0], ref_matmul(a16, b)[0])
    a8 = _codes(rng, np.uint8, (10, 20), True)
    acc, n = matmul_int(a8, b, 0, 0, acc_bits=16)           # can overflow int16: sequential emulation
    want, wn = ref_matmul(a8, b, 0, 0, None, 16, "wrap")
    assert np.array_equal(acc, want) and n == wn
    assert calls == []
