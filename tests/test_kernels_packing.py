"""Sub-byte packing round-trips and matches the ONNX Int4x2 / bit-stream layouts."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qsim.kernels import pack_bits, unpack_bits


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 16), st.booleans(), st.booleans(), st.integers(0, 40), st.integers(0, 2**32 - 1))
def test_pack_unpack_round_trip(bits, signed, low_first, n, seed):
    rng = np.random.default_rng(seed)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    codes = rng.integers(lo, hi + 1, size=n)
    packed = pack_bits(codes, bits, low_first=low_first)
    assert packed.dtype == np.uint8 and packed.size == -(-n * bits // 8)
    np.testing.assert_array_equal(unpack_bits(packed, bits, n, signed=signed, low_first=low_first), codes)


def test_nibble_order_matches_onnx_int4x2():
    # ONNX Int4x2: element 0 in the low nibble; -8 is 0b1000, 7 is 0b0111
    assert pack_bits(np.array([1, 2, -8, 7]), 4).tolist() == [0x21, 0x78]
    assert pack_bits(np.array([1, 2, -8, 7]), 4, low_first=False).tolist() == [0x12, 0x87]
    assert pack_bits(np.array([1, 0, 3, 2]), 2).tolist() == [0b10110001]
    assert pack_bits(np.array([1, 0, 0, 0, 0, 0, 0, 1, 1]), 1).tolist() == [0b10000001, 1]
    assert pack_bits(np.array([0x1AB]), 12).tolist() == [0xAB, 0x01]
    np.testing.assert_array_equal(unpack_bits(np.array([0x21, 0x78], np.uint8), 4, 3, signed=True), [1, 2, -8])
    np.testing.assert_array_equal(unpack_bits(np.array([0x87], np.uint8), 4, 2, signed=False, low_first=False), [8, 7])


def test_packing_bad_inputs():
    with pytest.raises(ValueError, match="bits"):
        pack_bits(np.array([1]), 0)
    with pytest.raises(ValueError, match="bits"):
        pack_bits(np.array([1]), 17)
    with pytest.raises(ValueError, match="codes must fit 4 bits"):
        pack_bits(np.array([16]), 4)
    with pytest.raises(ValueError, match="codes must fit 4 bits"):
        pack_bits(np.array([-9]), 4)
    with pytest.raises(TypeError, match="codes"):
        pack_bits(np.array([0.5]), 4)
    with pytest.raises(ValueError, match="count"):
        unpack_bits(np.zeros(1, np.uint8), 4, 3, signed=False)
    with pytest.raises(TypeError, match="packed"):
        unpack_bits(np.zeros(1, np.int8), 4, 1, signed=False)
