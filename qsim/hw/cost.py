"""Cost of layers and workloads on a profile: dispatch to the family model, flat reports.

All arithmetic runs on NumPy arrays over rows = layers × quant configs, so `cost_batch`
evaluates a whole sweep in one pass; `cost_layer` and `cost_workload` are the same code
on fewer rows. A report row is flat (one row of a study table): macs, cycles, latency_s,
utilization, bound, bytes_<level> (every memory level and dram), energy_mac_j,
energy_<level>_j, energy_static_j, energy_j (the sum of those), memory_bytes (stored
weights incl. scale/zero-point metadata), precision_used, fallback.

MAC layers are mapped onto the memory hierarchy per level (`qsim.hw.memory`: tiles and loop
order, the `mapping` column). Non-MAC layers (elementwise, pooling, softmax, norms) cost
memory traffic only: inputs read and outputs written once at every level holding activations,
at the activation width (norm parameters at 16 bits) — unless the profile's runtime fuses
them into the producing MAC kernel (`qsim.hw.fusion`, the `fused_into` column), when they
cost only the extra operands they read. A layer whose activations (inputs + outputs) fit the
on-chip level that holds them keeps them there (`keep_activations_on_chip`, default true):
DRAM then sees weights only. Every unfused layer is a kernel and pays the profile's fixed
`overheads` (launch / dispatch), reported as `overhead_s` and included in cycles and latency.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from qsim.hw import cpu_simd, fpga, gpu_tensor_core, systolic_array
from qsim.hw import sparsity, tech
from qsim.hw.energy import mac_energy_pj
from qsim.hw.fusion import fusion_plan
from qsim.hw.memory import activation_capacity, hierarchy_traffic, level_bandwidths, mapping_text, pe_local_levels
from qsim.hw.profiles import load_profile
from qsim.hw.quant import DYNAMIC_SOURCE_BYTES, CostQuant
from qsim.hw.schema import PRECISION_BITS

FAMILY_MODELS = {
    "cpu_simd": cpu_simd, "gpu_tensor_core": gpu_tensor_core,
    "systolic_array": systolic_array, "fpga": fpga,
}
_GRAN = {"tensor": 0, "channel": 1, "group": 2}
_NUMERIC_PLAN_KEYS = ("peak", "rate", "k_mma", "k_div", "passes", "lanes", "sp_channel_keep", "sp_store_keep",
                      "sp_meta_bits", "sp_compute_div", "sp_mac_frac", "sp_rf_frac", "sp_decode")


_PLAN_CACHE: dict = {}


def _plan(profile, q: CostQuant) -> dict:
    """Per (profile, config) constants incl. MAC energy; cached (profiles are immutable in use).

    The plan depends only on operand widths/formats (precision, rate) and the accumulator
    (adder energy), so configs differing in granularity or scale format share one entry.
    """
    key = (id(profile), q.w_bits, q.a_bits, q.w_format, q.a_format, q.acc_bits, q.sparsity, q.sparsity_pattern,
           q.act_sparsity)
    hit = _PLAN_CACHE.get(key)
    if hit is not None and hit[0] is profile:
        return hit[1]
    if len(_PLAN_CACHE) > 20000:
        _PLAN_CACHE.clear()
    prm = _make_plan(profile, q)
    _PLAN_CACHE[key] = (profile, prm)
    return prm


_FLOAT_SIGNIFICAND = {"fp4": 2, "fp6": 4}  # MX/NVFP element formats the float table does not list (E2M1, E2M3)


def mac_energy(profile, precision: str, w_bits: int, a_bits: int, acc_bits: int, exact_bits: bool) -> float:
    """pJ per MAC on this profile: its `mac_energy_pj` override (with a source) or the technology table
    (`qsim.hw.tech.mac_pj`: multiplier ∝ b_w·b_a, adder ∝ accumulator bits, floats from Horowitz) at its node.

    `exact_bits`: the unit's energy follows the operands' own widths (bit-flexible arrays, FPGA fabric);
    otherwise a unit executing `precision` spends that precision's energy whatever the operands.
    """
    node, volts = profile.technology_nm, profile.voltage_v
    if profile.mac_energy_pj:
        scale = tech.node_scale(node, volts)
        prec = "int8" if exact_bits else precision
        return mac_energy_pj(profile.mac_energy_pj, prec, w_bits, a_bits, acc_bits, scale)
    if precision in PRECISION_BITS and (precision.startswith("int") or precision == "binary"):
        bw, ba = (w_bits, a_bits) if exact_bits else (PRECISION_BITS[precision],) * 2
        return float(tech.mac_pj(bw, ba, acc_bits, node_nm=node, volts=volts))
    if exact_bits:  # a bit-level unit doing an integer product of the operands' widths
        return float(tech.mac_pj(w_bits, a_bits, acc_bits, node_nm=node, volts=volts))
    acc = 16 if acc_bits == 16 else 32
    if precision in _FLOAT_SIGNIFICAND:
        sig = _FLOAT_SIGNIFICAND[precision]
        return float(tech.float_mul_pj("int", "int", sig, sig, node, volts) + tech.float_add_pj(acc, node, volts))
    return float(tech.mac_pj(None, None, acc, precision, precision, node_nm=node, volts=volts))


def _make_plan(profile, q: CostQuant) -> dict:
    fam = FAMILY_MODELS[profile.family]
    prm = dict(fam.plan(profile, q))
    exact = bool(prm.get("exact_bits")) and q.w_format == "int" and q.a_format == "int"
    prm["mac_pj"] = fam.mac_energy(profile, prm, q) if hasattr(fam, "mac_energy") else \
        mac_energy(profile, prm["precision"], q.w_bits, q.a_bits, q.acc_bits, exact)
    prm.update({f"sp_{k}": v for k, v in sparsity.plan(profile, q).items()})
    prm["decode_pj"] = float(tech.int_add_pj(8, profile.technology_nm, profile.voltage_v))
    return prm


def peak_macs_per_cycle(profile, q: CostQuant) -> float:
    """Chip-wide peak MACs per cycle for a quant config (after any precision fallback)."""
    return float(_plan(load_profile(profile), q)["peak"])


def _as_quant(q) -> CostQuant:
    if isinstance(q, CostQuant):
        return q
    raise TypeError(f"quant config must be a CostQuant or a dict {{layer name: CostQuant, 'default': CostQuant}}, "
                    f"got {type(q).__name__}")


def quant_for(q, layer_name: str) -> CostQuant:
    """The CostQuant of one layer from a CostQuant or a per-layer dict with a 'default'."""
    if isinstance(q, Mapping):
        if layer_name in q:
            return _as_quant(q[layer_name])
        if "default" not in q:
            raise ValueError(f"per-layer quant dict has no entry for layer {layer_name!r} and no 'default'")
        return _as_quant(q["default"])
    return _as_quant(q)


def _layer_arrays(layers) -> dict:
    """Shape arrays of layers (non-MAC layers get M=N=K=1 placeholders and is_mac False)."""
    n = len(layers)
    cols = {k: np.zeros(n) for k in ("M", "Ng", "K", "N", "GB", "a_el", "b_el", "c_el", "macs", "in_el",
                                     "out_el", "w_el")}
    is_mac = np.zeros(n, dtype=bool)
    b_is_w = np.ones(n, dtype=bool)
    for i, layer in enumerate(layers):
        g = layer.gemm
        if g is not None:
            is_mac[i] = True
            b_is_w[i] = g.b_is_weight
            cols["M"][i], cols["N"][i], cols["K"][i] = g.M, g.N, g.K
            cols["Ng"][i] = g.N // g.groups
            cols["GB"][i] = g.groups * g.batch
            cols["a_el"][i], cols["b_el"][i], cols["c_el"][i] = g.a_elements, g.b_elements, g.c_elements
            cols["macs"][i] = g.macs
            cols["out_el"][i] = layer.output_elements
        else:
            for k in ("M", "Ng", "K", "N", "GB"):
                cols[k][i] = 1
            cols["in_el"][i], cols["out_el"][i] = layer.input_elements, layer.output_elements
            cols["w_el"][i] = layer.weight_elements
    cols["is_mac"], cols["b_is_w"] = is_mac, b_is_w
    return cols


def _quant_arrays(qs: list[CostQuant]) -> dict:
    return {
        "w_bits": np.array([q.w_bits for q in qs], dtype=float),
        "meta": np.array([q.w_meta_bits_per_group for q in qs], dtype=float),
        "tsb": np.array([q.tensor_scale_bits if q.granularity != "tensor" and not q.codebook_bits else 0
                         for q in qs], dtype=float),
        "gran": np.array([_GRAN[q.granularity] for q in qs]),
        "gs": np.array([q.group_size or 1 for q in qs], dtype=float),
        "a_bpe": np.array([q.a_bits_per_element for q in qs], dtype=float),
        "a_bits": np.array([q.a_bits for q in qs], dtype=float),
        "dyn": np.array([q.act_mode != "static" for q in qs], dtype=bool),
        "acc": np.array([q.acc_bits for q in qs], dtype=float),
    }


def _evaluate(profile, L: dict, Q: dict, P: dict, F: dict) -> dict:
    """Core vectorised model. L: layer arrays, Q: quant arrays, P: plan arrays, F: fusion arrays (length R)."""
    fam = FAMILY_MODELS[profile.family]
    is_mac, fused = L["is_mac"], F["fused"]
    ck = np.where(is_mac & L["b_is_w"], P["sp_channel_keep"], 1.0)
    if np.any(ck < 1.0):  # channel pruning: a smaller dense layer (fewer filters, outputs, MACs)
        L = dict(L, Ng=np.maximum(1.0, np.ceil(L["Ng"] * ck)), N=np.maximum(1.0, np.ceil(L["N"] * ck)),
                 b_el=L["b_el"] * ck, c_el=L["c_el"] * ck, macs=L["macs"] * ck)
    M, Ng, K, GB = L["M"], L["Ng"], L["K"], L["GB"]
    # Exact stored metadata (CostQuant.w_storage_bits): one scale (+ zero point) per group — ceil(K / group) groups
    # per output row, the last one ragged — or per channel, or per tensor; plus a second-level tensor scale (NVFP4).
    groups = np.where(Q["gran"] == 2, L["N"] * np.ceil(K / Q["gs"]), np.where(Q["gran"] == 1, L["N"], 1.0))
    meta_per_elem = (groups * Q["meta"] + Q["tsb"]) / (L["N"] * K)
    keep = np.where(L["b_is_w"], P["sp_store_keep"], 1.0)  # compressed sparse weights: kept values + indices
    w_bpe = keep * (Q["w_bits"] + np.where(L["b_is_w"], P["sp_meta_bits"], 0.0)) + meta_per_elem
    ab, accb = Q["a_bpe"] / 8.0, Q["acc"] / 8.0
    bb = np.where(L["b_is_w"], w_bpe / 8.0, ab)
    a_bytes, b_bytes, c_bytes = L["a_el"] * ab, L["b_el"] * bb, L["c_el"] * ab

    eff = profile.compute_efficiency
    compute = np.ceil(fam.compute_cycles(profile, P, M, Ng, K, GB) / eff / np.where(L["b_is_w"], P["sp_compute_div"],
                                                                                      1.0))
    cmap = fam.compute_map(profile, P, M, Ng, K)
    # Non-MAC layers: read inputs (+ params), write outputs once at every level; fused ones only
    # read their extra operands (a residual add's second input).
    nm_read = np.where(fused, F["extra_el"] * ab, L["in_el"] * ab + L["w_el"] * 2.0)
    nm_write = np.where(fused, 0.0, L["out_el"] * ab)
    act_bytes = np.where(is_mac, a_bytes + c_bytes, nm_read - L["w_el"] * 2.0 * ~fused + nm_write)
    resident = act_bytes <= activation_capacity(profile)
    per_level, maps = hierarchy_traffic(profile, cmap, M, Ng, K, a_bytes, b_bytes, c_bytes, L["c_el"], ab, bb,
                                        accb, resident, mask=is_mac, macs=L["macs"],
                                        stream_a_bytes=L["M"] * L["K"] * GB * ab if profile.family == "systolic_array"
                                        else None,
                                        elem_bytes={"inputs": Q["a_bits"] / 8.0, "weights": Q["w_bits"] / 8.0,
                                                    "outputs": accb})
    compute = np.where(is_mac, compute, 0.0)
    out: dict = {"macs": np.where(is_mac, L["macs"], 0.0), "compute_cycles": compute}
    bws = level_bandwidths(profile)
    mem_cycles = {}
    holds = {m.name: set(m.holds) for m in profile.memory}
    local = pe_local_levels(profile)
    # dynamic activation ranges: one more read of each MAC layer's fp16 input (a min/max or per-token reduction)
    dyn_read = np.where(is_mac & Q["dyn"], L["a_el"] * DYNAMIC_SOURCE_BYTES, 0.0)
    for name, (rd, w) in per_level.items():
        r = rd["inputs"] + rd["weights"] + rd["outputs"]
        if name == "dram" or "inputs" in holds[name]:
            r = r + (np.where(resident, 0.0, dyn_read) if name == "dram" else dyn_read)
        if name == "dram":
            nm_r = np.where(resident, np.where(fused, 0.0, L["w_el"] * 2.0), nm_read)
            nm_w = np.where(resident, 0.0, nm_write)
        else:
            nm_r = nm_read if "inputs" in holds[name] else 0.0
            nm_w = nm_write if "outputs" in holds[name] else 0.0
        r, w = np.where(is_mac, r, nm_r), np.where(is_mac, w, nm_w)
        out[f"read_bytes_{name}"], out[f"write_bytes_{name}"] = r, w
        out[f"bytes_{name}"] = r + w
        if name not in local:  # a PE's register file is built to feed its MAC every cycle: never the bound
            mem_cycles[name] = (r + w) / bws[name]
    names = list(mem_cycles)
    stack = np.vstack([compute] + [mem_cycles[n] for n in names])
    if not profile.memory_stalls:  # memory sized never to stall the array (SCALE-Sim CALC)
        stack[1:] = np.where(is_mac, 0.0, stack[1:])
    if profile.double_buffering:
        cycles = stack.max(axis=0)
    else:
        cycles = compute + stack[1:].max(axis=0)
    if profile.family == "systolic_array":  # a double-buffered weight tile's first load has nothing to hide behind
        stall = systolic_array.exposed_fill_cycles(profile, K, Ng, bb) * (is_mac & L["b_is_w"])
        cycles = cycles + stall
    ov = profile.overheads
    overhead_cycles = np.where(fused, 0.0, np.round(ov.per_kernel_s * profile.clock) + ov.per_layer_cycles)
    cycles = np.where(fused & (cycles == 0), 0.0, np.ceil(np.maximum(cycles, 1.0))) + overhead_cycles
    bound_idx = stack.argmax(axis=0)
    out["bound_idx"] = bound_idx
    out["bound_names"] = ["compute"] + names
    out["cycles"] = cycles
    out["stall_cycles"] = cycles - compute - overhead_cycles
    out["overhead_s"] = overhead_cycles / profile.clock
    out["latency_s"] = cycles / profile.clock
    peak = P["peak"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["utilization"] = np.where(cycles > 0, out["macs"] / (cycles * peak), 0.0)
    out["peak_macs_per_cycle"] = peak * np.ones_like(cycles)
    # Energy by component.
    out["energy_mac_j"] = out["macs"] * P["mac_pj"] * np.where(L["b_is_w"], P["sp_mac_frac"], 1.0) * 1e-12
    # decoding compressed sparse weights: one index add per kept value, every time the weights are read in
    out["energy_decode_j"] = np.where(is_mac, L["b_el"] * keep * P["sp_decode"] * P["decode_pj"], 0.0) * 1e-12
    total = out["energy_mac_j"] + out["energy_decode_j"]
    for level in profile.memory:
        e = (out[f"read_bytes_{level.name}"] * level.read_pj_per_byte
             + out[f"write_bytes_{level.name}"] * level.write_pj_per_byte) * 1e-12
        if level.name in local:  # zero-gated MACs skip their register-file accesses too
            e = e * np.where(L["b_is_w"], P["sp_rf_frac"], 1.0)
        out[f"energy_{level.name}_j"] = e
        total += e
    out["energy_dram_j"] = out["bytes_dram"] * 8.0 * profile.dram.energy_pj_per_bit * 1e-12
    out["energy_static_j"] = profile.static_power * out["latency_s"]
    out["energy_j"] = total + out["energy_dram_j"] + out["energy_static_j"]
    # Roofline: MACs per DRAM byte and the attainable MACs/cycle at that intensity.
    with np.errstate(divide="ignore", invalid="ignore"):
        out["intensity_macs_per_dram_byte"] = np.where(out["bytes_dram"] > 0, out["macs"] / out["bytes_dram"], 0.0)
    out["roofline_macs_per_cycle"] = np.minimum(peak, bws["dram"] * out["intensity_macs_per_dram_byte"])
    out["memory_bytes"] = np.where(is_mac, np.where(L["b_is_w"], b_bytes, 0.0), L["w_el"] * 2.0)
    out["_maps"], out["_cmap"] = maps, cmap
    return out


def _plan_arrays(plans: list[dict], index: np.ndarray) -> dict:
    P = {}
    for key in _NUMERIC_PLAN_KEYS + ("mac_pj", "decode_pj"):
        if key in plans[0]:
            P[key] = np.array([p[key] for p in plans], dtype=float)[index]
    return P


def _index(per_row_q: list[CostQuant]) -> tuple[list[CostQuant], np.ndarray]:
    uniq = list(dict.fromkeys(per_row_q))
    pos = {q: i for i, q in enumerate(uniq)}
    return uniq, np.array([pos[q] for q in per_row_q])


def _fusion_arrays(profile, layers) -> dict:
    into, notes, extra = fusion_plan(layers, profile.fusion)
    return {"fused": np.array([bool(x) for x in into]), "extra_el": extra, "into": into, "notes": notes}


def _check_nm(layers, uniq: list[CostQuant]) -> None:
    """An N:M pattern must divide every weight layer's reduction dimension: say which layer it does not."""
    from qsim.hw.quant import nm_pattern

    for q in uniq:
        nm = nm_pattern(q.sparsity_pattern) if q.sparsity else None
        if not nm:
            continue
        bad = [f"{layer.name} (K={layer.gemm.K})" for layer in layers
               if layer.gemm is not None and layer.gemm.b_is_weight and layer.gemm.K % nm[1]]
        if bad:
            raise ValueError(f"sparsity pattern {q.sparsity_pattern} needs the reduction dimension K of every weight "
                             f"layer divisible by {nm[1]}; not: {', '.join(bad[:5])}{' …' if len(bad) > 5 else ''}")


