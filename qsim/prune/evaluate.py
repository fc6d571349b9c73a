"""`evaluate` of a pruned (and optionally Deep-Compressed) network through the integer kernels.

The pruned weights become a derived network (`NAME~<key>`, registered once per process with
in-memory weights), which `qsim.nets.evaluate` runs like any other: calibration on the pruned
network, the same integer pipeline. Before it runs, every layer's quantized weight is checked
against its mask: the integer code of every pruned weight must be the zero point (a scheme
without a zero level, e.g. binary, is rejected up front), so the integer kernels run exactly
the pruned model. With `compress="deep"` the stored codes of the shared weights must equal
the integer levels the kernels receive, position by position.

The result keeps `qsim.nets.evaluate`'s shape, for the original network's name: `float` is the
dense fp32 network; `quantized` is the pruned, quantized one (its `sqnr_db` and per-layer
`sqnr_db` against the pruned float network, i.e. quantization noise), plus

* `sparsity`: fraction of MAC weights pruned; `weight_bytes`: every stored bit of the
  weights (values, sparse indices / bitmask / N:M metadata, scales, zero points, codebooks,
  Huffman tables), biases excluded; `compression_ratio`: fp32 weight bytes / weight_bytes;
* `pruning`: pattern, fine-tuning, the pruned float network's metric, and per layer the
  storage format with its parts and the error analysis: `weight_sqnr_db_pruning` /
  `weight_mse_pruning` (dense fp32 weight vs the pruned, fine-tuned one), `weight_sqnr_db_quant`
  / `weight_mse_quant` (pruned weight vs the quantized — with `deep`, shared — weight the
  kernels run), `sqnr_db_pruning` / `mse_pruning` (the layer's float output, dense network vs
  pruned network — with `deep`, the shared weights in float), while the per-layer `sqnr_db`
  stays what `evaluate` reports: integer pipeline vs that pruned float network.
"""

from __future__ import annotations

import math

import numpy as np

from qsim.prune import masks as masks_mod, pipeline, storage

COMPRESS = ("deep",)
_DERIVED: dict = {}


def _derived_network(net, params: dict, key: str):
    from qsim.nets.registry import Network, register_network

    name = f"{net.name}~{key}"
    if name not in _DERIVED:
        frozen = {}
        for k, v in params.items():
            a = np.array(v, dtype=np.float32, copy=True)
            a.setflags(write=False)
            frozen[k] = a
        d = Network(name, net.dataset, net.arch, None, f"{net.name} pruned ({key})", metric=net.metric,
                    params=frozen)
        register_network(d)
        _DERIVED[name] = d
    return _DERIVED[name]


def check_request(name, wspec, aspec, sparsity, pattern, fine_tune_epochs, compress, layers=None):
    """All up-front checks of a pruning request; returns (net, sparsity, pattern)."""
    from qsim.nets import get_network

    net = get_network(name)
    if compress is not None and compress not in COMPRESS:
        raise ValueError(f"compress must be one of {list(COMPRESS)} or None, got {compress!r}")
    if sparsity is None and pattern is None and compress is None:
        raise ValueError("fine_tune_epochs needs a sparsity (and pattern) to fine-tune")
    if wspec is None:
        raise ValueError("pruning is evaluated on the quantized network: give a weight QuantSpec (not float only)")
    if sparsity is None and pattern is None:
        sparsity = 0.0
    sparsity, pattern = pipeline.resolve_sparsity(net, sparsity, pattern, layers)
    if isinstance(fine_tune_epochs, bool) or not isinstance(fine_tune_epochs, (int, np.integer)) or \
            fine_tune_epochs < 0:
        raise ValueError(f"fine_tune_epochs must be an integer >= 0, got {fine_tune_epochs!r}")
    if compress == "deep" and wspec.bits > pipeline.CODEBOOK_BITS:
        raise ValueError(f"compress='deep': wspec.bits is the index width (2^bits shared weights per layer) and "
                         f"must be <= {pipeline.CODEBOOK_BITS}, got {wspec.bits}")
    if compress is None and wspec.scheme == "binary" and sparsity > 0:
        raise ValueError("scheme 'binary' has no zero level: pruned weights cannot be stored as 0 "
                         "(use symmetric, affine, pow2, ternary or a block format)")
    if compress is None and wspec.scheme == "kmeans" and sparsity > 0:
        raise ValueError("scheme 'kmeans' clusters the zeros of pruned weights away; use compress='deep' "
                         "(k-means over the kept weights only)")
    return net, sparsity, pattern


