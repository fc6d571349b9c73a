"""qsim.nets on the fast scikit-learn digits nets: registry, executors, exactness, CLI.

The MNIST / mnist1d qualitative checks live in test_nets_real.py.
"""

import json
import os
from dataclasses import asdict

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from qsim import cli  # noqa: E402
from qsim.nets import evaluate, get_network, list_networks  # noqa: E402
from qsim.nets import metrics  # noqa: E402
from qsim.nets.data import load_dataset  # noqa: E402
from qsim.nets.float_exec import col2im, forward, im2col, maxpool  # noqa: E402
from qsim.nets.quant_exec import (  # noqa: E402
    QuantConfig, act_params, prepared_weight, quantized_forward,
)
from qsim.nets.train import TrainConfig, loss_and_grads, train  # noqa: E402
from qsim.quant import QuantSpec, quantize  # noqa: E402
from qsim.workload import Conv2d, Dense, Workload  # noqa: E402

pytest.importorskip("sklearn", reason="the digits nets need scikit-learn (pip install scikit-learn)")

W8 = QuantSpec(bits=8, granularity="channel")
A8 = QuantSpec(bits=8, scheme="affine")
NETS = ["mnist_cnn", "mnist_dwsep", "mnist_mlp", "mnist1d_cnn", "digits_mlp", "digits_cnn"]


# -- registry -----------------------------------------------------------------------------
def test_registry_lists_networks_and_weights_are_committed():
    assert list_networks()[:len(NETS)] == NETS
    for name in NETS:
        net = get_network(name)
        assert net.metric == "accuracy"
        assert net.weights_path.exists(), f"{name}: committed weights missing"
        meta = net.weights_meta()
        assert meta["network"] == name and 0.9 < meta["test_accuracy"] <= 1.0


def test_unknown_network_lists_names():
    with pytest.raises(ValueError, match="unknown network 'resnet9'.*mnist1d_cnn.*digits_cnn"):
        get_network("resnet9")
    with pytest.raises(ValueError, match="networks are: mnist_cnn, mnist_dwsep"):
        evaluate("resnet9", W8, A8)


def test_workloads_have_the_real_shapes():
    wl = get_network("digits_cnn").workload
    assert isinstance(wl, Workload)
    conv1, conv2, fc = wl.mac_layers
    assert isinstance(conv1, Conv2d) and (conv1.gemm.M, conv1.gemm.N, conv1.gemm.K) == (64, 16, 9)
    assert (conv2.gemm.M, conv2.gemm.N, conv2.gemm.K) == (16, 32, 144)
    assert isinstance(fc, Dense) and (fc.in_features, fc.out_features) == (128, 10)
    assert wl.total_macs == 64 * 16 * 9 + 16 * 32 * 144 + 128 * 10
    m1d = get_network("mnist1d_cnn").workload.mac_layers
    assert [(c.gemm.M, c.gemm.K) for c in m1d[:3]] == [(19, 5), (10, 75), (5, 75)]   # 1-D convs as H = 1
    dw = get_network("mnist_dwsep").workload["dw"]
    assert dw.depthwise and dw.gemm.K == 9


def test_float_executor_reproduces_training_accuracy():
    for name in ("digits_mlp", "digits_cnn"):
        res = evaluate(name)
        assert res["quantized"] is None and res["config"]["wspec"] is None
        assert res["float"]["metric"] == pytest.approx(get_network(name).weights_meta()["test_accuracy"], abs=1e-12)
        assert res["float"]["metric"] > 0.97


# -- exactness of the integer pipeline ------------------------------------------------------
def _ref_requant_fp32(acc, s_in, s_w, s_out, z_out, lo, hi):
    """ORT/XNNPACK requantization written from the spec: rne(fl32(acc)·fl32(fl32(s_in·s_w)/s_out)) + z."""
    s_c = (np.float32(s_in) * np.asarray(s_w, np.float32)) / np.float32(s_out)
    return np.clip(np.rint(acc.astype(np.float32) * s_c.astype(np.float32)) + z_out, lo, hi).astype(np.int64)


@pytest.mark.parametrize("wspec", [W8, QuantSpec(bits=4, scheme="affine", granularity="channel"),
                                   QuantSpec(bits=6, granularity="tensor")])
