"""The int16 pair multiply-add kernel (small M, 8-bit weights) equals its int64 reference exactly."""

import platform

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qsim.kernels import matmul_int
from qsim.kernels.madd16 import MADD16_ROWS, gemv_madd16, gemv_madd16_reference, madd16_fits, madd16_matmul
from qsim.kernels.reference import ref_matmul

SETTINGS = settings(max_examples=40, deadline=None)


def _codes(rng, dtype, shape, extremes: bool):
    info = np.iinfo(dtype)
    if extremes:
        return rng.choice(np.array([info.min, info.max, 0], np.int64), size=shape).astype(dtype)
    return rng.integers(int(info.min), int(info.max) + 1, size=shape).astype(dtype)


@SETTINGS
@given(M=st.integers(1, MADD16_ROWS), K=st.integers(0, 70), N=st.integers(1, 40), seed=st.integers(0, 2**32 - 1),
       bdt=st.sampled_from([np.int8, np.uint8]), extremes=st.booleans())
def test_gemv_madd16_equals_numpy_twin(M, K, N, seed, bdt, extremes):
    """Ragged K (not a multiple of 8, odd) and N (not a multiple of 16), extreme int16 a."""
    rng = np.random.default_rng(seed)
    b = _codes(rng, bdt, (K, N), extremes)
    amax = (1 << 31) // (max(K, 1) * (128 if bdt == np.int8 else 255)) - 1
    amax = min(amax, 32767)
    a16 = np.zeros((M, K + (K & 1) + 2 * int(rng.integers(0, 2))), np.int16)   # extra columns are ignored
    a16[:, :K] = (rng.choice(np.array([-amax, amax, 0, 1]), (M, K)) if extremes
                  else rng.integers(-amax, amax + 1, (M, K)))
    got = gemv_madd16(a16, b, bdt == np.uint8)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, gemv_madd16_reference(a16, b))
    np.testing.assert_array_equal(got, a16[:, :K].astype(np.int64) @ b.astype(np.int64))


@SETTINGS
@given(M=st.integers(1, MADD16_ROWS), K=st.integers(0, 90), N=st.integers(1, 40), seed=st.integers(0, 2**32 - 1),
       adt=st.sampled_from([np.uint8, np.int8, np.int16]), bdt=st.sampled_from([np.int8, np.uint8]),
       per_column=st.booleans(), with_bias=st.booleans(), extremes=st.booleans())
def test_matmul_int_small_m_8bit_equals_reference(M, K, N, seed, adt, bdt, per_column, with_bias, extremes):
    """matmul_int through the madd16 dispatch (zero points, bias) equals the int64 oracle."""
    rng = np.random.default_rng(seed)
    a = _codes(rng, adt, (M, K), extremes)
    b = _codes(rng, bdt, (K, N), extremes)
    ai, bi = np.iinfo(adt), np.iinfo(bdt)
    za = int(rng.integers(int(ai.min), int(ai.max) + 1))
    blo, bhi = int(bi.min), int(bi.max) + 1
    zb = rng.integers(blo, bhi, N) if per_column else int(rng.integers(blo, bhi))
    bias = rng.integers(-(1 << 20), 1 << 20, N) if with_bias else None
    acc, count = matmul_int(a, b, za, zb, bias, acc_bits=64)
    ref, _ = ref_matmul(a, b, za, zb, bias, 64, "wrap")
    assert count == 0
    np.testing.assert_array_equal(acc, ref)


def test_madd16_matmul_large_shapes_extremes():
    """Full-size ragged shapes with the extreme codes (largest |products|)."""
    rng = np.random.default_rng(5)
    for M, K, N, bdt in [(1, 4099, 70, np.int8), (5, 1003, 77, np.uint8), (8, 2048, 64, np.int8), (3, 17, 16, np.int8)]:
        a = rng.choice(np.array([0, 255], np.uint8), (M, K))
        b = _codes(rng, bdt, (K, N), True)
        assert madd16_fits(M, K, b, 255)
        got = madd16_matmul(a, b, 255 if bdt == np.int8 else 0)
        want = (a.astype(np.int64) - (255 if bdt == np.int8 else 0)) @ b.astype(np.int64)
        np.testing.assert_array_equal(got, want)


def test_madd16_fits_bounds_and_fallbacks():
    """The path is refused when an int32 running sum could overflow, for int16 a beyond
    ±32767, more than MADD16_ROWS rows, non-8-bit or non-contiguous weights; matmul_int
    stays exact through the fallbacks."""
    b8 = np.zeros((10, 4), np.int8)
    assert madd16_fits(1, 10, b8, 32767)
    assert not madd16_fits(1, 10, b8, 32768)
    assert not madd16_fits(MADD16_ROWS + 1, 10, b8, 1)
    assert not madd16_fits(1, 10, b8.astype(np.int16), 1)
    assert not madd16_fits(1, 10, np.asfortranarray(np.zeros((10, 4), np.int8)), 1)
    k_max = ((1 << 31) - 1) // (255 * 128)          # K·255·128 < 2^31 exactly up to here
    assert madd16_fits(1, k_max, b8, 255) and not madd16_fits(1, k_max + 1, b8, 255)
    assert not madd16_fits(1, 8422, np.zeros((1, 1), np.uint8), 1000)
    # too long for int32 sums: falls back, still exact (64-bit accumulator)
    K = k_max + 9
    a = np.zeros((1, K), np.uint8)
    b = np.full((K, 16), -128, np.int8)
    acc, _ = matmul_int(a, b, 255, acc_bits=64)
    np.testing.assert_array_equal(acc, np.full((1, 16), K * -255 * -128, np.int64))
    # non-contiguous weight and wide a: fallbacks
    rng = np.random.default_rng(0)
    bt = rng.integers(-128, 128, (40, 30)).astype(np.int8).T            # (30, 40), Fortran order
    a16 = rng.integers(-32768, 32768, (3, 30)).astype(np.int16)
    for a_, b_, za in [(rng.integers(0, 256, (6, 30)).astype(np.uint8), bt, 3), (a16, np.ascontiguousarray(bt), 32767)]:
        acc, _ = matmul_int(a_, b_, za, acc_bits=64)
        np.testing.assert_array_equal(acc, ref_matmul(a_, b_, za, 0, None, 64, "wrap")[0])


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-only instruction check")
def test_madd16_emits_vpmaddwd_on_avx2():
    """The kernel's widening multiply + pairwise add is selected as vpmaddwd on AVX2 hosts."""
    from llvmlite import binding as llvm
    from numba import njit
    if not llvm.get_host_cpu_features().get("avx2", False):
        pytest.skip("host has no AVX2")
    fn = njit(gemv_madd16.py_func)          # uncached copy: cached code cannot be inspected
    fn(np.zeros((1, 8), np.int16), np.zeros((8, 16), np.int8), False)
    asm = fn.inspect_asm(fn.signatures[0])
    assert "vpmaddwd" in asm and "ymm" in asm
