"""Prepacked weights (`qsim.kernels.pack_weights`): same integers as the unpacked call and
the int64 oracle, on every backend; the small-M and packed-GEMM VNNI micro-kernels against
their NumPy twins where the host has the instructions (skipped with the reason elsewhere)."""

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qsim.kernels.prepack as P
from qsim.kernels import PackedWeights, backend, conv2d_int, cpu, matmul_int, pack_weights
from qsim.kernels import vnni as V
from qsim.kernels.reference import ref_conv2d, ref_matmul

HAS_512 = "avx512vnni" in cpu.available()
HAS_256 = HAS_512 or "avxvnni" in cpu.available()     # the ymm form needs AVX-VNNI or AVX-512 VNNI + VL
need512 = pytest.mark.skipif(not HAS_512, reason="host (as Numba targets it) has no AVX-512 VNNI")
need256 = pytest.mark.skipif(not HAS_256, reason="host (as Numba targets it) has no AVX-VNNI / AVX-512 VNNI")
WIDTHS = [pytest.param(512, marks=need512), pytest.param(256, marks=need256)]
VNNI_BACKEND = backend() in ("avx512vnni", "avxvnni")
SETTINGS = settings(max_examples=30, deadline=None)
DTYPES = [(np.uint8, np.int8), (np.int8, np.uint8), (np.int8, np.int8), (np.uint8, np.uint8)]


def _codes(rng, dtype, shape, extreme=False):
    info = np.iinfo(dtype)
    if extreme:
        return rng.choice(np.array([info.min, info.max], dtype), shape)
    return rng.integers(int(info.min), int(info.max) + 1, shape).astype(dtype)


@pytest.fixture
def runs(monkeypatch):
    """Counts the calls that took the packed VNNI path."""
    calls = []
    real = P._run

    def spy(a, *args):
        calls.append(a.shape)
        return real(a, *args)

    monkeypatch.setattr(P, "_run", spy)
    return calls


# -- the API on every backend ---------------------------------------------------------------
@pytest.mark.parametrize("adt,bdt", DTYPES)
@pytest.mark.parametrize("M", list(range(1, 10)) + [12, 13, 25])
def test_packed_matmul_equals_oracle(M, adt, bdt, runs):
    rng = np.random.default_rng(M)
    for K, N in ((1, 1), (7, 5), (33, 70), (130, 97)):
        a, b = _codes(rng, adt, (M, K)), _codes(rng, bdt, (K, N))
        pw = pack_weights(b)
        ia, ib = np.iinfo(adt), np.iinfo(bdt)
        za = int(rng.integers(ia.min, ia.max + 1))
        zbv = rng.integers(ib.min, ib.max + 1, N)
        bias = rng.integers(-5000, 5000, N)
        for zb in (0, int(zbv[0]), zbv):
            for bb in (None, bias):
                for bits in (32, 64):
                    got, n = matmul_int(a, pw, za, zb, bb, acc_bits=bits)
                    want, _ = ref_matmul(a, b, za, zb, bb, acc_bits=bits)
                    assert n == 0 and got.dtype == (np.int32 if bits == 32 else np.int64)
                    assert got.shape == (M, N) and np.array_equal(got, want), (M, K, N, zb, bits)
    assert (len(runs) > 0) == VNNI_BACKEND


@pytest.mark.parametrize("adt,bdt", DTYPES)
@pytest.mark.parametrize("M", list(range(1, 10)) + [13])
def test_packed_matmul_extreme_operands(M, adt, bdt):
    """255 × −128 (and every other corner) in every position, K odd and at the longest K
    whose raw int32 sums stay exact (K_MAX): the int32 lanes never wrap."""
    rng = np.random.default_rng(10 + M)
    ia, ib = np.iinfo(adt), np.iinfo(bdt)
    for K in (1, 3, 5, 37):
        a, b = _codes(rng, adt, (M, K), True), _codes(rng, bdt, (K, 35), True)
        pw = pack_weights(b)
        for za, zb in ((0, 0), (ia.min, ib.max), (ia.max, ib.min)):
            assert np.array_equal(matmul_int(a, pw, za, zb, acc_bits=64)[0], ref_matmul(a, b, za, zb, acc_bits=64)[0])
    K = V.K_MAX - (M % 2)                 # the longest K, and an odd one next to it
    a = np.full((M, K), ia.max, adt)
    b = np.full((K, 33), ib.min, bdt)
    b[:, 1] = ib.max
    pw = pack_weights(b)
    want = (np.int64(K) * int(ia.max) * np.array([ib.min, ib.max] + [ib.min] * 31, np.int64))[None].repeat(M, 0)
    got, n = matmul_int(a, pw, acc_bits=64)
    assert n == 0 and np.array_equal(got, want)
    if np.abs(want).max() < 2**31:
        assert np.array_equal(matmul_int(a, pw)[0], want)