def test_quantized_mlp_equals_int64_numpy(wspec):
    """Every integer of the digits MLP pipeline equals an int64 NumPy computation exactly."""
    net = get_network("digits_mlp")
    cfg = QuantConfig.build(net, wspec, A8)
    x = load_dataset("digits").x_test[:80]
    logits, trace = quantized_forward(net, cfg, x, record=True)
    p = net.weights()
    a1, a2 = (act_params("digits_mlp", 256, n, A8) for n in ("fc1", "fc2"))
    q1, q2 = (quantize(p[f"{n}.w"], wspec, axis=0 if wspec.granularity == "channel" else None) for n in ("fc1", "fc2"))
    xq = quantize(x.reshape(len(x), -1), A8, scale=a1.scale, zero_point=a1.zero_point).q.astype(np.int64)

    def mac(codes, a, qt, b):
        w = qt.q.astype(np.int64) - (qt.zero_point[:, None] if qt.zero_point.ndim else qt.zero_point)
        bias = np.rint(b.astype(np.float64) / (a.scale * qt.scale)).astype(np.int64)
        return (codes - a.zero_point) @ w.T + bias

    acc1 = mac(xq, a1, q1, p["fc1.b"])
    h = _ref_requant_fp32(acc1, a1.scale, q1.scale, a2.scale, a2.zero_point, max(a2.qmin, a2.zero_point), a2.qmax)
    np.testing.assert_array_equal(trace["fc1"][0], a2.dequantize(h))
    acc2 = mac(h, a2, q2, p["fc2.b"])
    np.testing.assert_array_equal(logits, acc2.astype(np.float64) * (a2.scale * q2.scale))


def test_chunked_run_equals_one_batch():
    """Chunking the samples changes nothing: same logits, same per-layer outputs and overflows."""
    net = get_network("digits_cnn")
    cfg = QuantConfig.build(net, QuantSpec(bits=4, granularity="channel"), A8, acc_bits=14)
    x = load_dataset("digits").x_test[:150]
    whole, t1 = quantized_forward(net, cfg, x, record=True, batch_size=None)
    chunked, t2 = quantized_forward(net, cfg, x, record=True, batch_size=32)
    np.testing.assert_array_equal(whole, chunked)
    for k in t1:
        np.testing.assert_array_equal(t1[k][0], t2[k][0])
        assert t1[k][1] == t2[k][1]
    assert t1["conv2"][1] > 0


def test_conv_pipeline_agrees_with_float_fake_quant():
    """digits CNN: the integer pipeline vs a float64 fake-quant model with the same scales —
    codes identical except rare 1-LSB rounding differences (int bias, fp32 requantization)."""
    net = get_network("digits_cnn")
    cfg = QuantConfig.build(net, W8, A8)
    x = load_dataset("digits").x_test
    logits, trace = quantized_forward(net, cfg, x, record=True)
    p = dict(net.weights())
    for op in net.arch.mac_ops:
        p[f"{op.name}.w"] = prepared_weight("digits_cnn", op.name, W8).dequantized.astype(np.float64)
        p[f"{op.name}.b"] = p[f"{op.name}.b"].astype(np.float64)
    acts = {op.name: act_params("digits_cnn", 256, op.name, A8) for op in net.arch.mac_ops}
    a = acts["conv1"]
    h = (np.clip(np.rint(x.astype(np.float64) / a.scale) + a.zero_point, a.qmin, a.qmax) - a.zero_point) * a.scale
    from qsim.nets.float_exec import conv_forward

    for name, nxt in (("conv1", "conv2"), ("conv2", "fc")):
        op = next(o for o in net.arch.mac_ops if o.name == name)
        y, _ = conv_forward(op, h, p[f"{name}.w"], p[f"{name}.b"])
        o = acts[nxt]
        codes = np.clip(np.rint(y / o.scale) + o.zero_point, o.zero_point, o.qmax)
        got = np.rint(trace[name][0].astype(np.float64) / o.scale) + o.zero_point
        diff = np.abs(got - codes)
        assert diff.max() <= 1 and np.mean(diff == 0) > 0.999
        h = maxpool((codes - o.zero_point) * o.scale, 2)
    y = h.reshape(len(h), -1) @ p["fc.w"].T + p["fc.b"]
    assert metrics.sqnr_db(y, logits) > 45
    assert np.mean(y.argmax(1) == logits.argmax(1)) == 1.0


# -- quantized behaviour -----------------------------------------------------------------------
def test_evaluate_result_layout_and_w8a8_quality():
    res = evaluate("digits_cnn", W8, A8)
    assert set(res) >= {"network", "metric", "float", "quantized", "config"}
    q = res["quantized"]
    assert set(q) >= {"metric", "sqnr_db", "overflows", "per_layer"}
    assert [p["layer"] for p in q["per_layer"]] == ["conv1", "conv2", "fc"]
    assert all(p["path"] == "int" for p in q["per_layer"])
    assert q["overflows"] == 0 and q["sqnr_db"] > 35
    assert abs(q["metric"] - res["float"]["metric"]) <= 0.01
    assert res["config"]["wspec"]["bits"] == 8 and res["config"]["policy"] == "fp32_rne"


