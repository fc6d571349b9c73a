"""qsim.prune: masks per pattern, exact zeros through the integer kernels, canonical Huffman,
storage accounting by hand, Deep Compression on the digits MLP, the `qsim nets eval` contract."""

import json
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from qsim import cli  # noqa: E402
from qsim.kernels import conv2d_int, matmul_int  # noqa: E402
from qsim.kernels.reference import ref_conv2d, ref_matmul  # noqa: E402
from qsim.nets import evaluate, get_network  # noqa: E402
from qsim.nets.models import Architecture, Conv, Flatten, Linear, init_weights  # noqa: E402
from qsim.prune import huffman, masks as M, storage  # noqa: E402
from qsim.prune.pipeline import deep_compressed, kmeans_1d, prune_for_config, pruned_model  # noqa: E402
from qsim.quant import QuantSpec, quantize  # noqa: E402

pytest.importorskip("sklearn", reason="the digits nets need scikit-learn (pip install scikit-learn)")

W8 = QuantSpec(bits=8, granularity="channel")
A8 = QuantSpec(bits=8, scheme="affine")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QSIM_CACHE_DIR", str(tmp_path / "cache"))


def _tiny_arch():
    return Architecture("tiny", (2, 6, 6), (
        Conv("c1", 2, 8, 3, padding=1),
        Conv("c2", 8, 4, 1),
        Flatten("flat"),
        Linear("fc", 4 * 36, 8),
    ))


def _params(arch, seed=0):
    return init_weights(arch, seed)


# -- masks ------------------------------------------------------------------------------
def test_unstructured_global_and_random_prune_exact_counts():
    arch = _tiny_arch()
    p = _params(arch)
    for pattern in ("unstructured", "random"):
        m = M.compute_masks(arch, p, 0.3, pattern, seed=1)
        for op in arch.mac_ops:
            n = int(np.prod(op.weight_shape))
            assert int((~m[op.name]).sum()) == round(0.3 * n), (pattern, op.name)
    m = M.compute_masks(arch, p, 0.3, "unstructured")
    for op in arch.mac_ops:   # magnitude: every pruned |w| <= every kept |w| within a layer
        w = np.abs(p[f"{op.name}.w"])
        assert w[~m[op.name]].max() <= w[m[op.name]].min()
    g = M.compute_masks(arch, p, 0.6, "global")
    allw = np.concatenate([np.abs(p[f"{op.name}.w"]).ravel() for op in arch.mac_ops])
    allm = np.concatenate([g[op.name].ravel() for op in arch.mac_ops])
    assert int((~allm).sum()) == round(0.6 * allw.size)
    assert allw[~allm].max() <= allw[allm].min()