def test_packed_overflowing_accumulators_count_like_the_array():
    """A narrow accumulator or saturation: the packed weight falls back to the emulating
    path (same result, same overflow count)."""
    rng = np.random.default_rng(3)
    a = rng.integers(200, 256, (6, 400)).astype(np.uint8)
    b = rng.integers(100, 128, (400, 20)).astype(np.int8)
    b[:, ::2] *= -1
    pw = pack_weights(b)
    for bits, ov in ((16, "wrap"), (18, "saturate"), (24, "wrap")):
        got = matmul_int(a, pw, 0, 0, acc_bits=bits, overflow=ov)
        want = ref_matmul(a, b, 0, 0, acc_bits=bits, overflow=ov)
        assert np.array_equal(got[0], want[0]) and got[1] == want[1] > 0
    got = matmul_int(a, pw, 3, 1, pair_saturate16=True)
    assert np.array_equal(got[0], matmul_int(a, b, 3, 1, pair_saturate16=True)[0])


def test_packed_weights_behave_like_the_array():
    rng = np.random.default_rng(4)
    b = _codes(rng, np.int8, (40, 24))
    pw = pack_weights(b)
    assert isinstance(pw, PackedWeights) and pw.shape == b.shape and pw.dtype == b.dtype and pw.ndim == 2
    assert np.array_equal(np.asarray(pw), b) and pw.packed == VNNI_BACKEND
    a = _codes(rng, np.uint8, (5, 40))
    want = matmul_int(a, b, 128)[0]
    b[:] = 0                                          # the caller's array may change: the packed copy does not
    assert np.array_equal(matmul_int(a, pw, 128)[0], want)
    a16 = a.astype(np.int16)                          # a 16-bit activation: the ordinary path on the stored copy
    assert np.array_equal(matmul_int(a16, pw, 128)[0], want)
    with pytest.raises(ValueError, match="K must equal"):
        matmul_int(a[:, :39], pw)
    with pytest.raises(ValueError, match="b_zero_point must lie"):
        matmul_int(a, pw, 0, 200)
    with pytest.raises(ValueError, match="acc_bits"):
        matmul_int(a, pw, acc_bits=7)
    with pytest.raises(ValueError, match="2-D"):
        pack_weights(np.zeros((2, 3, 4), np.int8))
    with pytest.raises(TypeError, match="integer"):
        pack_weights(np.zeros((2, 3), np.float32))
    for _ in range(2):                                # the cached plan gives the same integers
        assert np.array_equal(matmul_int(a, pw, 128)[0], want)
    assert "PackedWeights" in repr(pw)


