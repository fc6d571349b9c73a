"""The u8×s8 byte multiply-add kernel (vpmaddubsw) equals its int64 reference exactly."""

import contextlib
import platform

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qsim.kernels.exact as exact
from qsim.kernels import matmul_int
from qsim.kernels.madd8 import (
    PAIR_LIMIT, finish_madd8, finish_madd8_reference, gemm_madd8, gemm_madd8_reference, madd8_matmul, madd8_plan,
    pack_a_u8, pack_a_u8_reference, pack_b_s8, pack_b_s8_reference, packed_shapes,
)
from qsim.kernels.reference import ref_matmul

SETTINGS = settings(max_examples=40, deadline=None)


@contextlib.contextmanager
def madd8_always():
    """Route every 8-bit product with M > 8 to the byte kernel (when its bound holds; the
    VNNI kernels, which would take them first on a VNNI host, are switched off); yields
    the list of calls that took it."""
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return madd8_matmul(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(exact, "VNNI_WIDTH", 0)
        mp.setattr(exact, "SIMD", True)          # the byte kernel has a generic-IR form: any backend may test it
        mp.setattr(exact, "MADD8_ROWS", 0)
        mp.setattr(exact, "MADD8_OPS", 0)
        mp.setattr(exact, "madd8_matmul", counted)
        yield calls


def _ab(rng, M, K, N, adt, bdt, b_abs):
    """a: full code range of adt; b: codes of bdt with |b − centre| ≤ b_abs."""
    ai = np.iinfo(adt)
    a = rng.integers(int(ai.min), int(ai.max) + 1, (M, K)).astype(adt)
    centre = 0 if bdt == np.int8 else 128
    b = (centre + rng.integers(-b_abs, b_abs + 1, (K, N))).astype(bdt)
    return a, b


@SETTINGS
@given(M=st.integers(1, 13), K=st.integers(1, 40), N=st.integers(1, 40), seed=st.integers(0, 2**32 - 1),
       ca=st.sampled_from([0, 128]))
def test_packing_and_kernel_equal_numpy_twins(M, K, N, seed, ca):
    """Packing (ragged M, K, N: zero padding), the tile kernel and the zero-point finish
    agree with their NumPy twins, even over garbage-filled work arrays."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-ca, 256 - ca, (M, K)).astype(np.int16)
    b = rng.integers(-64, 65, (K, N)).astype(np.int8)
    sa, sb, so = packed_shapes(M, K, N)
    ap, ap2 = np.full(sa, 7, np.uint8), np.full(sa, 9, np.uint8)
    bp, bp2 = np.full(sb, 7, np.int8), np.full(sb, 9, np.int8)
    np.testing.assert_array_equal(pack_a_u8(a, np.int64(ca), ap), pack_a_u8_reference(a, ca, ap2))
    np.testing.assert_array_equal(pack_b_s8(b, np.int64(0), bp), pack_b_s8_reference(b, 0, bp2))
    np.testing.assert_array_equal(ap, ap2)
    np.testing.assert_array_equal(bp, bp2)
    raw, raw2 = np.full(so, 5, np.int32), np.full(so, 6, np.int32)
    gemm_madd8(ap, bp, raw)
    gemm_madd8_reference(ap, bp, raw2)
    np.testing.assert_array_equal(raw, raw2)
    np.testing.assert_array_equal(raw[:M, :N], (a.astype(np.int64) + ca) @ b.astype(np.int64))
    asum, bsum = ap[:M].sum(1, dtype=np.int64), b.astype(np.int64).sum(0)
    zb = rng.integers(-128, 128, N).astype(np.int64)
    out, out2 = np.empty((M, N), np.int64), np.empty((M, N), np.int64)
    finish_madd8(raw, asum, bsum, np.int64(3), zb, np.int64(K), out)
    finish_madd8_reference(raw, asum, bsum, 3, zb, K, out2)
    np.testing.assert_array_equal(out, out2)


@SETTINGS
@given(M=st.integers(9, 40), K=st.integers(1, 300), N=st.integers(16, 70), seed=st.integers(0, 2**32 - 1),
       adt=st.sampled_from([np.uint8, np.int8]), bdt=st.sampled_from([np.int8, np.uint8]),
       b_abs=st.sampled_from([1, 40, 64, 127]), per_column=st.booleans(), with_bias=st.booleans(),
       acc_bits=st.sampled_from([32, 64]))
def test_matmul_int_byte_kernel_equals_reference(M, K, N, seed, adt, bdt, b_abs, per_column,
                                                 with_bias, acc_bits):
    """matmul_int through the byte-kernel dispatch (ragged shapes, u8/s8 operands, scalar and
    per-column zero points, bias; |b| ≤ 127 takes the fallback) equals the int64 oracle."""
    K = max(K, 16)
    rng = np.random.default_rng(seed)
    a, b = _ab(rng, M, K, N, adt, bdt, b_abs)
    ai, bi = np.iinfo(adt), np.iinfo(bdt)
    za = int(rng.integers(int(ai.min), int(ai.max) + 1))
    zb = (rng.integers(int(bi.min), int(bi.max) + 1, N) if per_column
          else int(rng.integers(int(bi.min), int(bi.max) + 1)))
    bias = rng.integers(-(1 << 20), 1 << 20, N) if with_bias else None
    if acc_bits == 32 and K * 255 * 255 + (1 << 20) >= 1 << 31:
        acc_bits = 64
    with madd8_always() as calls:
        acc, count = matmul_int(a, b, za, zb, bias, acc_bits=acc_bits)
    assert len(calls) == (madd8_plan(a, b) is not None)
    ref, _ = ref_matmul(a, b, za, zb, bias, acc_bits, "wrap")
    assert count == 0
    assert acc.dtype == (np.int32 if acc_bits == 32 else np.int64)
    np.testing.assert_array_equal(acc, ref)


def test_pair_bound_boundary():
    """2·max a'·max|b'| = 32640 ≤ 32767 takes the byte kernel (with pairs at the extreme:
    255·64 + 255·64 and 255·−64 + 255·−64); one more (|b| = 65: 33150) would saturate an
    int16 pair sum, so it is refused and the fallback stays exact too."""
    M, K, N = 12, 64, 32
    a = np.full((M, K), 255, np.uint8)
    a[::2, 1::3] = 0
    for bval, takes in [(64, True), (65, False)]:
        b = np.full((K, N), bval, np.int8)
        b[:, ::2] = -bval
        b[5, 3] = 0
        plan = madd8_plan(a, b)
        assert (plan is not None) == takes
        assert (2 * 255 * bval <= PAIR_LIMIT) == takes
        for za, zb in [(0, 0), (128, 0), (7, np.arange(N) - 16)]:
            with madd8_always() as calls:
                acc, count = matmul_int(a, b, za, zb)
            assert len(calls) == takes
            np.testing.assert_array_equal(acc, ref_matmul(a, b, za, zb, None, 32, "wrap")[0])
            assert count == 0
    # signed a: a + 128 is the unsigned operand, so |a| up to 127 with |b| ≤ 64 still fits
    a8 = np.full((M, K), -128, np.int8)
    a8[1::2] = 127
    b = np.full((K, N), -64, np.int8)
    assert madd8_plan(a8, b) == (128, 0)
    with madd8_always() as calls:
        acc, _ = matmul_int(a8, b, -3, 5)
    assert len(calls) == 1
    np.testing.assert_array_equal(acc, ref_matmul(a8, b, -3, 5, None, 32, "wrap")[0])
    # a uint8 weight beyond 127 is shifted by 128 to signed bytes
    bu = np.full((K, N), 200, np.uint8)
    assert madd8_plan(np.full((M, K), 100, np.uint8), bu) == (0, 128)
    assert madd8_plan(np.zeros((M, K), np.int16), b) is None      # not 8-bit: never this kernel


def test_int32_running_sum_bound():
    """The plan also requires every int32 running sum of raw codes to stay exact."""
    k_max = ((1 << 31) - 1) // (255 * 64) - 3      # (K + 3)·255·64 < 2^31 exactly up to here
    a = np.full((9, k_max + 1), 255, np.uint8)
    b = np.full((k_max + 1, 16), 64, np.int8)
    assert madd8_plan(a, b) is None
    plan = madd8_plan(a[:, :k_max], b[:k_max])
    assert plan is not None
    got = madd8_matmul(a[:, :k_max], b[:k_max], 0, 0, plan)     # the largest raw sums the plan admits
    np.testing.assert_array_equal(got, np.full((9, 16), k_max * 255 * 64, np.int64))


def test_square_shapes_extremes():
    """Full-size square and ragged shapes at the default dispatch, extreme codes."""
    rng = np.random.default_rng(3)
    for M, K, N in [(256, 256, 256), (131, 517, 77), (200, 300, 130)]:
        a = rng.choice(np.array([0, 255], np.uint8), (M, K))
        b = rng.choice(np.array([-64, 64, 0], np.int8), (K, N))
        plan = madd8_plan(a, b)
        got = madd8_matmul(a, b, 128, 0, plan, np.int32)
        np.testing.assert_array_equal(got, (a.astype(np.int64) - 128) @ b.astype(np.int64))
        acc, _ = matmul_int(a, b, 128, 0)
        np.testing.assert_array_equal(acc, got)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-only instruction check")
def test_madd8_emits_vpmaddubsw_on_avx2():
    """The tile kernel is vpmaddubsw (u8×s8 pairs) on ymm registers on AVX2 hosts, then the
    int16→int32 widening: vpmaddwd on plain AVX2; on a VNNI host LLVM legitimately fuses
    vpmaddwd + vpaddd into vpdpwssd (same exact sums), so either is accepted there."""
    from llvmlite import binding as llvm
    from numba import njit
    feats = llvm.get_host_cpu_features()
    if not feats.get("avx2", False):
        pytest.skip("host has no AVX2")
    fn = njit(gemm_madd8.py_func)          # uncached copy: cached code cannot be inspected
    sa, sb, so = packed_shapes(4, 4, 16)
    fn(np.zeros(sa, np.uint8), np.zeros(sb, np.int8), np.zeros(so, np.int32))
    lines = fn.inspect_asm(fn.signatures[0]).splitlines()

    def emits(op):
        return any(op in line.split() and "ymm" in line for line in (ln.replace("\t", " ") for ln in lines))

    assert emits("vpmaddubsw")
    widen = ["vpmaddwd"]
    if feats.get("avxvnni", False) or feats.get("avx512vnni", False):
        widen.append("vpdpwssd")
    assert any(emits(op) for op in widen), f"none of {widen} on ymm"