def test_accuracy_and_sqnr_fall_with_bits():
    sq = [evaluate("digits_mlp", QuantSpec(bits=b, granularity="channel"), QuantSpec(bits=b, scheme="affine"))
          ["quantized"] for b in (8, 6, 4, 3, 2)]
    sqnr = [r["sqnr_db"] for r in sq]
    acc = [r["metric"] for r in sq]
    assert all(a > b for a, b in zip(sqnr, sqnr[1:])), sqnr
    assert acc[0] >= acc[3] >= acc[4] and acc[4] < acc[0] - 0.05, acc


def test_narrow_accumulator_overflows():
    """Overflow events appear and grow as the accumulator narrows; 32 bits never overflow here."""
    w4a8 = (QuantSpec(bits=4, granularity="channel"), A8)
    q = {bits: evaluate("digits_cnn", *w4a8, acc_bits=bits)["quantized"] for bits in (32, 16, 14, 12)}
    assert q[32]["overflows"] == q[16]["overflows"] == 0
    assert 0 < q[14]["overflows"] < q[12]["overflows"]
    assert q[12]["metric"] < 0.5 < q[32]["metric"]                     # wrapped sums destroy the net
    sat = evaluate("digits_cnn", *w4a8, acc_bits=12, overflow="saturate")["quantized"]
    assert sat["overflows"] > 0 and sat["metric"] > q[12]["metric"]    # saturation degrades more gracefully
    w8 = evaluate("digits_cnn", W8, A8, acc_bits=16)["quantized"]
    assert w8["overflows"] > 0 and all(p["overflows"] > 0 for p in w8["per_layer"])
    with pytest.raises(ValueError, match="narrower than a single product"):
        evaluate("digits_cnn", W8, A8, acc_bits=12)


def test_mixed_precision_override_changes_only_that_layer():
    base = evaluate("digits_cnn", W8, A8)["quantized"]["per_layer"]
    w2 = QuantSpec(bits=2, granularity="channel")
    res = evaluate("digits_cnn", W8, A8, overrides={"conv2": {"w": w2}})
    mixed = res["quantized"]["per_layer"]
    assert mixed[0] == base[0]                                    # conv1 untouched, bit for bit
    assert mixed[1]["w"] == w2.label() and mixed[1]["sqnr_db"] < base[1]["sqnr_db"] - 10
    assert [m["w"] for m in mixed] == [W8.label(), w2.label(), W8.label()]
    assert res["config"]["overrides"] == {"conv2": {"w": asdict(w2)}}
    a4 = QuantSpec(bits=4, scheme="affine")
    act = evaluate("digits_cnn", W8, A8, overrides={"fc": {"a": a4}})["quantized"]["per_layer"]
    assert act[0] == base[0] and act[2]["a"] == a4.label() and act[1]["a"] == A8.label()
    with pytest.raises(ValueError, match=r"no MAC layer 'conv9'; layers are \['conv1', 'conv2', 'fc'\]"):
        evaluate("digits_cnn", W8, A8, overrides={"conv9": {"w": w2}})


@pytest.mark.parametrize("wspec, path", [
    (QuantSpec(bits=4, granularity="group", group_size=16), "int_grouped"),
    (QuantSpec(scheme="mxfp4"), "int_grouped"),
    (QuantSpec(bits=4, scheme="pow2", granularity="channel"), "int"),
    (QuantSpec(scheme="ternary", granularity="channel"), "int"),
    (QuantSpec(bits=4, scheme="kmeans"), "float"),
    (QuantSpec(bits=6, scheme="pow2", granularity="channel"), "float"),   # levels beyond 16-bit codes
    (QuantSpec(scheme="mxfp8_e4m3"), "float"),
])
def test_every_weight_scheme_runs(wspec, path):
    q = evaluate("digits_mlp", wspec, A8)["quantized"]
    assert {p["path"] for p in q["per_layer"]} == {path}
    assert q["metric"] > 0.85 and q["sqnr_db"] > 5


def test_requantization_policies_differ_by_at_most_one_lsb():
    net = get_network("digits_mlp")
    x = load_dataset("digits").x_test
    outs = {}
    for policy in ("fp32_rne", "gemmlowp", "tflite_optimized", "float64_half_away", "exact"):
        cfg = QuantConfig.build(net, W8, A8, policy=policy)
        outs[policy] = quantized_forward(net, cfg, x, record=True)[1]["fc1"][0]
        assert evaluate("digits_mlp", W8, A8, policy=policy)["config"]["policy"] == policy
    step = act_params("digits_mlp", 256, "fc2", A8).scale
    for policy, out in outs.items():
        lsb = np.rint(np.abs(out.astype(np.float64) - outs["exact"]) / step)     # code differences
        assert lsb.max() <= 1 and np.mean(lsb == 0) > 0.99, policy


