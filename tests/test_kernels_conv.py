"""conv2d_int equals its int64 reference (groups, depthwise, stride, padding, dilation, accumulators)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qsim.kernels import conv2d_int
from qsim.kernels.reference import ref_conv2d


def _codes(rng, bits, signed, shape):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return rng.integers(lo, hi + 1, size=shape).astype(np.int16 if signed else np.uint16), lo, hi


@st.composite
def conv_case(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    groups = draw(st.integers(1, 3))
    cg, mult = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    depthwise = draw(st.booleans())
    if depthwise:
        cg = 1
    C, O = groups * cg, groups * mult
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(4))
    H = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - padding[0] - padding[2]), 6))
    W = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - padding[1] - padding[3]), 6))
    x, xlo, xhi = _codes(rng, draw(st.integers(1, 16)), draw(st.booleans()), (draw(st.integers(1, 2)), C, H, W))
    w, wlo, whi = _codes(rng, draw(st.integers(1, 16)), draw(st.booleans()), (O, cg, kh, kw))
    zx = int(rng.integers(xlo, xhi + 1))
    zw = rng.integers(wlo, whi + 1, size=O) if draw(st.booleans()) else int(rng.integers(wlo, whi + 1))
    bias = rng.integers(-(1 << 31), 1 << 31, size=O) // (1 << draw(st.integers(0, 31))) if draw(st.booleans()) else None
    bits = draw(st.sampled_from(list(range(8, 33)) + [64]))
    return dict(x=x, w=w, x_zero_point=zx, w_zero_point=zw, bias=bias, stride=stride, padding=padding,
                dilation=dilation, groups=groups, acc_bits=bits, overflow=draw(st.sampled_from(["wrap", "saturate"])))


@settings(max_examples=50, deadline=None)
@given(conv_case())
def test_conv2d_int_equals_reference(case):
    x, w, bits = case["x"], case["w"], case["acc_bits"]
    max_x = int(np.abs(x.astype(np.int64) - case["x_zero_point"]).max())
    O = w.shape[0]
    max_w = int(np.abs(w.reshape(O, -1).astype(np.int64)
                       - np.broadcast_to(np.asarray(case["w_zero_point"]), (O,))[:, None]).max())
    if bits != 64 and max_x * max_w > (1 << (bits - 1)) - 1:
        with pytest.raises(ValueError, match="acc_bits"):
            conv2d_int(**case)
        return
    acc, count = conv2d_int(**case)
    ref, ref_count = ref_conv2d(**case)
    assert acc.dtype == (np.int32 if bits <= 32 else np.int64)
    np.testing.assert_array_equal(acc, ref)
    assert count == ref_count


def test_conv2d_padding_contributes_zero_and_overflow_order():
    x = np.full((1, 1, 2, 2), 10, np.uint8)
    w = np.full((1, 1, 3, 3), 100, np.int8)
    acc, n = conv2d_int(x, w, x_zero_point=10, padding=(1, 1, 1, 1))
    assert n == 0 and np.all(acc == 0)
    x = np.full((1, 2, 1, 1), 127, np.int8)
    w = np.full((1, 2, 1, 1), 127, np.int8)
    acc, n = conv2d_int(x, w, bias=np.array([10000]), acc_bits=16, overflow="saturate")  # 10000, 26129, 32767
    assert n == 1 and acc[0, 0, 0, 0] == 32767


def test_conv2d_bad_inputs():
    x = np.zeros((1, 4, 5, 5), np.int8)
    w = np.zeros((6, 2, 3, 3), np.int8)
    cases = [
        (lambda: conv2d_int(x, w, groups=3), "groups"),
        (lambda: conv2d_int(x, w), "shape mismatch"),
        (lambda: conv2d_int(x[0], w, groups=2), "x must be 4-D"),
        (lambda: conv2d_int(x, w, groups=2, w_zero_point=np.zeros(4, int)), "w_zero_point"),
        (lambda: conv2d_int(x, w, groups=2, x_zero_point=300), "x_zero_point"),
        (lambda: conv2d_int(x, w, groups=2, stride=(0, 1)), "stride"),
        (lambda: conv2d_int(x, w, groups=2, padding=(1, 1)), "padding"),
        (lambda: conv2d_int(x, w, groups=2, bias=np.zeros(5, int)), "bias"),
        (lambda: conv2d_int(np.full((1, 4, 5, 5), -128, np.int8), np.full((6, 2, 3, 3), -128, np.int8), groups=2,
                            acc_bits=12), "acc_bits"),
        (lambda: conv2d_int(np.zeros((1, 4, 2, 2), np.int8), w, groups=2), "does not fit"),
    ]
    for fn, msg in cases:
        with pytest.raises(ValueError, match=msg):
            fn()


@pytest.mark.parametrize("mult,stride,dil", [(1, (1, 1), (1, 1)), (2, (2, 1), (1, 2)), (3, (1, 2), (2, 1))])
def test_depthwise_taps_equals_numpy_twin(mult, stride, dil):
    from qsim.kernels.conv import depthwise_taps, depthwise_taps_reference
    rng = np.random.default_rng(mult)
    xp = rng.integers(-255, 256, (2, 3, 9, 8)).astype(np.int32)
    wz = rng.integers(-255, 256, (3 * mult, 3, 2)).astype(np.int32)
    bias = rng.integers(-1000, 1000, 3 * mult).astype(np.int32)
    Ho = (9 - dil[0] * 2 - 1) // stride[0] + 1
    Wo = (8 - dil[1] * 1 - 1) // stride[1] + 1
    np.testing.assert_array_equal(depthwise_taps(xp, wz, bias, *stride, *dil, Ho, Wo),
                                  depthwise_taps_reference(xp, wz, bias, *stride, *dil, Ho, Wo))