def _run(profile, layers, uniq: list[CostQuant], qidx: np.ndarray, L: dict | None = None, layer_index=None):
    """Evaluate rows: row i uses layer `layer_index[i]` (or i) and config `uniq[qidx[i]]`."""
    _check_nm(layers, uniq)
    plans = [_plan(profile, q) for q in uniq]
    Q = {k: v[qidx] for k, v in _quant_arrays(uniq).items()}
    P = _plan_arrays(plans, qidx)
    if L is None:
        L = _layer_arrays(layers)
    F = _fusion_arrays(profile, layers)
    if layer_index is not None:
        L = {k: v[layer_index] for k, v in L.items()}
        F = {"fused": F["fused"][layer_index], "extra_el": F["extra_el"][layer_index]}
    res = _evaluate(profile, L, Q, P, F)
    res["_fusion"] = F
    return res, plans, qidx


_REPORT_SKIP = ("bound_idx", "bound_names")


def _records(profile, layers, res, plans, qidx, per_row_q) -> list[dict]:
    rows = []
    names = res["bound_names"]
    keys = [k for k in res if k not in _REPORT_SKIP and not k.startswith(("read_bytes_", "write_bytes_", "_"))]
    fusion = res["_fusion"]
    for i, layer in enumerate(layers):
        plan, q = plans[qidx[i]], per_row_q[i]
        rec = {"name": layer.name, "kind": type(layer).__name__, "profile": profile.name}
        for k in keys:
            v = res[k][i]
            # Counts are exact integers; bytes stay float (scale metadata amortises to fractions).
            rec[k] = int(v) if k in ("macs", "cycles", "compute_cycles", "stall_cycles") else float(v)
        mac = bool(layer.gemm is not None)
        fused = fusion["into"][i]
        rec["bound"] = "fused" if fused else names[int(res["bound_idx"][i])]
        rec["fused_into"] = fused
        rec["fusion_note"] = fusion["notes"][i]
        rec["mapping"] = mapping_text(profile, res["_cmap"], res["_maps"], i) if mac else ""
        rec["sparsity_used"] = plan["sp_used"] if mac else ""
        rec["precision_used"] = plan["precision"] if mac else "-"
        rec["fallback"] = plan.get("fallback", "") if mac else ""
        if "path" in plan and mac:
            rec["path"] = plan["path"]
        rec.update(w_bits=q.w_bits, a_bits=q.a_bits, granularity=q.granularity, group_size=q.group_size,
                   w_format=q.w_format, a_format=q.a_format)
        rows.append(rec)
    return rows