@pytest.mark.parametrize("xdt,wdt", DTYPES[:2])
def test_packed_conv_equals_oracle(xdt, wdt):
    rng = np.random.default_rng(5)
    cases = [((1, 3, 9, 9), (4, 3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
             ((2, 5, 8, 7), (33, 5, 3, 2), (2, 1), (0, 2, 1, 0), (1, 2)),
             ((1, 4, 6, 6), (8, 4, 1, 1), (2, 2), (0, 0, 0, 0), (1, 1))]
    for xs, ws, stride, pad, dil in cases:
        x, w = _codes(rng, xdt, xs), _codes(rng, wdt, ws)
        pw = pack_weights(w)
        zx = int(rng.integers(np.iinfo(xdt).min, np.iinfo(xdt).max + 1))
        zw = rng.integers(np.iinfo(wdt).min, np.iinfo(wdt).max + 1, ws[0])
        bias = rng.integers(-999, 999, ws[0])
        for z in (int(zw[0]), zw):
            got, n = conv2d_int(x, pw, zx, z, bias, stride=stride, padding=pad, dilation=dil)
            want, _ = ref_conv2d(x, w, zx, z, bias, stride=stride, padding=pad, dilation=dil)
            assert n == 0 and np.array_equal(got, want)
    x, w = _codes(rng, xdt, (1, 4, 5, 5)), _codes(rng, wdt, (4, 2, 3, 3))      # groups: the stored copy
    got = conv2d_int(x, pack_weights(w), 1, 2, groups=2)
    assert np.array_equal(got[0], ref_conv2d(x, w, 1, 2, groups=2)[0])


@SETTINGS
@given(M=st.integers(1, 14), K=st.integers(1, 70), N=st.integers(1, 80), seed=st.integers(0, 2**32 - 1),
       dts=st.sampled_from(DTYPES), extreme=st.booleans(), per_col=st.booleans())
def test_packed_matmul_property(M, K, N, seed, dts, extreme, per_col):
    rng = np.random.default_rng(seed)
    a, b = _codes(rng, dts[0], (M, K), extreme), _codes(rng, dts[1], (K, N), extreme)
    za = int(_codes(rng, dts[0], (), extreme))
    zb = _codes(rng, dts[1], (N,), extreme).astype(np.int64) if per_col else int(_codes(rng, dts[1], (), extreme))
    got, n = matmul_int(a, pack_weights(b), za, zb)
    assert n == 0 and np.array_equal(got, ref_matmul(a, b, za, zb)[0])


def _run_backend(name: str) -> subprocess.CompletedProcess:
    code = (
        "import numpy as np\n"
        "from qsim.kernels import backend, matmul_int, conv2d_int, pack_weights\n"
        "from qsim.kernels.reference import ref_matmul, ref_conv2d\n"
        "rng = np.random.default_rng(0)\n"
        "for M in (1, 3, 5, 8, 9, 40):\n"
        "    a = rng.integers(0, 256, (M, 301)).astype(np.uint8)\n"
        "    b = rng.choice(np.array([-128, 127], np.int8), (301, 40))\n"
        "    acc, n = matmul_int(a, pack_weights(b), 3, 1)\n"
        "    assert np.array_equal(acc, ref_matmul(a, b, 3, 1)[0]) and n == 0\n"
        "x = rng.integers(-128, 128, (1, 3, 7, 7)).astype(np.int8)\n"
        "w = rng.integers(-128, 128, (5, 3, 3, 3)).astype(np.int8)\n"
        "got = conv2d_int(x, pack_weights(w), 2, 0, padding=1)[0]\n"
        "assert np.array_equal(got, ref_conv2d(x, w, 2, 0, padding=(1,) * 4)[0])\n"
        "print(backend(), pack_weights(b).packed)\n")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", QSIM_KERNEL_BACKEND=name)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("name", ["portable", "avx2", "avxvnni"])
def test_packed_weights_on_other_backends(name):
    """Every backend: the packed weight gives the oracle's integers (packed panels only on
    the VNNI backends; AVX-VNNI's 16-column panels and 1/2/4-row kernels where the host has
    them)."""
    if name not in cpu.available():
        pytest.skip(f"host (as Numba targets it) cannot run backend {name}")
    r = _run_backend(name)
    assert r.returncode == 0, r.stderr[-800:]
    assert r.stdout.split() == [name, str(name == "avxvnni")]


# -- the micro-kernels against their NumPy twins (where the host has them) --------------------
def _panels(rng, bdt, K, N, width, extreme=False):
    b = _codes(rng, bdt, (K, N), extreme)
    tile = V.ZMM_TILE if width == 512 else V.YMM_TILE
    _, sb, _ = V.packed_shapes(1, K, N, tile)
    bp = np.empty(sb, np.int8)
    V.pack_b_panels(b.view(np.uint8), V.FLIP if bdt == np.uint8 else np.uint32(0), bp.view(np.uint32))
    return b, bp


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("extreme", [False, True])
def test_small_packed_kernels_equal_numpy_twin(width, extreme):
    """Every small-M variant (rows 1/2/4/8 zmm, 1/2/4 ymm), K odd and tails, N tails, with
    and without the int32 epilogue."""
    rng = np.random.default_rng(6 + extreme)
    for R in V.SMALL_ROWS[width]:
        for K, N in ((1, 3), (5, 33), (131, 70), (64, 64)):
            _, bp = _panels(rng, np.int8, K, N, width, extreme)
            a = _codes(rng, np.uint8, (R, K), extreme)
            ap = np.empty((1, bp.shape[1], R), np.uint32)
            row = np.zeros(R, np.int32)
            V.pack_a_strips(a, np.uint32(0), ap, row, True)
            n = bp.shape[0] * bp.shape[2] // 4
            col = rng.integers(-2**31, 2**31, n).astype(np.int32)
            nzb = rng.integers(-255, 256, n).astype(np.int32)
            for enable in (False, True):
                out = np.full((R, n), 7, np.int32)
                V.small_packed(ap, bp.view(np.uint32), out, col, nzb, row, width, enable)
                want = np.empty_like(out)
                V.gemm_vnni_reference(ap.view(np.uint8), bp, want, col if enable else col[:0], nzb, row)
                assert np.array_equal(out, want), (R, K, N, enable)


@pytest.mark.parametrize("width", WIDTHS)
def test_small_and_gemm_kernels_emit_vpdpbusd(width):
    """The small-M panel drivers and the GEMM multiply with vpdpbusd on the expected
    register width (uncached copies: cached code cannot be inspected; LLVM may encode the
    ymm form with {vex} or EVEX, both match)."""
    import re

    from numba import njit
    reg = "zmm" if width == 512 else "ymm"
    pattern = re.compile(rf"vpdpbusd\b[^\n]*%{reg}")
    for R in V.SMALL_ROWS[width]:
        fn = njit(V.PANELS[(width, R)].py_func)
        fn(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)          # P = 0 panels: compiles, touches no memory
        assert pattern.search(fn.inspect_asm(fn.signatures[0])), (width, R)
    fn = njit((V.gemm_vnni512 if width == 512 else V.gemm_vnni256).py_func)
    rows, nr = (12, 32) if width == 512 else (6, 16)
    z = np.zeros(0, np.int32)
    fn(np.zeros((1, 1, rows), np.uint32), np.zeros((1, 1, nr), np.uint32), np.zeros((rows, nr), np.int32), z, z, z)
    assert pattern.search(fn.inspect_asm(fn.signatures[0]))


@pytest.mark.parametrize("width", WIDTHS)
def test_packed_gemm_drivers_equal_numpy_twin(width):
    rng = np.random.default_rng(8)
    for M, K, N, extreme in ((13, 5, 33, False), (25, 131, 70, True), (30, 600, 40, False)):
        a = _codes(rng, np.int8, (M, K), extreme)
        _, bp = _panels(rng, np.uint8, K, N, width, extreme)
        n = bp.shape[0] * bp.shape[2] // 4
        col = rng.integers(-2**31, 2**31, n).astype(np.int32)
        nzb = rng.integers(-255, 256, n).astype(np.int32)
        for c, z in ((col, nzb), (col[:0], nzb[:0])):
            out, row = V.packed_run(a.view(np.uint8).reshape(M, K, 1, 1), V._NO_GEOM, False, V.FLIP, bp.view(np.uint32),
                                    c, z, True, width)
            rows = 12 if width == 512 else 6
            S = -(-M // rows)
            ap = np.empty((S, bp.shape[1], 4 * rows), np.uint8)
            row2 = np.zeros(S * rows, np.int32)
            V.pack_a_strips_reference(a.view(np.uint8), V.FLIP, ap.view(np.uint32), row2, True)
            want = np.empty_like(out)
            V.gemm_vnni_reference(ap, bp, want, c, z, row2)
            assert np.array_equal(row, row2) and np.array_equal(out, want)


def test_packed_epilogue_equals_numpy_twin():
    rng = np.random.default_rng(9)
    for N, n, has_bias in ((5, 32, True), (32, 32, False), (40, 64, True)):
        colsum = rng.integers(-128 * 600, 128 * 600, n).astype(np.int32)
        zb = rng.integers(-255, 256, N).astype(np.int64)
        bias = rng.integers(-2**31, 2**31, N) if has_bias else np.zeros(0, np.int64)
        got = [np.full(n, 3, np.int32), np.full(n, 3, np.int32)]
        want = [np.zeros(n, np.int32), np.zeros(n, np.int32)]
        V.packed_epilogue(colsum, np.int64(600), np.int64(201), zb, bias, *got)
        V.packed_epilogue_reference(colsum, 600, 201, zb, bias, *want)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


@SETTINGS
@given(M=st.integers(1, 30), K=st.integers(1, 41), N=st.integers(1, 70), seed=st.integers(0, 2**32 - 1),
       adt=st.sampled_from([np.uint8, np.int8]), bdt=st.sampled_from([np.int8, np.uint8]),
       tile=st.sampled_from([V.ZMM_TILE, V.YMM_TILE]), epi=st.booleans())
def test_pack_weight_and_pack_a_equal_numpy_twins(M, K, N, seed, adt, bdt, tile, epi):
    """The one-function packers (every host: plain Numba loops): panels, column sums and
    epilogue vectors of the weight; strips of a from a matrix."""
    rng = np.random.default_rng(seed)
    a, b = _codes(rng, adt, (M, K)), _codes(rng, bdt, (K, N))
    fa = V.FLIP if adt == np.int8 else np.uint32(0)
    fb = V.FLIP if bdt == np.uint8 else np.uint32(0)
    sa, sb, _ = V.packed_shapes(M, K, N, tile)
    n = sb[0] * sb[2] // 4
    zb = V._ro(rng.integers(-255, 256, N).astype(np.int64))
    bias = rng.integers(-2**31, 2**31, N) if epi else np.zeros(0, np.int64)
    got = [np.full(sb[:2] + (sb[2] // 4,), 7, np.uint32), np.full(n, 5, np.int32)] + \
        [np.full(n if epi else 0, 3, np.int32) for _ in range(2)]
    want = [np.full(sb[:2] + (sb[2] // 4,), 9, np.uint32), np.full(n, 6, np.int32)] + \
        [np.full(n if epi else 0, 4, np.int32) for _ in range(2)]
    Kq, Np = sb[1], n
    bu = V.pad_bytes(b.view(np.uint8), fb, 4 * Kq, Np)
    V.pack_weight(bu, np.int64(K), fb, got[0], got[1], np.int64(77), zb, bias, got[2], got[3])
    V.pack_weight_reference(bu, K, fb, want[0], want[1], 77, zb, bias, want[2], want[3])
    assert all(np.array_equal(g, w) for g, w in zip(got, want))
    plain = np.empty_like(got[0])                 # the padding changes nothing: same panels as the unpadded weight
    V.pack_b_panels_reference(b.view(np.uint8), fb, plain)
    assert np.array_equal(got[0], plain)
    assert np.array_equal(got[1][:N], b.astype(np.int64).sum(axis=0) - (128 * K if bdt == np.uint8 else 0))
    assert not got[1][N:].any()
    ap, ap2 = np.full(sa[:2] + (sa[2] // 4,), 7, np.uint32), np.full(sa[:2] + (sa[2] // 4,), 9, np.uint32)
    r1, r2 = np.full(sa[0] * tile[0], 5, np.int32), np.full(sa[0] * tile[0], 6, np.int32)
    src = V.pad_bytes(a.view(np.uint8), fa, M, 4 * Kq).reshape(M, 4 * Kq, 1, 1)
    V.pack_a(src, False, fa, V._NO_GEOM, ap, r1, True)
    V.pack_a_strips_reference(a.view(np.uint8), fa, ap2, r2, True)
    assert np.array_equal(ap, ap2) and np.array_equal(r1, r2)


@SETTINGS
@given(N=st.integers(1, 2), C=st.integers(1, 5), H=st.integers(3, 9), W=st.integers(3, 9), kh=st.integers(1, 3),
       kw=st.integers(1, 3), sh=st.integers(1, 2), sw=st.integers(1, 2), dh=st.integers(1, 2),
       flip=st.booleans(), seed=st.integers(0, 2**32 - 1), extreme=st.booleans())
def test_pack_a_conv_patches_equal_numpy_twin(N, C, H, W, kh, kw, sh, sw, dh, flip, seed, extreme):
    rng = np.random.default_rng(seed)
    if H < dh * (kh - 1) + 1 or W < kw:
        return
    x = V._ro(_codes(rng, np.uint8, (N, C, H, W), extreme))
    Ho, Wo = (H - dh * (kh - 1) - 1) // sh + 1, (W - kw) // sw + 1
    geom = np.array([kh, kw, sh, sw, dh, 1, Ho, Wo], np.int64)
    for rows in (12, 6):
        S, Kq = -(-(N * Ho * Wo) // rows), -(-(C * kh * kw) // 4)
        got, want = np.full((S, Kq, rows), 7, np.uint32), np.full((S, Kq, rows), 9, np.uint32)
        r1, r2 = np.full(S * rows, 5, np.int32), np.full(S * rows, 6, np.int32)
        fa = V.FLIP if flip else np.uint32(0)
        V.pack_a(x, True, fa, geom, got, r1, True)
        V.pack_a_reference(x, True, fa, geom, want, r2, True)
        assert np.array_equal(got, want) and np.array_equal(r1, r2)
