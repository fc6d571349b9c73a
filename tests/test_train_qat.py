"""qsim.train: QAT (STE, LSQ, PACT), distillation, export to the integer kernels, the CLI contract.

Small and fast: a few hundred training samples, one or two epochs, the MNIST-10k CNN
(shipped data) and the Fashion-MNIST subset.
"""

import json
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from qsim import cli  # noqa: E402
from qsim.nets import evaluate, get_network, list_networks  # noqa: E402
from qsim.nets.data import load_dataset  # noqa: E402
from qsim.nets.quant_exec import prepared_weight  # noqa: E402
from qsim.quant import QuantSpec, quantize  # noqa: E402
from qsim.train.core import loss_and_grads  # noqa: E402
from qsim.train.deploy import prepare_qtensor  # noqa: E402
from qsim.train.qat import (  # noqa: E402
    ActQuantizer, QATConfig, WeightQuantizer, evaluate_trained, forward_backward, kd_loss, make_quantizers,
    train_qat,
)

W4 = QuantSpec(bits=4, granularity="channel")
A4 = QuantSpec(bits=4, scheme="affine")
A8 = QuantSpec(bits=8, scheme="affine")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QSIM_CACHE_DIR", str(tmp_path))


@pytest.fixture(scope="module")
def cnn():
    return get_network("mnist_cnn")


def _batch(n=64, start=0):
    ds = load_dataset("mnist")
    return ds.x_train[start:start + n], ds.y_train[start:start + n]


def test_no_quantizer_is_the_float_trainer(cnn):
    x, y = _batch(32)
    p = {k: np.array(v) for k, v in cnn.weights().items()}
    l0, g0 = loss_and_grads(cnn.arch, p, x, y)
    l1, g1, _, _ = forward_backward(cnn.arch, p, {}, x, y)
    assert l0 == l1 and all(np.array_equal(g0[k], g1[k]) for k in g0)


def test_ste_gradients_match_float_at_16_bits(cnn):
    """Restricted 16-bit symmetric weights clip nothing: the STE gradient is the float gradient."""
    x, y = _batch(32)
    p = {k: np.array(v) for k, v in cnn.weights().items()}
    _, g0 = loss_and_grads(cnn.arch, p, x, y)
    qz = make_quantizers(cnn, p, QuantSpec(bits=16, restricted=True, granularity="channel"), None, QATConfig())
    _, g1, _, _ = forward_backward(cnn.arch, p, qz, x, y)
    for k in g0:
        assert np.abs(g1[k] - g0[k]).sum() <= 1e-2 * np.abs(g0[k]).sum(), k   # a ReLU may flip at a tie


def test_weight_ste_zero_where_clipped_and_values_are_qsims_quantizer():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 3, 3, 3)).astype(np.float32)
    for spec in (QuantSpec(bits=3, granularity="channel"), QuantSpec(bits=2, granularity="tensor"),
                 QuantSpec(bits=4, scheme="affine", granularity="group", group_size=8)):
        wq = WeightQuantizer("l", spec, w)
        wq.log_s = wq.log_s - 0.4                              # a learned step (smaller: some weights clip)
        out, s, ctx = wq.forward(w)
        axis = 0 if spec.granularity == "channel" else None if spec.granularity == "tensor" else -1
        ref = quantize(w.reshape(6, -1), spec, axis, scale=s, zero_point=wq.z).dequantize(np.float32)
        assert np.array_equal(out.reshape(6, -1), ref)
        g = rng.normal(size=w.shape).astype(np.float32)
        dw, _ = wq.backward(g, ctx)
        inside = ctx[0].reshape(w.shape)
        assert np.array_equal(dw, np.where(inside, g, 0)) and (~inside).any()


@pytest.mark.parametrize("spec", [QuantSpec(bits=3, granularity="channel"),
                                  QuantSpec(bits=4, scheme="affine", granularity="group", group_size=4)])
