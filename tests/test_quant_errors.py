"""Bad input gets a clear error naming the argument and the allowed values."""

import numpy as np
import pytest

from qsim.quant import QuantSpec, quantize


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        (dict(bits=0), ValueError, r"bits must be in 1\.\.16, got 0"),
        (dict(bits=17), ValueError, r"bits must be in 1\.\.16, got 17"),
        (dict(bits=4.0), TypeError, "bits must be an int"),
        (dict(scheme="log"), ValueError, r"scheme must be one of \[.*'affine'.*\], got 'log'"),
        (dict(granularity="row"), ValueError, r"granularity must be one of \[.*'channel'.*\], got 'row'"),
        (dict(granularity="group"), ValueError, "needs group_size"),
        (dict(granularity="group", group_size=0), ValueError, "group_size must be a positive integer, got 0"),
        (dict(granularity="group", group_size=-4), ValueError, "group_size must be a positive integer"),
        (dict(rounding="up"), ValueError, r"rounding must be one of \[.*'nearest_even'.*\]"),
        (dict(calibration="kl"), ValueError, r"calibration must be one of \[.*'entropy'.*\]"),
        (dict(scale_dtype="fp8"), ValueError, r"scale_dtype must be one of"),
        (dict(scheme="mxfp4", group_size=16), ValueError, "group_size of scheme 'mxfp4' must be 32"),
        (dict(bits=1, restricted=True), ValueError, "restricted range needs bits >= 2"),
        (dict(percentile=120.0), ValueError, "percentile must be in"),
    ],
)
def test_bad_spec(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        QuantSpec(**kwargs)


def test_nan_and_inf_are_counted_and_located():
    x = np.ones((3, 4), np.float32)
    x[1, 2] = np.nan
    x[2, 0] = np.inf
    x[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"2 NaN and 1 Inf value\(s\) of 12; first at index \(1, 2\), \(2, 0\), \(2, 3\)"):
        quantize(x, QuantSpec())


def test_empty_tensor():
    with pytest.raises(ValueError, match=r"x is empty \(shape \(0, 3\)\)"):
        quantize(np.zeros((0, 3), np.float32), QuantSpec())


@pytest.mark.parametrize("axis", [2, -3, 7])
def test_axis_out_of_range(axis):
    with pytest.raises(ValueError, match=r"axis must be an int in \[-2, 1\] for a 2-D tensor"):
        quantize(np.ones((2, 3)), QuantSpec(granularity="channel"), axis=axis)


def test_channel_needs_an_axis():
    with pytest.raises(ValueError, match="at least one axis"):
        quantize(np.float32(1.0), QuantSpec(granularity="channel"))


def test_non_numeric_and_wrong_spec_type():
    with pytest.raises(TypeError, match="must hold real numbers"):
        quantize(np.array(["a", "b"]), QuantSpec())
    with pytest.raises(TypeError, match="spec must be a qsim.quant.QuantSpec"):
        quantize(np.ones(3), {"bits": 8})


def test_fixed_parameters_are_checked():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="scale must be finite and > 0"):
        quantize(x, QuantSpec(), scale=0.0)
    with pytest.raises(ValueError, match="scale must be finite and > 0"):
        quantize(x, QuantSpec(), scale=np.nan)
    with pytest.raises(ValueError, match=r"zero_point must lie in the code range \[-128, 127\]"):
        quantize(x, QuantSpec(scheme="affine"), scale=1.0, zero_point=200)
    with pytest.raises(ValueError, match=r"scale must have shape \(2,\)"):
        quantize(x, QuantSpec(granularity="channel"), scale=np.ones(5))


def test_kmeans_rejects_per_channel():
    with pytest.raises(ValueError, match="one codebook per tensor"):
        quantize(np.ones((2, 3)), QuantSpec(scheme="kmeans", bits=2, granularity="channel"))


def test_replace_unknown_field():
    with pytest.raises(ValueError, match=r"unknown QuantSpec field\(s\) \['bitz'\]"):
        QuantSpec().replace(bitz=3)