def test_group_path_matches_numpy():
    """Per-group partial sums are exact integers; combining them in float64 equals NumPy."""
    net = get_network("digits_mlp")
    g16 = QuantSpec(bits=4, granularity="group", group_size=16)
    cfg = QuantConfig.build(net, g16, A8)
    x = load_dataset("digits").x_test[:40]
    _, trace = quantized_forward(net, cfg, x, record=True)
    a1, a2 = (act_params("digits_mlp", 256, n, A8) for n in ("fc1", "fc2"))
    qt = quantize(net.weights()["fc1.w"], g16, axis=-1)            # scale (64, 4)
    xq = quantize(x.reshape(40, -1), A8, scale=a1.scale, zero_point=a1.zero_point).q.astype(np.int64) - a1.zero_point
    parts = np.einsum("mgk,ngk->mng", xq.reshape(40, 4, 16), qt.q.astype(np.int64).reshape(64, 4, 16))
    y = (parts * qt.scale[None]).sum(-1) * a1.scale + net.weights()["fc1.b"]
    want = np.clip(np.rint(y / a2.scale) + a2.zero_point, a2.zero_point, a2.qmax)
    got = np.rint(trace["fc1"][0].astype(np.float64) / a2.scale) + a2.zero_point
    assert np.mean(got == want) > 0.999 and np.abs(got - want).max() <= 1


def test_weight_only_and_calibration_options():
    wo = evaluate("digits_mlp", QuantSpec(bits=4, granularity="channel"), None)["quantized"]
    assert wo["overflows"] == 0 and wo["metric"] > 0.95
    for cal in ("percentile", "mse", "entropy", "moving_average"):
        q = evaluate("digits_cnn", W8, QuantSpec(bits=8, scheme="affine", calibration=cal), calib_size=64)
        assert q["quantized"]["metric"] > 0.95 and q["config"]["calib_size"] == 64
    glob = evaluate("digits_cnn", W8, QuantSpec(bits=8, scheme="affine", granularity="global"))["quantized"]
    assert glob["metric"] > 0.9
    assert evaluate("digits_cnn", W8, A8, eval_size=100)["config"]["eval_size"] == 100


@pytest.mark.parametrize("kwargs, match", [
    (dict(aspec=QuantSpec(bits=8, granularity="channel")), "aspec.granularity must be one of"),
    (dict(aspec=QuantSpec(bits=4, scheme="pow2")), "aspec.scheme must be one of"),
    (dict(policy="banker"), "policy must be one of"),
    (dict(acc_bits=7), "acc_bits must be an int in 8..32 or 64"),
    (dict(overflow="clip"), "overflow must be one of"),
    (dict(calib_size=0), "calib_size must be a positive integer"),
    (dict(eval_size=-1), "eval_size must be a positive integer"),
    (dict(wspec=None), "aspec without wspec"),
    (dict(overrides={"fc": {"x": W8}}), "must be a dict with keys 'w' and/or 'a'"),
])
def test_bad_arguments(kwargs, match):
    args = dict(wspec=W8, aspec=A8) | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        evaluate("digits_cnn", args.pop("wspec"), args.pop("aspec"), **args)


# -- float executor and training ----------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(st.integers(1, 3), st.integers(1, 2), st.integers(0, 2), st.integers(4, 9))
def test_col2im_is_adjoint_of_im2col(k, s, pad, hw):
    rng = np.random.default_rng(k * 100 + s * 10 + pad)
    x = rng.standard_normal((2, 3, hw, hw + 1))
    cols = im2col(x, (k, k), (s, s), (pad, pad))
    c = rng.standard_normal(cols.shape)
    lhs = np.sum(cols * c)
    rhs = np.sum(x * col2im(c, x.shape, (k, k), (s, s), (pad, pad)))
    assert lhs == pytest.approx(rhs, rel=1e-10)