def test_lsq_step_gradient_matches_finite_differences(spec):
    """LSQ's d(fake_quant)/ds is the derivative of s·(clip(w/s) + r) with the rounding residual r frozen."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 10)).astype(np.float32)
    c = rng.normal(size=w.shape)
    wq = WeightQuantizer("l", spec, w)
    wq.log_s = wq.log_s - 0.13                                 # off the calibrated scale (max |w| on a kink)
    _, s0, ctx = wq.forward(w)
    _, dlog = wq.backward(c.astype(np.float32), ctx)
    analytic = dlog / (wq.grad_scale * s0)                    # back from d/dlog s (with LSQ's g) to d/ds
    from qsim.train.qat import _expand, _reduce
    qmin, qmax = spec.qrange
    z = _expand(wq.z, w.shape, spec)
    v0 = w / _expand(s0, w.shape, spec).astype(np.float32)     # qsim's fp32 division
    lo, hi = qmin - z - 0.5, qmax - z + 0.5
    r = np.clip(np.rint(v0), qmin - z, qmax - z) - np.clip(v0, lo, hi)     # frozen rounding residual

    def f(s):
        sf = _expand(s, w.shape, spec)
        return c * sf * (np.clip(w / sf, lo, hi) + r)

    eps = 1e-6
    numeric = np.zeros_like(s0)
    for i in np.ndindex(s0.shape):
        d = np.zeros_like(s0)
        d[i] = eps
        numeric[i] = (_reduce(f(s0 + d) - f(s0 - d), spec)[i]) / (2 * eps)
    assert np.allclose(analytic, numeric, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("learning", ["lsq", "pact"])
def test_activation_step_gradient(learning):
    rng = np.random.default_rng(2)
    h = np.abs(rng.normal(size=(3, 20))).astype(np.float32)
    aq = ActQuantizer("l", A4, 0.1, -8, learning)
    out, ctx = aq.forward(h)
    assert np.array_equal(out, (quantize(h, A4, scale=aq.scale(), zero_point=-8).dequantize(np.float32)))
    g = rng.normal(size=h.shape).astype(np.float32)
    dh, dlog = aq.backward(g, ctx)
    v, levels, inside, s, n = ctx
    assert np.array_equal(dh, np.where(inside, g, 0))
    resid = 0.0 if learning == "pact" else 1.0
    expected = float((g * np.where(inside, (levels - v) * resid, levels)).sum())
    assert dlog == pytest.approx(expected / np.sqrt(n * (aq.qmax - aq.z)) * s, rel=1e-6)


def test_kd_loss_is_the_formula_and_its_gradient():
    rng = np.random.default_rng(3)
    zs, zt, t = rng.normal(size=(5, 10)), rng.normal(size=(5, 10)) * 3, 4.0

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    pt, ps = softmax(zt / t), softmax(zs / t)
    expected = t * t * np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), axis=1))
    loss, grad = kd_loss(zs, zt, t)
    assert loss == pytest.approx(expected, rel=1e-10)
    eps, num = 1e-6, np.zeros_like(zs)
    for i in np.ndindex(zs.shape):
        d = np.zeros_like(zs)
        d[i] = eps
        num[i] = (kd_loss(zs + d, zt, t)[0] - kd_loss(zs - d, zt, t)[0]) / (2 * eps)
    assert np.allclose(grad, num, atol=1e-6)
    assert kd_loss(zt, zt, t)[0] == pytest.approx(0.0, abs=1e-12)


def test_qat_loss_falls_on_small_data(cnn):
    x, y = _batch(512)
    w2 = QuantSpec(bits=2, granularity="tensor")
    cfg = QATConfig(epochs=2, lr=1e-3, seed=0)
    before = make_quantizers(cnn, {k: np.array(v) for k, v in cnn.weights().items()}, w2, A8, cfg)
    l0 = forward_backward(cnn.arch, cnn.weights(), before, x, y, grads=False)[0]
    state = train_qat(cnn, w2, A8, cfg, x=x, y=y)
    l1 = forward_backward(cnn.arch, state.params, state.quantizers, x, y, grads=False)[0]
    assert l1 < 0.7 * l0
    again = train_qat(cnn, w2, A8, cfg, x=x, y=y)                  # seeded: bit-identical
    assert all(np.array_equal(state.params[k], again.params[k]) for k in state.params)


def test_weight_decay_shrinks_latent_weights_only(cnn):
    x, y = _batch(256)
    plain = train_qat(cnn, W4, A4, QATConfig(epochs=1, lr=1e-3), x=x, y=y)
    decayed = train_qat(cnn, W4, A4, QATConfig(epochs=1, lr=1e-3, weight_decay=1.0), x=x, y=y)
    for op in cnn.arch.mac_ops:
        w0, w1 = plain.params[f"{op.name}.w"], decayed.params[f"{op.name}.w"]
        assert np.linalg.norm(w1) < 0.999 * np.linalg.norm(w0)
    # biases and step sizes see no decay term: with a tiny decay they move as without it
    tiny = train_qat(cnn, W4, A4, QATConfig(epochs=1, lr=1e-3, weight_decay=1e-12), x=x, y=y)
    assert all(np.allclose(tiny.params[k], plain.params[k], atol=1e-5) for k in plain.params if k.endswith(".b"))


def test_export_runs_on_the_integer_kernels_and_agrees(cnn):
    res = evaluate_trained("mnist_cnn", W4, A4, "qat_kd", epochs=1, lr=1e-3, train_size=512, eval_size=600)
    q = res["quantized"]
    assert res["config"]["training"] == "qat_kd" and res["config"]["training_config"]["kd_lambda"] == 1.0
    assert q["numerics"] == "integer kernels" and all(p["path"] == "int" for p in q["per_layer"])
    assert q["agreement"] >= 0.995 and abs(q["metric"] - q["fake_quant_metric"]) <= 0.005
    again = evaluate_trained("mnist_cnn", W4, A4, "qat_kd", epochs=1, lr=1e-3, train_size=512, eval_size=600)
    assert again["training"]["cached"] and again["quantized"]["metric"] == q["metric"]
    other = evaluate_trained("mnist_cnn", W4, A4, "qat_kd", epochs=1, lr=1e-3, train_size=512, eval_size=600,
                             seed=1)
    assert not other["training"]["cached"]


def test_fake_quant_eval_is_the_executors_arithmetic(cnn):
    """The reported fake-quant forward computes the executor's accumulator and requantization: on a 1-bit-activation
    net (near-tied codes and logits) it matches the integer kernels bit for bit, and a corrupted export (codes that
    no longer match the dequantized weights) is still caught."""
    from dataclasses import replace

    from qsim.nets.quant_exec import QuantConfig
    from qsim.train.deploy import deploy_qat, fake_quant_forward, integer_forward

    x, y = _batch(512)
    macs = cnn.arch.mac_ops
    wb, a1 = QuantSpec(scheme="binary", granularity="channel"), QuantSpec(bits=1, scheme="affine")
    ovr = {macs[0].name: {"a": A8}}
    state = train_qat(cnn, wb, a1, QATConfig(epochs=1, lr=1e-3), x=x, y=y, overrides=ovr)
    layers = deploy_qat(cnn, state)
    cfg = QuantConfig.build(cnn, wb, a1, overrides=ovr)
    xt = load_dataset("mnist").x_test[:400]
    ints, _ = integer_forward(cnn.arch, layers, cfg, xt)
    exact = fake_quant_forward(cnn.arch, layers, xt, cfg)
    f32 = fake_quant_forward(cnn.arch, layers, xt)
    assert np.array_equal(exact, ints)
    assert np.allclose(f32, exact, rtol=1e-4, atol=1e-4 * np.abs(exact).max())   # the same model, in float32
    bad = list(layers)
    q = bad[1].pw.q.copy()
    q[: q.shape[0] // 2] *= -1                                     # export bug: half the channels' codes flipped
    bad[1] = replace(bad[1], pw=replace(bad[1].pw, q=q))
    wrong, _ = integer_forward(cnn.arch, bad, cfg, xt)
    assert (np.argmax(wrong, 1) == np.argmax(fake_quant_forward(cnn.arch, bad, xt, cfg), 1)).mean() < 0.95


def test_ptq_path_is_the_executors(cnn):
    for spec in (W4, QuantSpec(scheme="ternary", granularity="channel"),
                 QuantSpec(bits=4, granularity="group", group_size=16)):
        pw = prepared_weight("mnist_cnn", "conv2", spec)
        w = cnn.weights()["conv2.w"]
        axis = 0 if spec.granularity == "channel" else -1
        mine = prepare_qtensor(quantize(w.reshape(w.shape[0], -1), spec, axis), cnn.arch.mac_ops[1], w.shape,
                               spec.label())
        assert mine.path == pw.path and np.array_equal(mine.q, pw.q) and np.array_equal(mine.scale, pw.scale)
    res = evaluate_trained("mnist_cnn", W4, A4, "ptq", eval_size=500)
    plain = evaluate("mnist_cnn", W4, A4, eval_size=500)
    assert res["quantized"]["metric"] == plain["quantized"]["metric"]
    assert res["quantized"]["agreement"] >= 0.995


def test_bad_input_rejected_up_front():
    for kw in ({"epochs": 0}, {"lr": 0.0}, {"lr": -1e-3}, {"lr": float("nan")}, {"kd_temperature": 0},
               {"act_learning": "adam"}, {"batch_size": 0}, {"weight_decay": -1e-4}, {"weight_decay": float("inf")}):
        with pytest.raises(ValueError, match=next(iter(kw)).split("_")[0]):
            QATConfig(**kw)
    with pytest.raises(ValueError, match="training must be one of"):
        evaluate_trained("mnist_cnn", W4, A4, "qat_magic")
    with pytest.raises(ValueError, match="scheme must be one of"):
        QuantSpec(scheme="septenary")
    with pytest.raises(ValueError, match="granularity must be 'tensor'"):
        evaluate_trained("mnist_cnn", W4, QuantSpec(bits=8, scheme="affine", granularity="global"), "qat")


def test_non_finite_loss_names_epoch_and_layer(cnn):
    x, y = _batch(256)
    with pytest.raises(FloatingPointError, match=r"epoch 1, step \d+: first non-finite values in .*layer"):
        train_qat(cnn, None, None, QATConfig(epochs=1, lr=1e30), x=x, y=y)


def test_cli_json_contract(capsys):
    base = ["nets", "eval", "mnist_cnn", "--wbits", "2", "--granularity", "tensor", "--eval-size", "300",
            "--format", "json"]
    assert cli.main(base) == 0
    ptq = json.loads(capsys.readouterr().out)
    assert cli.main(base + ["--training", "qat", "--epochs", "1", "--seed", "3"]) == 0
    qat = json.loads(capsys.readouterr().out)
    assert set(ptq) <= set(qat) and set(ptq["quantized"]) <= set(qat["quantized"])
    assert set(ptq["config"]) - {"ptq", "act_mode"} <= set(qat["config"])
    assert qat["config"]["training"] == "qat" and qat["config"]["training_config"]["seed"] == 3
    q = qat["quantized"]
    assert {"metric", "fake_quant_metric", "agreement"} <= set(q) and q["agreement"] >= 0.995
    assert q["metric"] > ptq["quantized"]["metric"] + 0.2          # W2 per-tensor: QAT rescues PTQ's 53 %
    for bad in (["--training", "qat", "--epochs", "0"], ["--training", "qat", "--lr", "0"], ["--lr", "1e-3"]):
        assert cli.main(["nets", "eval", "mnist_cnn", *bad]) != 0
        assert "error" in capsys.readouterr().err


def test_fashion_mnist_subset_and_network():
    ds = load_dataset("fashion_mnist")
    assert ds.x_train.shape == (10000, 1, 28, 28) and ds.x_test.shape == (3000, 1, 28, 28)
    assert np.bincount(ds.y_train).tolist() == [1000] * 10 and np.bincount(ds.y_test).tolist() == [300] * 10
    assert "fashion_cnn" in list_networks()
    net = get_network("fashion_cnn")
    assert net.weights_meta()["test_accuracy"] > 0.85
    res = evaluate("fashion_cnn", eval_size=500)
    assert res["float"]["metric"] > 0.8


def test_study_training_axis():
    from qsim.study.runner import config_label, evaluate_config
    from qsim.study.spec import StudySpecError, parse_study

    spec = parse_study({"name": "t", "network": "mnist_cnn", "eval_size": 200, "profiles": ["jetson-agx-orin"],
                        "grid": {"wbits": [2], "granularity": "tensor", "training": ["ptq", "qat", "qat_kd"],
                                 "epochs": [1], "lr": [1e-3], "seed": [0, 1]}})
    labels = [config_label(c) for c in spec.configs()]
    assert labels == ["W2-symmetric-tensor/A8", "W2-symmetric-tensor/A8 qat s0", "W2-symmetric-tensor/A8 qat s1",
                      "W2-symmetric-tensor/A8 qat_kd s0", "W2-symmetric-tensor/A8 qat_kd s1"]
    ptq = next(c for c in spec.configs() if c.training == "ptq")
    assert (ptq.epochs, ptq.lr, ptq.seed) == (None, None, None)
    qat = next(c for c in spec.configs() if c.training == "qat")
    rec = evaluate_config("mnist_cnn", qat.as_dict(), 256, 200)
    base = evaluate_config("mnist_cnn", ptq.as_dict(), 256, 200)
    assert rec["accuracy"] > base["accuracy"] + 0.2 and rec["numerics"] == "integer kernels"
    with pytest.raises(StudySpecError, match="grid.training.*grid.lr|grid.lr"):
        parse_study({"name": "t", "network": "mnist_cnn", "profiles": ["jetson-agx-orin"],
                     "grid": {"training": ["qat", "distill"], "lr": [0], "epochs": [0]}})
