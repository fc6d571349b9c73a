"""The quantized executors' prepacked weights (`PreparedWeight.kernel_weight`,
`minilm.Quantizer.kernel_weight`) change nothing but speed: a real network forward with the
weights packed once into the VNNI panels returns exactly the logits, per-layer codes and
overflow counts of the same forward on the raw code arrays."""

from __future__ import annotations

import numpy as np
import pytest

from qsim.kernels import PackedWeights
from qsim.kernels.cpu import has_vnni
from qsim.nets import get_network
from qsim.nets.data import load_dataset
from qsim.nets.models import Conv
from qsim.nets.quant_exec import PreparedWeight, QuantConfig, prepared_weight, quantized_forward, weight_from_qtensor
from qsim.quant import QuantSpec, quantize

pytestmark = pytest.mark.skipif(not has_vnni(), reason="no VNNI backend on this host: nothing is packed "
                                                       "(kernel_weight returns the raw codes)")

A8 = QuantSpec(bits=8, scheme="affine")
CONFIGS = {
    "w8ch_a8": (QuantSpec(bits=8, granularity="channel"), A8, 32, "wrap"),
    "w8u_affine_tensor_a8sym": (QuantSpec(bits=8, signed=False, scheme="affine"), QuantSpec(bits=8), 32, "wrap"),
    "w4ch_affine_acc14_sat": (QuantSpec(bits=4, scheme="affine", granularity="channel"), A8, 14, "saturate"),
    "w8ch_a8u_acc64": (QuantSpec(bits=8, granularity="channel"), QuantSpec(bits=8, signed=False, scheme="affine"),
                       64, "wrap"),
}
NETS = ["mnist_cnn", "mnist_dwsep", "mnist_mlp", "mnist1d_cnn", "digits_mlp", "digits_cnn", "fashion_cnn"]


def _raw(self, groups=1):
    return self.q


def _forward(name, cfg_key, monkeypatch, packed: bool):
    net = get_network(name)
    wspec, aspec, acc_bits, overflow = CONFIGS[cfg_key]
    cfg = QuantConfig.build(net, wspec, aspec, acc_bits=acc_bits, overflow=overflow)
    x = load_dataset(net.dataset).x_test[:300]
    with monkeypatch.context() as m:
        if not packed:
            m.setattr(PreparedWeight, "kernel_weight", _raw)
        return quantized_forward(net, cfg, x, record=True, batch_size=128)


@pytest.mark.parametrize("cfg_key", list(CONFIGS))
@pytest.mark.parametrize("name", NETS)
def test_packed_forward_equals_raw(name, cfg_key, monkeypatch):
    net = get_network(name)
    wspec = CONFIGS[cfg_key][0]
    # the packed form is really there for every 8-bit integer layer the panels can serve
    n_packed = 0
    for op in net.arch.mac_ops:
        pw = prepared_weight(name, op.name, wspec)
        groups = op.groups if isinstance(op, Conv) else 1
        kw = pw.kernel_weight(groups)
        if groups == 1 and pw.path == "int" and pw.q.dtype.itemsize == 1:
            assert isinstance(kw, PackedWeights) and kw.packed, (op.name, kw)
            assert kw is pw.kernel_weight(groups)                    # packed once, then reused
            np.testing.assert_array_equal(np.asarray(kw), pw.q)
            n_packed += 1
        else:
            assert kw is pw.q
    assert n_packed >= 2
    logits_p, trace_p = _forward(name, cfg_key, monkeypatch, packed=True)
    logits_r, trace_r = _forward(name, cfg_key, monkeypatch, packed=False)
    np.testing.assert_array_equal(logits_p, logits_r)
    assert trace_p.keys() == trace_r.keys()
    for k in trace_r:
        np.testing.assert_array_equal(trace_p[k][0], trace_r[k][0], err_msg=k)
        assert trace_p[k][1] == trace_r[k][1], k
    if cfg_key == "w4ch_affine_acc14_sat" and name in ("mnist_cnn", "digits_cnn"):
        assert sum(v[1] for v in trace_r.values()) > 0                # the overflow fallback was exercised


def test_weight_from_qtensor_packs_lazily():
    """PTQ / QAT deployment build their weights with `weight_from_qtensor`: packed on first use too."""
    net = get_network("digits_cnn")
    op = net.arch.mac_ops[1]
    w = net.weights()[f"{op.name}.w"]
    qt = quantize(w.reshape(w.shape[0], -1), QuantSpec(bits=8, granularity="channel"), axis=0)
    pw = weight_from_qtensor(qt, op, w.shape, "w8")
    assert "_packed" not in pw.__dict__                               # nothing packed until a forward needs it
    kw = pw.kernel_weight()
    assert isinstance(kw, PackedWeights) and kw.packed and kw is pw.kernel_weight()
    wide = weight_from_qtensor(quantize(w.reshape(w.shape[0], -1), QuantSpec(bits=12, granularity="channel"),
                                        axis=0), op, w.shape, "w12")
    assert wide.kernel_weight() is wide.q                              # 16-bit codes: the panels cannot take them


@pytest.mark.parametrize("per_token", [False, True])
def test_minilm_int_linear_packed_equals_raw(per_token, monkeypatch):
    """MiniLM's `_int_linear`: packed weight (once per Quantizer and QTensor) == raw codes, and
    a weight replaced in `qweights` is packed anew."""
    from qsim.kernels import matmul_int
    from qsim.nets.minilm import Quantizer, _int_linear

    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 96)).astype(np.float32)
    spec = QuantSpec(bits=8, granularity="channel")
    q = Quantizer(wspec=spec, aspec=A8)
    qa = quantize(x, QuantSpec(bits=8, granularity="channel"), axis=0) if per_token else quantize(x, A8)
    a_zp = 0 if per_token else int(qa.zero_point)
    for seed in (1, 2):
        qw = quantize(np.random.default_rng(seed).standard_normal((64, 96)).astype(np.float32), spec, axis=0)
        y = _int_linear(qa, qw, q, "layer")
        kw = q.kernel_weight("layer", qw)
        assert isinstance(kw, PackedWeights) and kw.packed and kw is q.kernel_weight("layer", qw)
        np.testing.assert_array_equal(np.asarray(kw), qw.q.T)
        acc, ov = matmul_int(qa.q, qw.q.T, a_zp, qw.zero_point)
        acc_p, ov_p = matmul_int(qa.q, kw, a_zp, qw.zero_point)
        np.testing.assert_array_equal(acc_p, acc)
        assert ov_p == ov
        with monkeypatch.context() as m:
            m.setattr(Quantizer, "kernel_weight", lambda self, name, w: w.q.T)
            y_raw = _int_linear(qa, qw, Quantizer(wspec=spec, aspec=A8), "layer")
        np.testing.assert_array_equal(y, y_raw)
