"""matmul_int / matmul_int_grouped / matmul_blocks equal their int64 references exactly."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qsim.kernels import matmul_blocks, matmul_int, matmul_int_grouped, rescale_groups
from qsim.kernels.exact import exact_matmul, f32_to_int32, gemv_f32, gemv_f32_reference, to_float, to_float_reference
from qsim.kernels.reference import ref_matmul, ref_matmul_grouped, ref_matmul_pairsat16

ACC_BITS = list(range(8, 33)) + [64]
SETTINGS = settings(max_examples=50, deadline=None)


@st.composite
def operand(draw, shape):
    """Codes of a random width 1–16, signed or unsigned, and a zero point in the code range."""
    bits = draw(st.integers(1, 16))
    signed = draw(st.booleans())
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    dtype = np.int16 if signed and bits <= 16 else (np.uint16 if not signed else np.int32)
    if draw(st.booleans()):   # extremes often: they are where overflow lives
        x = rng.choice(np.array([lo, hi, 0 if lo <= 0 else lo]), size=shape)
    else:
        x = rng.integers(lo, hi + 1, size=shape)
    return x.astype(dtype), lo, hi, rng


@st.composite
def matmul_case(draw):
    M, K, N = draw(st.integers(1, 5)), draw(st.integers(0, 24)), draw(st.integers(1, 5))
    a, alo, ahi, rng = draw(operand((M, K)))
    b, blo, bhi, _ = draw(operand((K, N)))
    za = int(rng.integers(alo, ahi + 1)) if draw(st.booleans()) else 0
    zb = rng.integers(blo, bhi + 1, size=N) if draw(st.booleans()) else int(rng.integers(blo, bhi + 1))
    bias = rng.integers(-(1 << 31), 1 << 31, size=N) // (1 << draw(st.integers(0, 31))) if draw(st.booleans()) else None
    return a, b, za, zb, bias, draw(st.sampled_from(ACC_BITS)), draw(st.sampled_from(["wrap", "saturate"]))


def _max_product(a, b, za, zb):
    if a.size == 0:
        return 0
    return int(np.abs(a.astype(np.int64) - za).max()) * int(np.abs(b.astype(np.int64) - np.asarray(zb)).max())


@SETTINGS
@given(matmul_case())
def test_matmul_int_equals_reference(case):
    a, b, za, zb, bias, bits, mode = case
    if bits != 64 and _max_product(a, b, za, zb) > (1 << (bits - 1)) - 1:
        with pytest.raises(ValueError, match="acc_bits"):
            matmul_int(a, b, za, zb, bias, acc_bits=bits, overflow=mode)
        return
    acc, count = matmul_int(a, b, za, zb, bias, acc_bits=bits, overflow=mode)
    ref, ref_count = ref_matmul(a, b, za, zb, bias, bits, mode)
    assert acc.dtype == (np.int32 if bits <= 32 else np.int64)
    np.testing.assert_array_equal(acc, ref)
    assert count == ref_count


@SETTINGS
@given(matmul_case(), st.integers(1, 9))
def test_matmul_int_grouped_equals_reference(case, group):
    a, b, za, zb, _, bits, mode = case
    K, N = b.shape
    G = -(-K // group)
    zb_k = zb
    if np.ndim(zb) and G > 1:   # per-group zero points (G, N)
        zb = np.stack([np.roll(zb, g) for g in range(G)])
        zb_k = np.repeat(zb, group, axis=0)[:K]
    if bits != 64 and _max_product(a, b, za, zb_k) > (1 << (bits - 1)) - 1:
        with pytest.raises(ValueError, match="acc_bits"):
            matmul_int_grouped(a, b, group, za, zb, acc_bits=bits, overflow=mode)
        return
    parts, count = matmul_int_grouped(a, b, group, za, zb, acc_bits=bits, overflow=mode)
    ref, ref_count = ref_matmul_grouped(a, b, group, za, zb, bits, mode)
    assert parts.shape == (a.shape[0], N, G)
    np.testing.assert_array_equal(parts, ref)
    assert count == ref_count


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 33), st.integers(1, 5), st.integers(0, 2**32 - 1),
       st.sampled_from([16, 20, 32, 64]), st.sampled_from(["wrap", "saturate"]), st.booleans())
def test_pair_saturate16_equals_reference(M, K, N, seed, bits, mode, with_bias):
    rng = np.random.default_rng(seed)
    a = rng.choice(np.array([0, 255, 254, 1, 128]), size=(M, K)).astype(np.uint8)
    b = rng.choice(np.array([-128, 127, -1, 64, 0]), size=(K, N)).astype(np.int8)
    za, zb = int(rng.integers(0, 256)), rng.integers(-128, 128, size=N)
    bias = rng.integers(-(1 << 20), 1 << 20, size=N) if with_bias else None
    acc, count = matmul_int(a, b, za, zb, bias, acc_bits=bits, overflow=mode, pair_saturate16=True)
    ref, ref_count = ref_matmul_pairsat16(a, b, za, zb, bias, bits, mode)
    np.testing.assert_array_equal(acc, ref)
    assert count == ref_count


def test_pair_saturate16_hand_case():
    """REFERENCE B1: A = 255, B = 127, K = 2 gives 32767, not 64770."""
    acc, count = matmul_int(np.full((1, 2), 255, np.uint8), np.full((2, 1), 127, np.int8), pair_saturate16=True)
    assert acc[0, 0] == 32767 and count == 1
    exact, zero = matmul_int(np.full((1, 2), 255, np.uint8), np.full((2, 1), 127, np.int8))
    assert exact[0, 0] == 64770 and zero == 0


def test_overflow_hand_cases():
    a = np.array([[127, 127, 127, -127]], np.int8)
    b = np.full((4, 1), 127, np.int8)
    # partial sums 16129, 32258, 48387 (overflow, wraps to -17149), -33278 (overflow, wraps to 32258)
    acc, n = matmul_int(a, b, acc_bits=16, overflow="wrap")
    assert n == 2 and acc[0, 0] == 32258 and acc.dtype == np.int32
    acc, n = matmul_int(a, b, acc_bits=16, overflow="saturate")   # 16129, 32258, 32767 (sat), 16638
    assert n == 1 and acc[0, 0] == 16638
    acc, n = matmul_int(a, b, bias=np.array([40000]), acc_bits=16, overflow="saturate")  # bias saturates first
    assert n == 4 and acc[0, 0] == 16638
    acc, n = matmul_int(a, b, acc_bits=64)
    assert n == 0 and acc[0, 0] == 32258 and acc.dtype == np.int64


@pytest.mark.parametrize("shape", [(1, 700, 9), (3, 2100, 5), (40, 3000, 33), (2, 5000, 8)])
@pytest.mark.parametrize("kind", ["s8s8", "u8u8", "s16s16"])
def test_exact_fast_path_large_k(shape, kind):
    """Multi-block float32 and float64 BLAS paths and the int32 GEMV stay exact at the extremes."""
    M, K, N = shape
    rng = np.random.default_rng(K)
    if kind == "s8s8":
        a = rng.choice(np.array([-128, 127], np.int8), (M, K))
        b = rng.choice(np.array([-128, 127], np.int8), (K, N))
        za, zb = 0, 0
    elif kind == "u8u8":
        a = rng.integers(0, 256, (M, K)).astype(np.uint8)
        b = rng.integers(0, 256, (K, N)).astype(np.uint8)
        za, zb = 255, rng.integers(0, 256, N)
    else:
        a = rng.integers(-300, 300, (M, K)).astype(np.int16)
        b = rng.integers(-(1 << 15), 1 << 15, (K, N)).astype(np.int16)
        za, zb = 7, -(1 << 15)
    ref = (a.astype(np.int64) - za) @ (b.astype(np.int64) - np.asarray(zb))
    max_a = int(np.abs(a.astype(np.int64) - za).max())
    max_b = int(np.abs(b.astype(np.int64) - np.asarray(zb)).max())
    np.testing.assert_array_equal(exact_matmul(a, b, za, zb, max_a, max_b), ref)
    acc, _ = matmul_int(a, b, za, zb, acc_bits=64)
    np.testing.assert_array_equal(acc, ref)


def test_gemv_f32_equals_numpy_twin():
    """Extreme codes, several flushes (kb = 16, 24) and a ragged tail stay exact."""
    rng = np.random.default_rng(1)
    for M, K, kb in [(1, 4099, 1024), (3, 45, 16), (4, 1, 16), (2, 100, 24)]:
        a = rng.choice(np.array([0, 255], np.uint8), (M, K))
        b = rng.choice(np.array([-128, 127], np.int8), (K, 70))
        np.testing.assert_array_equal(gemv_f32(a, b, np.int64(200), kb), gemv_f32_reference(a, b, 200))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_conversions_equal_numpy_twins(dtype):
    rng = np.random.default_rng(2)
    x = rng.integers(-(1 << 15), 1 << 15, (7, 9)).astype(np.int16)
    for z in (np.full((1, 1), -5, dtype), rng.integers(-9, 9, (7, 1)).astype(dtype),
              rng.integers(-9, 9, (1, 9)).astype(dtype)):
        got, want = np.empty((7, 9), dtype), np.empty((7, 9), dtype)
        to_float(x, z, got)
        to_float_reference(x, z, want)
        np.testing.assert_array_equal(got, want)
    f = rng.integers(-(1 << 24), 1 << 24, (5, 6)).astype(np.float32)
    np.testing.assert_array_equal(f32_to_int32(f), f.astype(np.int32))


def test_rescale_groups_order_and_shapes():
    parts = np.array([[[3, -2, 5]]], np.int32)                 # (1, 1, 3)
    sb = np.array([[0.5], [0.25], [2.0]])
    y = rescale_groups(parts, 0.1, sb)
    assert y[0, 0] == ((0.5 * 3 + 0.25 * -2) + 2.0 * 5) * 0.1
    y2 = rescale_groups(np.ones((2, 3, 4), np.int64), np.array([1.0, 2.0]), np.full(4, 0.5))
    np.testing.assert_array_equal(y2, [[2.0] * 3, [4.0] * 3])
    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="a_scale"):
            rescale_groups(parts, bad, sb)
    with pytest.raises(ValueError, match="b_scale_groups"):
        rescale_groups(parts, 1.0, np.ones((2, 1)))


def _group_qtensor(x, bits, group, zero_point):
    from qsim.quant import QuantSpec, quantize
    spec = QuantSpec(bits=bits, signed=not zero_point, scheme="affine" if zero_point else "symmetric",
                     granularity="group", group_size=group)
    return quantize(x, spec, axis=1)


@pytest.mark.parametrize("bits,group,zp", [(4, 8, False), (8, 16, True), (3, 5, True)])
def test_matmul_blocks_group_qtensors(bits, group, zp):
    rng = np.random.default_rng(bits)
    qa = _group_qtensor(rng.normal(size=(5, 37)), bits, group, zp)
    qb = _group_qtensor(rng.normal(size=(6, 37)), bits, group, False)
    y = matmul_blocks(qa, qb)
    from qsim.kernels.blocks import matmul_blocks_reference
    np.testing.assert_array_equal(y, matmul_blocks_reference(qa, qb))
    np.testing.assert_allclose(y, qa.dequantize() @ qb.dequantize().T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fmt", ["mxfp4", "mxint8", "nvfp4", "mxfp8_e4m3", "mxfp6_e2m3"])
def test_matmul_blocks_mx_formats(fmt):
    """Block formats: integer levels per block times both shared scales equals the
    dequantized product (exact here: levels and scales are small binary fractions)."""
    from qsim.kernels.blocks import matmul_blocks_reference
    from qsim.quant import QuantSpec, quantize
    rng = np.random.default_rng(3)
    qa = quantize(rng.normal(size=(4, 70)), QuantSpec(scheme=fmt), axis=1)
    qb = quantize(rng.normal(size=(3, 70)), QuantSpec(scheme=fmt), axis=1)
    y = matmul_blocks(qa, qb)
    np.testing.assert_array_equal(y, matmul_blocks_reference(qa, qb))
    np.testing.assert_allclose(y, qa.dequantize() @ qb.dequantize().T, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="block sizes differ|shape mismatch"):
        matmul_blocks(qa, quantize(rng.normal(size=(3, 70)), QuantSpec(scheme="mxfp4" if fmt == "nvfp4" else "nvfp4"),
                                   axis=1))


def test_bad_inputs_name_the_argument():
    a = np.zeros((2, 3), np.int8)
    b = np.zeros((3, 4), np.int8)
    cases = [
        (lambda: matmul_int(a, np.zeros((2, 4), np.int8)), ValueError, "shape mismatch"),
        (lambda: matmul_int(a, b, a_zero_point=128), ValueError, "a_zero_point"),
        (lambda: matmul_int(a.astype(np.uint8), b, a_zero_point=-1), ValueError, "a_zero_point"),
        (lambda: matmul_int(a, b, b_zero_point=np.zeros(3, int)), ValueError, "b_zero_point"),
        (lambda: matmul_int(a, b, bias=np.zeros(3, int)), ValueError, "bias"),
        (lambda: matmul_int(a, b, acc_bits=7), ValueError, "acc_bits"),
        (lambda: matmul_int(a, b, acc_bits=40), ValueError, "acc_bits"),
        (lambda: matmul_int(a, b, overflow="clip"), ValueError, "overflow"),
        (lambda: matmul_int(np.full((2, 3), -128, np.int8), np.full((3, 4), -128, np.int8), acc_bits=8), ValueError,
         "narrower than a single product"),
        (lambda: matmul_int(a.astype(float), b), TypeError, "a must be an integer"),
        (lambda: matmul_int(np.full((2, 3), 70000), b), ValueError, "16-bit code range"),
        (lambda: matmul_int_grouped(a, b, 0), ValueError, "group_size"),
        (lambda: matmul_int_grouped(a, b, 2, b_zero_point=np.zeros((3, 4), int)), ValueError, "b_zero_point"),
        (lambda: matmul_int(a, b, acc_bits=12, pair_saturate16=True), ValueError, "acc_bits"),
    ]
    for fn, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            fn()


def test_grouped_exact_twin_and_int64_guard():
    from qsim.kernels.accumulate import grouped_exact, grouped_exact_reference

    rng = np.random.default_rng(5)
    for dt, hi in ((np.int32, 2000), (np.int64, 1 << 20)):
        a = rng.integers(-hi, hi, size=(5, 37)).astype(dt)
        b = rng.integers(-hi, hi, size=(37, 6)).astype(dt)
        np.testing.assert_array_equal(grouped_exact(a, b, 8), grouped_exact_reference(a, b, 8))
    from qsim.kernels.gemm import grouped_core

    big = np.full((1, 4), 3 * 2**30, np.int64)  # MXFP8 E5M2-sized levels: 4 products pass 2^63
    with pytest.raises(ValueError, match="can exceed int64"):
        grouped_core(big, big.T.copy(), 4, 0, np.zeros((1, 1), np.int64), 64, False)


def test_rescale_core_is_bit_identical_to_its_numpy_twin():
    from qsim.kernels.gemm import rescale_core, rescale_core_reference

    rng = np.random.default_rng(9)
    p = rng.integers(-(2**20), 2**20, size=(7, 5, 13)).astype(np.int32)
    sb = rng.uniform(1e-4, 3.0, size=(13, 5))
    np.testing.assert_array_equal(rescale_core(p, sb), rescale_core_reference(p, sb))
