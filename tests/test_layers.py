import pytest

from qsim.workload import Conv2d, Dense, MatMul, Softmax, Workload


def test_conv_gemm_view_and_counts():
    c = Conv2d("c", in_channels=64, out_channels=128, kernel_size=3, input_hw=56, stride=2, padding=1, batch=2)
    assert c.output_hw == (28, 28)
    g = c.gemm
    assert (g.M, g.N, g.K, g.groups) == (2 * 28 * 28, 128, 64 * 9, 1)
    assert c.macs == 2 * 28 * 28 * 128 * 64 * 9
    assert c.weight_elements == 128 * 64 * 9
    assert c.input_elements == 2 * 64 * 56 * 56
    assert c.output_elements == 2 * 128 * 28 * 28


def test_depthwise_and_dilation():
    dw = Conv2d("dw", in_channels=32, out_channels=64, kernel_size=3, input_hw=(10, 12), padding=2, dilation=2, groups=32)
    assert dw.depthwise
    assert dw.output_hw == (10, 12)
    assert dw.gemm.K == 9 and dw.gemm.groups == 32
    assert dw.macs == 10 * 12 * 64 * 9


def test_dense_matmul_workload():
    d = Dense("fc", in_features=256, out_features=10, batch=4)
    m = MatMul("qk", m=128, n=128, k=64, batch=12)
    s = Softmax("sm", rows=12 * 128, cols=128)
    w = Workload("toy", [d, m, s])
    assert w.total_macs == 4 * 256 * 10 + 12 * 128 * 128 * 64
    assert [layer.name for layer in w.mac_layers] == ["fc", "qk"]
    assert not m.gemm.b_is_weight and m.weight_elements == 0
    assert s.macs == 0 and s.gemm is None
    assert w["qk"] is m
    assert len(w.to_frame()) == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(in_channels=3, out_channels=8, groups=2), "groups"),
        (dict(in_channels=3, out_channels=8, kernel_size=5, input_hw=3), "does not fit"),
        (dict(in_channels=0, out_channels=8), "in_channels"),
        (dict(in_channels=3, out_channels=8, padding=-1), "padding"),
    ],
)
def test_conv_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Conv2d("bad", **kwargs)


def test_duplicate_layer_names():
    with pytest.raises(ValueError, match="used twice"):
        Workload("w", [Dense("a", in_features=2, out_features=2), Dense("a", in_features=2, out_features=2)])