def _quantized_layer(net_d, op, wspec):
    """The QTensor of one layer as `prepared_weight` quantizes it ((out, K) matrix)."""
    from qsim.quant import quantize

    params = net_d.weights()
    w2 = params[f"{op.name}.w"].reshape(op.weight_shape[0], -1)
    value_range = None
    if wspec.granularity == "global":
        allw = np.concatenate([params[f"{o.name}.w"].ravel() for o in net_d.arch.mac_ops])
        value_range = (float(allw.min()), float(allw.max()))
    axis = 0 if wspec.granularity == "channel" else None if wspec.granularity in ("tensor", "global") else -1
    return quantize(w2, wspec, axis=axis, value_range=value_range)


def _codes_2d(pw, op) -> np.ndarray:
    """(out, K) integer codes the kernels receive (PreparedWeight is (K, out) or OIHW)."""
    from qsim.nets.models import Linear

    if isinstance(op, Linear) or pw.path == "int_grouped":
        return np.asarray(pw.q).T
    return np.asarray(pw.q).reshape(op.weight_shape[0], -1)


def _zero_codes_2d(pw, shape) -> np.ndarray:
    zp = np.asarray(pw.zero_point)
    if zp.ndim == 0:
        return np.broadcast_to(zp, shape)
    if zp.ndim == 1:                      # per output channel
        return np.broadcast_to(zp[:, None], shape)
    g = pw.group_size                    # (G, out) per group along K
    return np.repeat(zp.T, g, axis=1)[:, :shape[1]]


def check_masked_codes(net_d, wspec, masks: dict) -> None:
    """Every pruned weight reaches the kernels as its zero point (or 0.0 on the float path)."""
    from qsim.nets.quant_exec import prepared_weight

    for op in net_d.arch.mac_ops:
        pw = prepared_weight(net_d.name, op.name, wspec)
        pruned = ~masks[op.name].reshape(op.weight_shape[0], -1)
        if pw.path in ("int", "int_grouped"):
            q = _codes_2d(pw, op)
            zp = _zero_codes_2d(pw, q.shape)
            bad = int(np.count_nonzero(q[pruned] != zp[pruned]))
        else:
            bad = int(np.count_nonzero(pw.dequantized.reshape(pruned.shape)[pruned] != 0))
        if bad:
            raise ValueError(f"layer {op.name!r}: {bad} pruned weights are not zero after quantization with "
                             f"{wspec.label()} (the scheme has no exact zero level)")


def _sqnr(ref, test) -> float:
    ref, test = np.asarray(ref, np.float64), np.asarray(test, np.float64)
    noise = float(np.sum((ref - test) ** 2))
    sig = float(np.sum(ref ** 2))
    if noise == 0.0:
        return float("inf")
    return 10.0 * math.log10(sig / noise) if sig > 0 else float("-inf")


def _layer_storage(op, pattern: str, qt, mask, compress, dc=None) -> storage.LayerStorage:
    name = op.name
    m2 = mask.reshape(op.weight_shape[0], -1)
    if compress == "deep":
        idx = dc.indices[name].reshape(m2.shape)[m2]
        k = 1 << dc.bits
        meta = k * pipeline.CODEBOOK_BITS + 32           # int8 codebook + its fp32 scale
        return storage.best_huffman_csr(name, m2, idx, k, meta)
    meta = qt.storage_bits - qt.size * qt.bits          # scales, zero points, codebook, tensor scale
    b = qt.bits
    nm = masks_mod.parse_nm(pattern)
    if nm is not None:
        return storage.n_m(name, m2, b, nm[0], nm[1], meta) if not m2.all() else storage.dense(name, m2.size, b, meta)
    if pattern == "channel":
        return min((storage.channel(name, m2, b, meta), storage.dense(name, m2.size, b, meta)), key=lambda s: s.bits)
    return min((storage.dense(name, m2.size, b, meta), storage.bitmask(name, m2, b, meta),
                storage.best_csr_relative(name, m2, b, meta)), key=lambda s: s.bits)


