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


def _requant_ref(acc, scale, zy, lo, hi):
    from qsim.onnxrun.qconv import requant_nchw_reference

    n, o = acc.shape[:2]
    return requant_nchw_reference(acc.reshape(n, o, -1), scale, zy, lo, hi).reshape(acc.shape)


@pytest.mark.parametrize("shape,kernel,stride,dil,pads", [
    ((2, 5, 9, 10), (3, 4), (1, 1), (1, 1), (1, 1, 1, 1)),      # wide mode
    ((1, 3, 2, 40), (5, 5), (1, 1), (1, 1), (2, 2, 2, 2)),      # row mode (long rows, few of them)
    ((1, 4, 12, 20), (5, 5), (2, 1), (1, 1), (2, 2, 2, 2)),
    ((2, 3, 7, 9), (3, 3), (1, 2), (2, 1), (0, 3, 1, 2)),       # strided columns
    ((1, 2, 6, 6), (2, 2), (3, 3), (1, 1), (0, 0, 0, 0)),
    ((1, 2, 5, 33), (1, 7), (1, 1), (1, 2), (0, 6, 0, 6)),
])
@pytest.mark.parametrize("xdt,ydt", [(np.uint8, np.uint8), (np.int8, np.int8), (np.uint8, np.int8)])
@pytest.mark.parametrize("extreme", [False, True])
def test_depthwise_requant_equals_conv2d_int_and_twin(shape, kernel, stride, dil, pads, xdt, ydt, extreme):
    from qsim.kernels.conv import depthwise_requant, depthwise_requant_reference

    rng = np.random.default_rng(sum(shape) + sum(kernel) + extreme)
    xi, yi = np.iinfo(xdt), np.iinfo(ydt)
    n, c, h, w_ = shape
    x = rng.integers(xi.min, xi.max + 1, shape).astype(xdt)
    w = rng.integers(-128, 128, (c, 1) + kernel).astype(np.int8)
    zw = rng.integers(-5, 5, c).astype(np.int8)
    zx = int(rng.integers(xi.min, xi.max + 1))
    bias = rng.integers(-1000, 1000, c).astype(np.int32)
    if extreme:   # every code at the far end from its zero point, the largest |w − zw|
        x[...] = xi.min if zx > (xi.min + xi.max) // 2 else xi.max
        w[...] = -128
        zw[...] = 4
        bias[0] = -(1 << 20)
    acc, _ = conv2d_int(x, w, zx, zw, bias, stride=stride, padding=pads, dilation=dil, groups=c)
    scale = rng.uniform(1e-5, 1e-3, c).astype(np.float32)
    zy = int(rng.integers(yi.min, yi.max + 1))
    want = _requant_ref(np.asarray(acc, np.int64), scale, zy, yi.min, yi.max)
    wsh = (w[:, 0].astype(np.int64) - zw.astype(np.int64)[:, None, None]).astype(np.int32)
    args = (x, zx, wsh, bias, scale, zy, yi.min, yi.max, stride[0], stride[1], dil[0], dil[1], pads[0], pads[1])
    got = depthwise_requant(*args, np.empty(acc.shape, ydt))
    assert np.array_equal(got, want)
    assert np.array_equal(depthwise_requant_reference(*args, np.empty(acc.shape, np.int64)), want)


@pytest.mark.parametrize("n,c,p,o", [(1, 200, 1, 50), (2, 8, 3, 5), (1, 1, 16, 4), (3, 33, 2, 17), (1, 37, 50, 9),
                                     (2, 8, 20, 3), (1, 10, 5, 40)])
@pytest.mark.parametrize("xdt,ydt", [(np.uint8, np.uint8), (np.int8, np.int8)])
@pytest.mark.parametrize("extreme", [False, True])
def test_pointwise_requant_equals_conv2d_int_and_twin(n, c, p, o, xdt, ydt, extreme):
    from qsim.kernels.conv import pointwise_requant, pointwise_requant_reference

    rng = np.random.default_rng(n + c + p + o + extreme)
    xi, yi = np.iinfo(xdt), np.iinfo(ydt)
    x = rng.integers(xi.min, xi.max + 1, (n, c, 1, p)).astype(xdt)
    w = rng.integers(-128, 128, (o, c, 1, 1)).astype(np.int8)
    zw = rng.integers(-5, 5, o).astype(np.int8)
    zx = int(rng.integers(xi.min, xi.max + 1))
    bias = rng.integers(-5000, 5000, o).astype(np.int32)
    if extreme:
        x[...] = xi.min if zx > (xi.min + xi.max) // 2 else xi.max
        w[...] = -128
        zw[...] = 4
        bias[0] = (1 << 31) - 1 - c * 255 * 132
    acc, _ = conv2d_int(x, w, zx, zw, bias)
    scale = rng.uniform(1e-6, 1e-3, o).astype(np.float32)
    zy = int(rng.integers(yi.min, yi.max + 1))
    want = _requant_ref(np.asarray(acc, np.int64), scale, zy, yi.min, yi.max).reshape(n, o, p)
    wsh = np.ascontiguousarray((w[:, :, 0, 0].astype(np.int64) - zw.astype(np.int64)[:, None]).astype(np.int32).T)
    args = (x.reshape(n, c, p), zx, wsh, bias, scale, zy, yi.min, yi.max)
    assert np.array_equal(pointwise_requant(*args, np.empty((n, o, p), ydt)), want)
    assert np.array_equal(pointwise_requant_reference(*args, np.empty((n, o, p), np.int64)), want)


