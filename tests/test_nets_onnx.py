"""ONNX round trip of a real network: export, ONNX Runtime agreement, re-import into the executors."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from qsim.nets import evaluate, get_network  # noqa: E402
from qsim.nets.data import load_dataset  # noqa: E402
from qsim.nets.float_exec import forward  # noqa: E402
from qsim.nets.onnx_io import arch_from_workload, export_onnx, network_from_onnx  # noqa: E402
from qsim.quant import QuantSpec  # noqa: E402
from qsim.workload import Dense, Elementwise, Softmax, Workload  # noqa: E402

W8 = QuantSpec(bits=8, granularity="channel")
A8 = QuantSpec(bits=8, scheme="affine")


def test_mnist_cnn_onnx_export_matches_onnxruntime_and_reimports_with_same_accuracy(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="checks the export against ONNX Runtime: pip install onnxruntime")
    path = tmp_path / "mnist_cnn.onnx"
    export_onnx("mnist_cnn", path)
    net = get_network("mnist_cnn")
    x = load_dataset("mnist").x_test[:256]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x})[0]
    np.testing.assert_allclose(got, forward(net.arch, net.weights(), x), rtol=1e-4, atol=1e-4)

    imported = network_from_onnx(path, "mnist_cnn_from_onnx", "mnist")
    assert [op.name for op in imported.arch.mac_ops] == ["conv1", "conv2", "fc"]
    assert imported.workload.total_macs == net.workload.total_macs
    mine, theirs = evaluate("mnist_cnn", W8, A8, eval_size=500), evaluate("mnist_cnn_from_onnx", W8, A8, eval_size=500)
    assert theirs["float"] == mine["float"]
    assert theirs["quantized"]["metric"] == mine["quantized"]["metric"]
    assert theirs["quantized"]["sqnr_db"] == mine["quantized"]["sqnr_db"]


def test_arch_from_workload_fuses_relu_and_rejects_unsupported():
    wl = Workload("mlp", [Dense("fc1", in_features=64, out_features=32), Elementwise("r", kind="relu", elements=32),
                          Dense("fc2", in_features=32, out_features=10)])
    arch = arch_from_workload(wl, (1, 8, 8))
    assert [type(op).__name__ for op in arch.ops] == ["Flatten", "Linear", "Linear"]
    assert arch.ops[1].relu and not arch.ops[2].relu
    with pytest.raises(ValueError, match="'sm' \\(Softmax\\) is not supported"):
        arch_from_workload(Workload("s", [Dense("fc", in_features=64, out_features=10), Softmax("sm", rows=1, cols=10)]),
                           (64,))


@pytest.mark.parametrize("name", ["mnist_dwsep", "mnist_mlp", "digits_cnn", "digits_mlp"])
def test_export_and_reimport_every_kind_of_op(name):
    ort = pytest.importorskip("onnxruntime", reason="checks the export against ONNX Runtime: pip install onnxruntime")
    pytest.importorskip("sklearn", reason="the digits nets need scikit-learn")
    net = get_network(name)
    model = export_onnx(name)
    x = load_dataset(net.dataset).x_test[:64]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], forward(net.arch, net.weights(), x),
                               rtol=1e-4, atol=1e-4)
    back = network_from_onnx(model, f"{name}_roundtrip", net.dataset, register=False)
    assert [type(op) for op in back.arch.ops] == [type(op) for op in net.arch.ops]
    assert [getattr(op, "relu", None) for op in back.arch.ops] == [getattr(op, "relu", None) for op in net.arch.ops]
    for k, v in net.weights().items():
        np.testing.assert_array_equal(back.params[k], v)