def evaluate_pruned(name, wspec, aspec, *, sparsity=None, sparsity_pattern=None, fine_tune_epochs=0, compress=None,
                    prune_seed=0, steps=1, layers=None, **eval_kwargs) -> dict:
    """`qsim.nets.evaluate` of the pruned network (see the module doc). `steps` > 1 prunes
    iteratively; `layers` (names) prunes only those MAC layers (e.g. N:M where K allows)."""
    from qsim.nets import evaluate
    from qsim.nets.quant_exec import float_reference, one_blas_thread
    from qsim.quant import QuantSpec

    net, sparsity, pattern = check_request(name, wspec, aspec, sparsity, sparsity_pattern, fine_tune_epochs,
                                           compress, layers)
    layers = None if layers is None else sorted(layers)
    if compress == "deep":
        dc = pipeline.deep_compressed(net, sparsity, pattern, wspec.bits, prune_seed, fine_tune_epochs, steps=steps,
                                      layers=layers)
        params, masks, achieved = dc.params, dc.masks, dc.sparsity
        # the weights before sharing: "after pruning" in the error analysis (cached, no recomputation)
        before_quant = pipeline.pruned_model(net, sparsity, pattern, prune_seed, fine_tune_epochs, steps=steps,
                                             layers=layers).params
        wexec = QuantSpec(bits=pipeline.CODEBOOK_BITS, scheme="symmetric", restricted=True, granularity="tensor")
        key = pipeline.cache_key(net, "deep-eval", sparsity=sparsity, pattern=pattern, seed=prune_seed,
                                 fine_tune_epochs=fine_tune_epochs, steps=steps, bits=wspec.bits, layers=layers)
    else:
        dc = None
        pm = pipeline.pruned_model(net, sparsity, pattern, prune_seed, fine_tune_epochs, steps=steps, layers=layers)
        params, masks, achieved = pm.params, pm.masks, pm.sparsity
        before_quant = params
        wexec = wspec
        key = pipeline.cache_key(net, "prune-eval", sparsity=sparsity, pattern=pattern, seed=prune_seed,
                                 fine_tune_epochs=fine_tune_epochs, steps=steps, layers=layers)
    net_d = _derived_network(net, params, key)
    overrides = eval_kwargs.get("overrides")
    if overrides:
        raise ValueError("per-layer overrides are not supported together with pruning")
    with one_blas_thread():
        check_masked_codes(net_d, wexec, masks)
    if dc is not None:
        _check_shared_codes(net_d, wexec, dc)
    res = evaluate(net_d.name, wexec, aspec, **eval_kwargs)
    dense = evaluate(net.name, None, None, calib_size=eval_kwargs.get("calib_size", 256),
                     eval_size=eval_kwargs.get("eval_size"))
    n = res["config"]["eval_size"]
    with one_blas_thread():
        ref_dense, ref_pruned = float_reference(net.name), float_reference(net_d.name)
    dense_w = net.weights()
    per_layer, total_bits, total_w = [], 0, 0
    for op, entry in zip(net.arch.mac_ops, res["quantized"]["per_layer"]):
        qt = _quantized_layer(net_d, op, wexec)
        st = _layer_storage(op, pattern, qt, masks[op.name], compress, dc)
        w0 = np.asarray(dense_w[f"{op.name}.w"], np.float64).reshape(qt.shape)
        wp = np.asarray(before_quant[f"{op.name}.w"], np.float64).reshape(qt.shape)
        wq = qt.dequantize(np.float64)
        o0, op_ = ref_dense.outputs[op.name][:n], ref_pruned.outputs[op.name][:n]
        mk = masks[op.name]
        entry.update({"sparsity": float(1.0 - mk.mean()), "weight_bytes": st.bytes, "format": st.format,
                      "storage": st.as_dict(),
                      "weight_sqnr_db_pruning": _sqnr(w0, wp), "weight_mse_pruning": float(np.mean((w0 - wp) ** 2)),
                      "weight_sqnr_db_quant": _sqnr(wp, wq), "weight_mse_quant": float(np.mean((wp - wq) ** 2)),
                      "sqnr_db_pruning": _sqnr(o0, op_),
                      "mse_pruning": float(np.mean((np.asarray(o0, np.float64) - op_) ** 2))})
        total_bits += st.bits
        total_w += int(np.prod(op.weight_shape))
    weight_bytes = total_bits / 8.0
    q = res["quantized"]
    q["sparsity"] = float(achieved)
    q["weight_bytes"] = weight_bytes
    q["compression_ratio"] = storage.fp32_bytes(total_w) / weight_bytes
    q["pruning"] = {"pattern": pattern, "target_sparsity": sparsity, "fine_tune_epochs": int(fine_tune_epochs),
                    "steps": int(steps), "seed": int(prune_seed), "compress": compress,
                    "pruned_float_metric": res["float"]["metric"], "fp32_weight_bytes": storage.fp32_bytes(total_w)}
    if dc is not None:
        q["pruning"]["index_bits"] = dc.bits
        q["pruning"]["codebook_bits"] = pipeline.CODEBOOK_BITS
    res["network"] = net.name
    res["float"] = dense["float"]
    res["config"].update({"sparsity": sparsity, "sparsity_pattern": pattern, "fine_tune_epochs": int(fine_tune_epochs),
                          "compress": compress})
    return res


def _check_shared_codes(net_d, wexec, dc) -> None:
    """Deep Compression: the kernels receive exactly the stored codebook levels."""
    from qsim.nets.quant_exec import prepared_weight

    for op in net_d.arch.mac_ops:
        pw = prepared_weight(net_d.name, op.name, wexec)
        q = _codes_2d(pw, op).astype(np.int64)
        m2 = dc.masks[op.name].reshape(q.shape)
        want = dc.codebook_codes[op.name].astype(np.int64)[dc.indices[op.name].reshape(q.shape)]
        if not np.array_equal(q[m2], want[m2]):
            raise RuntimeError(f"layer {op.name!r}: integer codes differ from the stored shared weights")