@pytest.mark.parametrize("shape,o,kernel,stride,dil,pads", [
    ((1, 5, 9, 10), 7, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    ((2, 3, 16, 20), 40, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),
    ((1, 33, 4, 8), 13, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0)),     # 1×1: the image is the patch matrix
    ((1, 16, 6, 7), 33, (1, 3), (1, 2), (1, 2), (0, 2, 1, 0)),
    ((1, 2, 7, 9), 5, (2, 4), (3, 1), (2, 1), (0, 3, 2, 1)),
])
@pytest.mark.parametrize("xdt,wdt", [(np.uint8, np.int8), (np.int8, np.int8), (np.uint8, np.uint8)])
@pytest.mark.parametrize("extreme", [False, True])
def test_conv_gemm_requant_equals_conv2d_int(shape, o, kernel, stride, dil, pads, xdt, wdt, extreme):
    from qsim.kernels.conv import ConvGemmRequant

    rng = np.random.default_rng(sum(shape) + o + extreme)
    xi, wi = np.iinfo(xdt), np.iinfo(wdt)
    x = rng.integers(xi.min, xi.max + 1, shape).astype(xdt)
    w = rng.integers(wi.min, wi.max + 1, (o, shape[1]) + kernel).astype(wdt)
    zx = int(rng.integers(xi.min, xi.max + 1))
    zw = rng.integers(wi.min, wi.max + 1, o).astype(wdt)          # per output channel
    bias = rng.integers(-5000, 5000, o).astype(np.int32)
    if extreme:     # codes at their far ends from the zero points
        x[...] = xi.min if zx > (xi.min + xi.max) // 2 else xi.max
        zw[...] = wi.max
        w[...] = wi.min
        bias[0] = -(1 << 24)
    scale = rng.uniform(1e-7, 1e-4, o).astype(np.float32)
    try:
        gemm = ConvGemmRequant(w, zw.astype(np.int64), bias, xdt, scale, 5, -128 if xdt == np.int8 else 0,
                               127 if xdt == np.int8 else 255)
    except ValueError:
        pytest.skip("no VNNI GEMM on this host (AVX-512 VNNI or AVX-VNNI needed)")
    acc, _ = conv2d_int(x, w, zx, zw, bias, stride=stride, padding=pads, dilation=dil, acc_bits=64)
    acc = np.asarray(acc, np.int64)
    want = _requant_ref(acc, scale, 5, gemm.lo, gemm.hi)
    out = np.empty((shape[0], o, acc.shape[2] * acc.shape[3]), xdt)
    for i in range(shape[0]):
        gemm(x[i], zx, kernel, stride, dil, pads, out[i])
    assert np.array_equal(out.reshape(acc.shape), want)


def test_gemm_requant_rows_equals_twin():
    from qsim.kernels.conv import gemm_requant_rows, gemm_requant_rows_reference

    rng = np.random.default_rng(11)
    raw = rng.integers(-(1 << 30), 1 << 30, (24, 64)).astype(np.int32)
    colsum, rowsum = rng.integers(-30000, 30000, 64).astype(np.int32), rng.integers(0, 60000, 24).astype(np.int32)
    za, bias = rng.integers(0, 256, 20).astype(np.int64), rng.integers(-9999, 9999, 20).astype(np.int64)
    scale = rng.uniform(1e-9, 1e-6, 20).astype(np.float32)
    for wo, wp in ((50, 50), (5, 6), (10, 12)):
        args = (raw, colsum, rowsum, za, np.int64(-7), np.int64(100), bias, scale, 3, 0, 255, wo, wp)
        got = gemm_requant_rows(*args, np.empty((20, 50), np.uint8))
        assert np.array_equal(got, gemm_requant_rows_reference(*args, np.empty((20, 50), np.int64)))


@pytest.mark.parametrize("shape,kernel,stride,dil,pads", [((3, 5, 6), (3, 3), (1, 1), (1, 1), (1, 1)),
                                                         ((2, 7, 9), (2, 3), (2, 3), (2, 1), (0, 2)),
                                                         ((1, 2, 2), (3, 3), (1, 1), (1, 1), (1, 1))])
def test_patches_u8_equals_twin(shape, kernel, stride, dil, pads):
    from qsim.kernels.conv import patches_u8, patches_u8_reference

    rng = np.random.default_rng(sum(shape))
    x = rng.integers(0, 256, shape).astype(np.uint8)
    c, h, w = shape
    ho = (h + 2 * pads[0] - dil[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    wo = (w + 2 * pads[1] - dil[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    args = (x, 77, kernel[0], kernel[1], stride[0], stride[1], dil[0], dil[1], pads[0], pads[1], ho, wo)
    got = patches_u8(*args, np.full((c * kernel[0] * kernel[1] + 3, ho * wo + 5), 9, np.uint8))
    want = patches_u8_reference(*args, np.full((c * kernel[0] * kernel[1] + 3, ho * wo + 5), 9, np.uint8))
    assert np.array_equal(got, want)