def test_random_pattern_is_seeded():
    arch = _tiny_arch()
    p = _params(arch)
    a = M.compute_masks(arch, p, 0.3, "random", seed=3)
    b = M.compute_masks(arch, p, 0.3, "random", seed=3)
    c = M.compute_masks(arch, p, 0.3, "random", seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    # nested: a higher random sparsity with the same seed prunes a superset
    d = M.compute_masks(arch, p, 0.6, "random", seed=3)
    assert all(np.all(d[k] <= a[k]) for k in a)


@pytest.mark.parametrize("pattern,n,m", [("2:4", 2, 4), ("4:8", 4, 8)])
def test_n_m_keeps_exactly_n_of_every_m_along_k(pattern, n, m):
    arch = Architecture("nm", (1, 4, 4), (Conv("c", 1, 8, 4, relu=True), Flatten("f"), Linear("fc", 8, 8)))
    p = _params(arch, 5)
    masks = M.compute_masks(arch, p, 0.5, pattern)
    for op in arch.mac_ops:
        rows = masks[op.name].reshape(op.weight_shape[0], -1)
        assert np.all(rows.reshape(rows.shape[0], -1, m).sum(axis=2) == n)
        w = np.abs(p[f"{op.name}.w"]).reshape(rows.shape).reshape(rows.shape[0], -1, m)
        mk = rows.reshape(w.shape)
        # the kept ones are the largest of each group
        assert np.all(np.where(mk, w, np.inf).min(axis=2) >= np.where(mk, -np.inf, w).max(axis=2))


def test_channel_pruning_removes_whole_filters_their_bias_and_the_inputs_they_feed():
    arch = _tiny_arch()
    p = _params(arch)
    p = {k: (v + 0.1 if k.endswith(".b") else v) for k, v in p.items()}   # non-zero biases
    masks = M.compute_masks(arch, p, 0.5, "channel")
    rem = M.removed_channels(arch, masks)
    assert len(rem["c1"]) == 4 and len(rem["c2"]) == 2 and len(rem["fc"]) == 0   # last layer keeps its classes
    for name in ("c1", "c2"):
        rows = masks[name].reshape(masks[name].shape[0], -1)
        assert np.all(rows.all(axis=1) | ~rows.any(axis=1)) or name == "c2"   # whole filters
        assert not rows[rem[name]].any()
    # c2 reads c1's removed channels: those input columns are masked; fc reads c2's removed channels
    assert not masks["c2"][:, rem["c1"]].any()
    fc_cols = (rem["c2"][:, None] * 36 + np.arange(36)).ravel()
    assert not masks["fc"][:, fc_cols].any()
    pruned = M.apply_masks(arch, p, masks, "channel")
    assert np.all(pruned["c1.b"][rem["c1"]] == 0) and np.all(pruned["c1.b"][np.setdiff1d(np.arange(8), rem["c1"])] != 0)
    from qsim.nets.float_exec import forward
    _, trace = forward(arch, pruned, np.random.default_rng(0).random((3, 2, 6, 6), dtype=np.float32), record=True)
    assert np.all(trace["c1"][1][:, rem["c1"]] == 0)


# -- exact zeros through quantization and the integer kernels ------------------------------
@pytest.mark.parametrize("spec", [
    QuantSpec(bits=8, granularity="channel"), QuantSpec(bits=4, scheme="affine"),
    QuantSpec(bits=4, granularity="group", group_size=8), QuantSpec(bits=4, scheme="pow2"),
    QuantSpec(scheme="ternary"), QuantSpec(scheme="mxfp4"),
])
def test_pruned_then_quantized_weights_are_zero_exactly_where_the_mask_says(spec):
    rng = np.random.default_rng(0)
    w = (rng.choice([-1, 1], (16, 64)) * rng.uniform(0.5, 1.0, (16, 64))).astype(np.float32)  # |w| >= 0.5
    mask = M._nm_mask(w, 2, 4)
    mask &= rng.random(w.shape) < 0.9
    qt = quantize(w * mask, spec, axis=0 if spec.granularity == "channel" else None if
                  spec.granularity == "tensor" else -1)
    zero = qt.expand(qt.zero_point)
    assert np.all(qt.q[~mask] == zero[~mask])
    assert np.all(qt.q[mask] != zero[mask])
    assert np.all(qt.dequantize()[~mask] == 0)


def test_integer_kernels_on_pruned_weights_equal_the_int64_reference():
    from qsim.nets.quant_exec import act_params, prepared_weight
    from qsim.prune.evaluate import _derived_network

    net = get_network("digits_cnn")
    params = prune_for_config(net, 0.6, "unstructured")
    d = _derived_network(net, params, "test-int64")
    rng = np.random.default_rng(1)
    # conv2 of the digits CNN: OIHW codes, per-channel scales
    pw = prepared_weight(d.name, "conv2", W8)
    assert np.all(pw.q[params["conv2.w"] == 0] == 0) and (pw.q == 0).mean() >= 0.6
    x = rng.integers(0, 256, (2, 16, 4, 4)).astype(np.uint8)
    acc, ovf = conv2d_int(x, pw.q, 128, 0, None, padding=(1, 1, 1, 1))
    ref, rovf = ref_conv2d(x, pw.q, 128, 0, None, padding=(1, 1, 1, 1))
    assert np.array_equal(acc, ref) and ovf == rovf == 0
    # fc: (K, N) codes
    pf = prepared_weight(d.name, "fc", W8)
    a = act_params(d.name, 256, "fc", A8)
    xa = rng.integers(a.qmin, a.qmax + 1, (5, pf.q.shape[0])).astype(np.int8 if a.qmin < 0 else np.uint8)
    bias = rng.integers(-1000, 1000, pf.q.shape[1])
    acc, _ = matmul_int(xa, pf.q, a.zero_point, 0, bias)
    ref, _ = ref_matmul(xa, pf.q, a.zero_point, 0, bias)
    assert np.array_equal(acc, ref)


# -- Huffman ----------------------------------------------------------------------------
def test_canonical_huffman_lengths_and_codes():
    # CLRS: a:45 b:13 c:12 d:16 e:9 f:5 → lengths 1,3,3,3,4,4
    lengths = huffman.code_lengths([45, 13, 12, 16, 9, 5])
    assert lengths.tolist() == [1, 3, 3, 3, 4, 4]
    codes = huffman.canonical_codes(lengths)
    assert codes == {0: (0b0, 1), 1: (0b100, 3), 2: (0b101, 3), 3: (0b110, 3), 4: (0b1110, 4), 5: (0b1111, 4)}
    assert huffman.encoded_bits([45, 13, 12, 16, 9, 5], lengths) == 224
    assert huffman.code_lengths([0, 7, 0]).tolist() == [0, 1, 0]
    assert huffman.table_bits(33) == 33 * huffman.LENGTH_FIELD_BITS


def test_huffman_round_trip():
    rng = np.random.default_rng(2)
    sym = np.minimum(rng.geometric(0.3, 3000) - 1, 31)
    counts = np.bincount(sym, minlength=32)
    lengths = huffman.code_lengths(counts)
    bits = huffman.encode(sym, lengths)
    assert len(bits) == huffman.encoded_bits(counts, lengths)
    assert np.array_equal(huffman.decode(bits, lengths, len(sym)), sym)
    # optimal: within one bit per symbol of the entropy
    pr = counts[counts > 0] / counts.sum()
    assert len(bits) / len(sym) < -(pr * np.log2(pr)).sum() + 1


# -- storage by hand ---------------------------------------------------------------------
def test_storage_accounting_by_hand():
    # one row of 32 positions, kept at 0, 3, 14, 23, 31: zeros skipped 0, 2, 10, 8, 7
    mask = np.zeros((1, 32), bool)
    mask[0, [0, 3, 14, 23, 31]] = True
    # 3-bit relative index (gaps up to 7): gap 10 = 1 filler (gap 7) + entry gap 2; gap 8 = 1 filler + entry
    # gap 0; gap 7 fits without a filler
    g, fill = storage.gaps(mask, 3)
    assert g.tolist() == [0, 2, 7, 2, 7, 0, 7] and fill == 2
    csr = storage.csr_relative("l", mask, 4, 3, metadata_bits=32)
    assert csr.bits == 7 * (4 + 3) + 32 and csr.detail["fillers"] == 2
    assert storage.csr_relative("l", mask, 4, 4).bits == 5 * (4 + 4)          # no fillers at 4 bits
    assert storage.csr_relative("l", mask, 4, 2).detail["fillers"] == 0 + 0 + 2 + 2 + 1
    assert storage.best_csr_relative("l", mask, 4).bits == min(storage.csr_relative("l", mask, 4, b).bits
                                                                for b in range(1, 17))
    assert storage.bitmask("l", mask, 4).bits == 32 + 5 * 4
    assert storage.dense("l", 32, 4).bits == 128
    # 2:4 on (2, 8): 8 kept values, 2 bits of position each
    nm_mask = np.tile(np.array([1, 0, 1, 0, 0, 1, 1, 0], bool), (2, 1))
    st = storage.n_m("l", nm_mask, 8, 2, 4, metadata_bits=64)
    assert st.parts == {"values": 8 * 8, "nm_metadata": 8 * 2, "metadata": 64} and st.bits == 144
    assert storage.n_m("l", np.ones((1, 8), bool) & np.array([1, 1, 1, 1, 0, 0, 0, 0], bool), 8, 4, 8).bits == 4 * 11
    with pytest.raises(ValueError, match="exactly 2 of every 4"):
        storage.n_m("l", np.ones((2, 8), bool), 8, 2, 4)
    # channel: rows 0 and 2 of 3 kept, all 5 columns: 2·5 values + 3 row bits
    ch = np.zeros((3, 5), bool)
    ch[[0, 2]] = True
    assert storage.channel("l", ch, 8).bits == 2 * 5 * 8 + 3
    # Huffman CSR: symbols of the 5 kept values, alphabet 4 (+ the filler symbol 4), 3-bit gaps
    hs = storage.huffman_csr("l", mask, [1, 1, 1, 2, 1], 4, 3, metadata_bits=4 * 8 + 32)
    # values: counts {1: 4, 2: 1, filler: 2} → lengths 1, 2, 2 → 4 + 2 + 4 = 10 bits
    assert huffman.code_lengths([0, 4, 1, 0, 2]).tolist() == [0, 1, 2, 0, 2]
    assert hs.parts["values_huffman"] == 10
    # gaps: {0: 2, 2: 2, 7: 3} → lengths 2, 2, 1 → 4 + 4 + 3 = 11 bits
    assert huffman.code_lengths(np.bincount(g, minlength=8)).tolist() == [2, 0, 2, 0, 0, 0, 0, 1]
    assert hs.parts["relative_indices_huffman"] == 11
    assert hs.parts["huffman_tables"] == 5 * 5 + 8 * 5
    assert hs.parts["metadata"] == 64 and hs.bits == sum(hs.parts.values())


# -- Deep Compression ------------------------------------------------------------------------
def test_kmeans_linear_init_and_sharing():
    v = np.concatenate([np.full(10, -1.0), np.full(5, 0.5), np.full(7, 2.0)])
    cent, idx = kmeans_1d(v, 4)
    assert set(np.round(cent[np.unique(idx)], 6)) == {-1.0, 0.5, 2.0}
    assert np.allclose(cent[idx], v)


def test_deep_compression_shares_at_most_2_to_the_bits_values_and_decodes_exactly():
    net = get_network("digits_mlp")
    dc = deep_compressed(net, 0.7, "unstructured", bits=3, seed=0, fine_tune_epochs=1)
    for op in net.arch.mac_ops:
        w, mk = dc.params[f"{op.name}.w"], dc.masks[op.name]
        assert np.all(w[~mk] == 0)
        assert len(np.unique(w[mk])) <= 8
        # the stored stream (codebook index per kept weight, Huffman coded) decodes to the weights
        idx = dc.indices[op.name][mk]
        lengths = huffman.code_lengths(np.bincount(idx, minlength=8))
        back = huffman.decode(huffman.encode(idx, lengths), lengths, idx.size)
        assert np.array_equal(np.float32(dc.codebook_scales[op.name]) *
                              dc.codebook_codes[op.name][back].astype(np.float32), w[mk])
    res = evaluate("digits_mlp", QuantSpec(bits=3), A8, sparsity=0.7, fine_tune_epochs=1, compress="deep")
    q = res["quantized"]
    assert q["numerics"] == "integer kernels"
    assert all(p["format"] == "csr_relative_huffman" for p in q["per_layer"])
    assert q["weight_bytes"] == pytest.approx(sum(p["storage"]["bits"] for p in q["per_layer"]) / 8)
    assert q["compression_ratio"] == pytest.approx(4 * (64 * 64 + 64 * 10) / q["weight_bytes"])
    assert q["compression_ratio"] > 10 and q["metric"] > 0.8


def test_prune_for_config_is_cached_and_keyed(tmp_path):
    a = prune_for_config("digits_mlp", 0.5, "random", seed=0, fine_tune_epochs=1)
    files = list((tmp_path / "cache" / "prune").glob("*.npz"))
    assert len(files) == 1
    b = prune_for_config("digits_mlp", 0.5, "random", seed=0, fine_tune_epochs=1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert len(list((tmp_path / "cache" / "prune").glob("*.npz"))) == 1
    c = prune_for_config("digits_mlp", 0.5, "random", seed=1, fine_tune_epochs=1)
    assert len(list((tmp_path / "cache" / "prune").glob("*.npz"))) == 2
    assert not np.array_equal(a["fc1.w"] == 0, c["fc1.w"] == 0)
    # fine-tuning kept the pruned weights at exactly 0
    pm = pruned_model("digits_mlp", 0.5, "random", 0, 1)
    assert all(np.all(pm.params[f"{k}.w"][~pm.masks[k]] == 0) for k in pm.masks)


# -- evaluate / CLI contract ----------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    ({"sparsity": 1.0}, r"sparsity must be a number in \[0, 1\)"),
    ({"sparsity": -0.1}, r"sparsity must be a number in \[0, 1\)"),
    ({"sparsity": 0.3, "sparsity_pattern": "blocky"}, "unknown sparsity pattern 'blocky'"),
    ({"sparsity": 0.7, "sparsity_pattern": "2:4"}, "sparsity is 0.5"),
    ({"sparsity_pattern": "random"}, "needs a sparsity"),
    ({"sparsity": 0.5, "compress": "zip"}, "compress must be one of"),
    ({"fine_tune_epochs": 2}, "needs a sparsity"),
])
def test_bad_input_is_rejected_up_front(kwargs, match):
    with pytest.raises(ValueError, match=match):
        evaluate("digits_mlp", W8, A8, **kwargs)