def cost_layer(layer, q, profile) -> dict:
    """Flat cost record of one layer (q: CostQuant or per-layer dict; profile: name, path or object)."""
    profile = load_profile(profile)
    qq = quant_for(q, layer.name)
    res, plans, qidx = _run(profile, [layer], [qq], np.zeros(1, dtype=int))
    return _records(profile, [layer], res, plans, qidx, [qq])[0]


def cost_workload(workload, q, profile) -> pd.DataFrame:
    """One row per layer (MAC and non-MAC); `totals(df)` sums it. attrs carry profile and workload."""
    profile = load_profile(profile)
    layers = list(workload.layers if hasattr(workload, "layers") else workload)
    if not layers:
        raise ValueError("workload has no layers")
    per_row = [quant_for(q, layer.name) for layer in layers]
    res, plans, qidx = _run(profile, layers, *_index(per_row))
    df = pd.DataFrame(_records(profile, layers, res, plans, qidx, per_row))
    df.attrs.update(profile=profile.name, workload=getattr(workload, "name", ""),
                    peak_macs_per_cycle=float(plans[0]["peak"]), clock_hz=profile.clock)
    return df


_SUM_COLS_PREFIX = ("bytes_", "energy_")


def totals(df: pd.DataFrame) -> dict:
    """Whole-workload totals of a `cost_workload` frame (layers run one after another)."""
    out = {"macs": int(df["macs"].sum()), "cycles": int(df["cycles"].sum()),
           "compute_cycles": int(df["compute_cycles"].sum()), "latency_s": float(df["latency_s"].sum())}
    for c in df.columns:
        if c.startswith(_SUM_COLS_PREFIX):
            out[c] = float(df[c].sum())
    out["memory_bytes"] = float(df["memory_bytes"].sum())
    out["energy_pj_per_mac"] = out["energy_j"] / out["macs"] * 1e12 if out["macs"] else 0.0
    peak = float((df["peak_macs_per_cycle"] * df["cycles"]).sum())
    out["utilization"] = out["macs"] / peak if peak else 0.0
    used = sorted({u for u in df.get("sparsity_used", []) if u})
    out["sparsity_used"] = "; ".join(used)
    bounds = df.groupby("bound")["cycles"].sum()
    out["bound"] = str(bounds.idxmax()) if len(bounds) else "compute"
    fb = sorted({f for f in df["fallback"] if f})
    out["fallback"] = "; ".join(fb)
    return out