def test_backprop_matches_finite_differences():
    from qsim.nets import models

    arch = models.digits_cnn()
    rng = np.random.default_rng(0)
    p = {k: v.astype(np.float64) + 0.05 * rng.standard_normal(v.shape) for k, v in models.init_weights(arch, 0).items()}
    x, y = rng.standard_normal((3, 1, 8, 8)), rng.integers(0, 10, 3)
    _, g = loss_and_grads(arch, p, x, y)
    for key in ("conv1.w", "conv2.b", "fc.w"):
        idx = tuple(rng.integers(0, n) for n in p[key].shape)
        plus, minus = dict(p), dict(p)
        plus[key], minus[key] = p[key].copy(), p[key].copy()
        plus[key][idx] += 1e-6
        minus[key][idx] -= 1e-6
        num = (loss_and_grads(arch, plus, x, y)[0] - loss_and_grads(arch, minus, x, y)[0]) / 2e-6
        assert g[key][idx] == pytest.approx(num, rel=1e-4, abs=1e-7)


def test_training_is_deterministic():
    net = get_network("digits_mlp")
    ds = load_dataset("digits")
    cfg = TrainConfig(epochs=2, batch_size=64, lr=3e-3, seed=5)
    a = train(net.arch, ds.x_train, ds.y_train, cfg)
    b = train(net.arch, ds.x_train, ds.y_train, cfg)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert (forward(net.arch, a, ds.x_test).argmax(1) == ds.y_test).mean() > 0.8


def test_missing_optional_package_names_install_command(monkeypatch):
    import sys

    from qsim.nets import data

    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(ImportError, match="pip install mnist1d"):
        data._mnist1d()


# -- metrics -------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(-5, 5), min_size=3, max_size=40), st.integers(0, 2**31 - 1))
def test_spearman_pearson_match_scipy(values, seed):
    from scipy import stats

    a = np.array(values, float)
    b = a + np.random.default_rng(seed).integers(-3, 4, len(a))
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return
    assert metrics.pearson(a, b) == pytest.approx(stats.pearsonr(a, b)[0], abs=1e-12)
    assert metrics.spearman(a, b) == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-12)


def test_sqnr_and_accuracy():
    x = np.array([3.0, 4.0])
    assert metrics.sqnr_db(x, x) == float("inf")
    assert metrics.sqnr_db(x, x + np.array([0.3, 0.4])) == pytest.approx(20.0)
    assert metrics.sqnr_db(x.astype(np.float32), (x + np.array([0.3, 0.4])).astype(np.float32)) == \
        pytest.approx(20.0, abs=1e-4)
    assert metrics.accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1])) == 0.5


# -- CLI ------------------------------------------------------------------------------------------
def test_cli_eval_json_has_promised_keys(capsys):
    assert cli.main(["nets", "eval", "digits_cnn", "--format", "json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["network"] == "digits_cnn" and res["metric"] == "accuracy"
    assert isinstance(res["float"]["metric"], float) and 0.97 < res["float"]["metric"] <= 1
    assert {"metric", "sqnr_db", "overflows"} <= set(res["quantized"])
    assert isinstance(res["quantized"]["overflows"], int) and isinstance(res["config"], dict)
    assert res["config"]["wspec"]["bits"] == 8 and res["config"]["wspec"]["granularity"] == "channel"


def test_cli_eval_text_list_and_errors(capsys):
    assert cli.main(["nets", "eval", "digits_mlp", "--wbits", "4", "--abits", "8", "--granularity", "group",
                     "--group-size", "16", "--calibration", "percentile"]) == 0
    out = capsys.readouterr().out
    assert "quantized" in out and "int4-symmetric-group16" in out and "int_grouped" in out
    assert cli.main(["nets", "list"]) == 0
    assert "digits_cnn" in capsys.readouterr().out
    assert cli.main(["nets", "eval", "lenet"]) == 2
    assert "networks are: mnist_cnn" in capsys.readouterr().err
    assert cli.main(["nets", "eval", "digits_mlp", "--granularity", "group"]) == 2
    assert "group_size" in capsys.readouterr().err


def test_cli_train_writes_weights(tmp_path, capsys):
    out = tmp_path / "digits_mlp.npz"
    assert cli.main(["nets", "train", "digits_mlp", "--out", str(out), "--quiet"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    with np.load(out, allow_pickle=False) as d:
        meta = json.loads(str(d["meta"]))
        assert set(d.files) == {"fc1.w", "fc1.b", "fc2.w", "fc2.b", "meta"}
    committed = get_network("digits_mlp").weights_meta()
    assert meta["train_config"] == committed["train_config"]
    assert meta["test_accuracy"] == pytest.approx(committed["test_accuracy"], abs=0.01)   # seeded recipe


def test_cli_policy_help_names_every_policy():
    from qsim.kernels import POLICIES

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["nets"]
    ev = next(a for a in sub._actions if a.dest == "nets_command").choices["eval"]
    help_text = next(a for a in ev._actions if a.dest == "policy").help
    assert all(p in help_text for p in POLICIES)