def test_n_m_that_does_not_divide_k_names_the_layer():
    with pytest.raises(ValueError, match="layer 'conv1' of digits_cnn has reduction dimension K = 9"):
        evaluate("digits_cnn", W8, A8, sparsity_pattern="2:4")
    with pytest.raises(ValueError, match="no zero level"):
        evaluate("digits_mlp", QuantSpec(scheme="binary"), A8, sparsity=0.5)
    with pytest.raises(ValueError, match="compress='deep'"):
        evaluate("digits_mlp", QuantSpec(bits=4, scheme="kmeans"), A8, sparsity=0.5)


def _cli_json(capsys, *argv):
    assert cli.main(["nets", "eval", *argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_json_contract(capsys):
    plain = _cli_json(capsys, "digits_mlp", "--wbits", "4")
    pruned = _cli_json(capsys, "digits_mlp", "--wbits", "4", "--sparsity", "0.5", "--sparsity-pattern", "2:4")
    assert set(plain) <= set(pruned) and set(plain["quantized"]) <= set(pruned["quantized"])
    assert set(plain["quantized"]["per_layer"][0]) <= set(pruned["quantized"]["per_layer"][0])
    assert pruned["network"] == "digits_mlp" and pruned["float"] == plain["float"]
    q = pruned["quantized"]
    assert q["sparsity"] == 0.5
    # 2:4 at 4 bits: every kept value 4 bits + 2 bits of position; fp32 per-channel scales
    n = 64 * 64 + 64 * 10
    assert q["weight_bytes"] == (n // 2 * (4 + 2) + (64 + 10) * 32) / 8
    assert q["compression_ratio"] == pytest.approx(4 * n / q["weight_bytes"])
    assert q["per_layer"][0]["format"] == "2:4" and q["numerics"] == "integer kernels"
    assert cli.main(["nets", "eval", "digits_mlp", "--sparsity", "1.5"]) == 2
    assert "sparsity must be a number in [0, 1)" in capsys.readouterr().err


def test_quantization_noise_matches_delta2_over_12_and_pruned_zeros_are_free():
    from qsim.prune.noise import noise_rows

    dense = [r for r in noise_rows("digits_mlp", bits=[6, 8]) if r["tensor"] == "weight"]
    assert all(0.85 < r["ratio"] < 1.15 for r in dense)
    assert all(r["model_mse"] == pytest.approx(r["delta"] ** 2 / 12) for r in dense)
    pruned = [r for r in noise_rows("digits_mlp", bits=[6, 8], sparsity=0.5) if r["tensor"] == "weight"]
    assert all(r["zero_fraction"] == pytest.approx(0.5, abs=0.01) for r in pruned)
    assert all(0.35 < r["ratio"] < 0.65 for r in pruned)     # ≈ (1 − zeros)·Δ²/12


def test_n_m_on_the_layers_whose_k_allows_it():
    from qsim.prune import evaluate_pruned

    res = evaluate_pruned("digits_cnn", W8, A8, sparsity_pattern="2:4", layers=["conv2", "fc"])
    fmt = {p["layer"]: (p["format"], p["sparsity"]) for p in res["quantized"]["per_layer"]}
    assert fmt == {"conv1": ("dense", 0.0), "conv2": ("2:4", 0.5), "fc": ("2:4", 0.5)}
    assert res["quantized"]["numerics"] == "integer kernels"


def test_fine_tuning_needs_a_training_recipe():
    from qsim.nets.registry import Network

    base = get_network("digits_mlp")
    net = Network("digits_mlp_copy", base.dataset, base.arch, None, params=base.weights())
    assert pruned_model(net, 0.5, "unstructured").sparsity == 0.5
    with pytest.raises(ValueError, match="no training recipe"):
        pruned_model(net, 0.5, "unstructured", 0, 1)