def cost_batch(workload, qs, profile, layer_arrays: dict | None = None) -> pd.DataFrame:
    """Totals for many quant configs at once (one vectorised pass over layers × configs).

    qs: list of CostQuant or per-layer dicts. Returns one row per config with config index,
    label, macs, cycles, latency_s, utilization, bytes_<level>, energy_* and memory_bytes.
    """
    profile = load_profile(profile)
    layers = list(workload.layers if hasattr(workload, "layers") else workload)
    if not layers:
        raise ValueError("workload has no layers")
    qs = list(qs)
    if not qs:
        raise ValueError("cost_batch needs at least one quant config")
    nl, nq = len(layers), len(qs)
    L = layer_arrays if layer_arrays is not None else _layer_arrays(layers)
    if any(isinstance(q, Mapping) for q in qs):
        per_row = []
        for q in qs:
            per_row += [quant_for(q, layer.name) for layer in layers] if isinstance(q, Mapping) else [_as_quant(q)] * nl
        uniq, qidx = _index(per_row)
    else:  # one config per block of layers: no per-row hashing
        uniq, first = _index([_as_quant(q) for q in qs])
        qidx = np.repeat(first, nl)
    layer_index = np.tile(np.arange(nl), nq)
    res, plans, qidx = _run(profile, layers, uniq, qidx, L=L, layer_index=layer_index)
    out = {"config": np.arange(nq)}
    out["label"] = [q.label() if isinstance(q, CostQuant) else "mixed" for q in qs]
    for k, v in res.items():
        if k in _REPORT_SKIP or k.startswith("_") or k in ("utilization", "peak_macs_per_cycle", "intensity_macs_per_dram_byte",
                                      "roofline_macs_per_cycle") or k.startswith(("read_bytes_", "write_bytes_")):
            continue
        out[k] = v.reshape(nq, nl).sum(axis=1)
        if k in ("macs", "cycles", "compute_cycles", "stall_cycles"):
            out[k] = out[k].astype(np.int64)  # exact: integer-valued floats far below 2**53
    busy = (res["peak_macs_per_cycle"] * res["cycles"]).reshape(nq, nl).sum(axis=1)
    out["utilization"] = out["macs"] / busy
    # Dominant bound per config: the bound holding the most cycles over its layers.
    names = res["bound_names"]
    idx, cyc = res["bound_idx"].reshape(nq, nl), res["cycles"].reshape(nq, nl)
    per_bound = np.stack([np.where(idx == b, cyc, 0.0).sum(axis=1) for b in range(len(names))], axis=1)
    out["bound"] = [names[i] for i in per_bound.argmax(axis=1)]
    mac_rows = L["is_mac"][layer_index].reshape(nq, nl)
    prec, fb = [], []
    if not any(isinstance(q, Mapping) for q in qs) and mac_rows.any():
        first_plans = [plans[qidx[c * nl]] for c in range(nq)]
        prec = [pl["precision"] for pl in first_plans]
        fb = [pl.get("fallback", "") for pl in first_plans]
    for c in range(nq if not prec else 0):
        used = {plans[qidx[c * nl + j]]["precision"] for j in np.nonzero(mac_rows[c])[0]}
        notes = {plans[qidx[c * nl + j]].get("fallback", "") for j in np.nonzero(mac_rows[c])[0]}
        prec.append(used.pop() if len(used) == 1 else ("mixed" if used else "-"))
        fb.append("; ".join(sorted(n for n in notes if n)))
    out["precision_used"], out["fallback"] = prec, fb
    df = pd.DataFrame(out)
    df.insert(2, "profile", profile.name)
    return df
