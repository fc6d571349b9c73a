"""XNOR-popcount (binary) and ternary products equal the ±1 integer matmul exactly."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qsim.kernels.binary import matmul_binary, matmul_pm1_reference, matmul_ternary, pack_signs


def pm1(rng, shape):
    return rng.choice(np.array([-1, 1], np.int8), size=shape)


def tern(rng, shape, p_zero=0.3):
    return rng.choice(np.array([-1, 0, 1], np.int8), size=shape, p=[(1 - p_zero) / 2, p_zero, (1 - p_zero) / 2])


@pytest.mark.parametrize("k", [1, 63, 64, 65, 128, 200, 1000])
def test_binary_equals_int_matmul_across_word_boundaries(k):
    rng = np.random.default_rng(k)
    a, b = pm1(rng, (7, k)), pm1(rng, (k, 5))
    got = matmul_binary(a, b)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, a.astype(np.int64) @ b.astype(np.int64))


def test_extremes_all_agree_and_all_disagree():
    k = 130
    ones = np.ones((2, k), np.int8)
    np.testing.assert_array_equal(matmul_binary(ones, ones.T), np.full((2, 2), k))
    np.testing.assert_array_equal(matmul_binary(ones, -ones.T), np.full((2, 2), -k))
    np.testing.assert_array_equal(matmul_ternary(np.zeros((2, k), np.int8), ones.T), np.zeros((2, 2)))


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 6), k=st.integers(1, 150), n=st.integers(1, 6), seed=st.integers(0, 2**32 - 1),
       p_zero=st.sampled_from([0.0, 0.3, 0.9]), a_binary=st.booleans())
def test_ternary_and_mixed_equal_the_reference(m, k, n, seed, p_zero, a_binary):
    rng = np.random.default_rng(seed)
    a = pm1(rng, (m, k)) if a_binary else tern(rng, (m, k), p_zero)
    b = tern(rng, (k, n), p_zero)
    np.testing.assert_array_equal(matmul_ternary(a, b), matmul_pm1_reference(a, b))
    if a_binary and p_zero == 0.0:
        np.testing.assert_array_equal(matmul_binary(a, b), matmul_pm1_reference(a, b))


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 5), k=st.integers(1, 300), n=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_binary_equals_reference_hypothesis(m, k, n, seed):
    rng = np.random.default_rng(seed)
    a, b = pm1(rng, (m, k)), pm1(rng, (k, n))
    np.testing.assert_array_equal(matmul_binary(a, b), matmul_pm1_reference(a, b))


def test_packing_layout_and_errors():
    packed, k = pack_signs(np.array([[1, -1, 1] + [-1] * 61 + [1]]))
    assert k == 65 and packed.shape == (1, 2) and packed.dtype == np.uint64
    assert int(packed[0, 0]) == 0b101 and int(packed[0, 1]) == 1
    with pytest.raises(ValueError, match=r"a must hold only \[-1, 1\].*a\[0, 1\] = 0"):
        matmul_binary(np.array([[1, 0]]), np.ones((2, 1)))
    with pytest.raises(ValueError, match="inner dimensions differ"):
        matmul_ternary(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="2-D matrix"):
        matmul_binary(np.ones(3), np.ones((3, 1)))
