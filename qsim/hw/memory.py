"""Mapping onto a memory hierarchy: per-level tiles and loop order, bytes moved per level.

Vectorised over rows = layers × configs. A GEMM instance (M, Ng, K) repeats GB = groups ×
batch times; operand bytes A (inputs), B (weights), C (outputs) are whole-layer totals.
Memory levels are listed innermost first; consecutive operand-disjoint levels form a *tier*
(SCALE-Sim's ifmap/filter/ofmap SRAMs; TPU v1's weight FIFO beside its accumulators).

A consumer (the compute unit, or a tier) holding tiles (tm, tn, tk) and looping over trip
counts nM, nN, nK draws from the next level, whatever the order of the two outer loops,
an amount set by its innermost loop alone (the operand that loop leaves untouched stays):

    innermost k (output-stationary):  A·nN + B·nM + C
    innermost m (weight-stationary):  A·nN + B    + C + 2·(nK−1)·C_acc   (partial sums)
    innermost n (input-stationary):   A    + B·nM + C + 2·(nK−1)·C_acc

The compute unit's tile and order come from its family (a systolic array's dataflow, a GPU
CTA tile, a CPU register tile). Each tier then picks the tile and order that minimise the
bytes *its* operands draw from the next level, under every level's capacity (half of it when
double buffered); operands a tier does not hold stream through it with the inner reuse. The
search is what Timeloop's and ZigZag's mappers do by enumeration, here in closed form: the
trip count of one free dimension comes from a fixed geometric candidate set, the other free
dimension is the largest that fits (every capacity constraint is linear in it). Fewer bits
never move more bytes: smaller elements only enlarge the feasible tiles.
"""

from __future__ import annotations

import numpy as np

OPS = ("inputs", "weights", "outputs")
ORDERS = ("output-stationary", "weight-stationary", "input-stationary")  # innermost loop k, m, n
_ORDER_LOOPS = (("m", "n", "k"), ("k", "n", "m"), ("k", "m", "n"))  # (enumerated, solved, fixed)
_DIMS = {"inputs": ("m", "k"), "weights": ("k", "n"), "outputs": ("m", "n")}
_TRIPS = np.array([1, 2, 3, 4, 6, 8, 12, 16, 32, 64, 256, 1024], dtype=np.float64)[:, None]


def tiers(profile) -> list[list]:
    """Group memory levels (innermost first) into tiers of operand-disjoint levels."""
    out: list[list] = []
    for level in profile.memory:
        if out and all(not (set(level.holds) & set(other.holds)) for other in out[-1]):
            out[-1].append(level)
        else:
            out.append([level])
    return out


def reuse(order, nM, nN, nK):
    """Multipliers (rA, rB, pC): bytes drawn = A·rA + B·rB + C + 2·pC·C_acc (order index 0/1/2)."""
    rA = np.where(order == 2, 1.0, nN)
    rB = np.where(order == 1, 1.0, nM)
    pC = np.where(order == 0, 0.0, nK - 1.0)
    return rA, rB, pC


def _served(op, r, a_bytes, b_bytes, c_bytes, c_acc_bytes):
    """(read bytes, write bytes) a level serves for one operand with reuse multiplier r."""
    if op == "inputs":
        return a_bytes * r, 0.0 * a_bytes
    if op == "weights":
        return b_bytes * r, 0.0 * b_bytes
    return r * c_acc_bytes, c_bytes + r * c_acc_bytes


def map_tier(tier, dims: dict, mins: dict, coef: dict, totals: dict, div: float, spread: bool = False,
             weight: dict | None = None) -> dict:
    """Best (tm, tn, tk, order) for one tier; arrays over rows. See the module docstring.

    dims/mins: {"m","n","k"} problem sizes and smallest useful tiles; coef: bytes per element
    of inputs/weights/outputs (partial sums at accumulator width); totals: whole-layer bytes
    {"inputs","weights","outputs","psum"} the objective weighs. `spread`: the level's instances
    hold one tile between them (PE-local buffers of a spatial array) rather than one tile each
    (a cache per core or SM). `weight`: cost of one byte per operand drawn from the level above (1 for
    traffic; pJ/byte to minimise energy; cycles/byte to minimise latency).
    """
    w = weight or {"inputs": 1.0, "weights": 1.0, "outputs": 1.0}
    held = {op for level in tier for op in level.holds}
    best_cost = best = None
    for order, (e, s, f) in enumerate(_ORDER_LOOPS):
        t = {e: np.clip(np.ceil(dims[e] / _TRIPS), mins[e], dims[e]), f: mins[f] + 0.0 * _TRIPS}
        t_s = dims[s] + 0.0 * _TRIPS
        ok = np.ones_like(t_s, dtype=bool)
        for level in tier:
            cap, const, slope = level.capacity * (level.instances if spread else 1) / div, 0.0, 0.0
            for op in level.holds:
                d1, d2 = _DIMS[op]
                if s in (d1, d2):
                    slope = slope + coef[op] * t[d2 if d1 == s else d1]
                else:
                    const = const + coef[op] * t[d1] * t[d2]
            room = cap - const
            with np.errstate(divide="ignore", invalid="ignore"):
                fit = np.where(slope > 0, np.floor(room / np.where(slope > 0, slope, 1.0)), np.inf)
            t_s = np.minimum(t_s, fit)
            ok &= room >= 0
        ok &= t_s >= mins[s]
        t[s] = np.maximum(t_s, mins[s])
        trips = {d: np.ceil(dims[d] / t[d]) for d in "mnk"}
        rA, rB, pC = reuse(np.full(1, order), trips["m"], trips["n"], trips["k"])
        cost = (("inputs" in held) * w["inputs"] * totals["inputs"] * rA
                + ("weights" in held) * w["weights"] * totals["weights"] * rB
                + ("outputs" in held) * w["outputs"] * 2.0 * totals["psum"] * pC)
        cost = np.where(ok, cost, np.inf)
        i = np.argmin(cost, axis=0)
        cols = np.arange(cost.shape[1])
        c = cost[i, cols]
        cand = {"tm": t["m"][i, cols], "tn": t["n"][i, cols], "tk": t["k"][i, cols], "order": np.full(c.shape, order)}
        if best is None:
            best, best_cost = cand, c
        else:
            better = c < best_cost
            best = {k: np.where(better, cand[k], best[k]) for k in best}
            best_cost = np.where(better, c, best_cost)
    # Nothing fits (buffers smaller than the smallest tiles): stream with the smallest tiles.
    none = ~np.isfinite(best_cost)
    if np.any(none):
        fallback = {"tm": mins["m"], "tn": mins["n"], "tk": mins["k"], "order": 0.0}
        best = {k: np.where(none, fallback[k], v) for k, v in best.items()}
    return best


def _objective_weights(profile, tier) -> dict | None:
    """Per-operand cost of a byte drawn from the next level up that holds it (profile `mapping_objective`)."""
    if profile.mapping_objective == "traffic":
        return None
    ts = tiers(profile)
    above = [lv for t in ts[ts.index(tier) + 1:] for lv in t]
    out = {}
    for op in OPS:
        src = next((lv for lv in above if op in lv.holds), None)
        if profile.mapping_objective == "energy":
            out[op] = (src.read_pj_per_byte if src else profile.dram.energy_pj_per_bit * 8.0)
        else:
            out[op] = 1.0 / (src.bandwidth_bytes_per_cycle * src.instances if src else
                             profile.dram.bandwidth / profile.clock)
    return out


def _distinct_rows(dims, mins, coef, totals, mask):
    """(representative row indices, inverse) of the rows whose mapping problem differs (within `mask`).

    A sweep repeats layer shapes (ResNet blocks) and operand widths across configs; each
    distinct problem is mapped once.
    """
    n = dims["m"].shape[0]
    idx = np.nonzero(mask)[0] if mask is not None else np.arange(n)
    if idx.size == 0:  # no MAC rows: map row 0 so every row has (unused) values
        idx = np.zeros(1, dtype=np.int64)
    cols = [np.broadcast_to(v, (n,))[idx] for v in (*dims.values(), *mins.values(), *coef.values(), *totals.values())]
    key = np.ascontiguousarray(np.stack(cols, axis=1))
    _, first, inv = np.unique(key.view(np.dtype((np.void, key.dtype.itemsize * key.shape[1]))).ravel(),
                              return_index=True, return_inverse=True)
    full_inv = np.zeros(n, dtype=np.int64)
    full_inv[idx] = inv.ravel()
    return idx[first], full_inv


def _map_unique(tier, dims, mins, coef, totals, div, spread, rows, weight=None):
    rep, inv = rows
    pick = {k: {d: np.broadcast_to(v, dims["m"].shape)[rep] for d, v in src.items()}
            for k, src in (("dims", dims), ("mins", mins), ("coef", coef), ("totals", totals))}
    m = map_tier(tier, pick["dims"], pick["mins"], pick["coef"], pick["totals"], div, spread, weight)
    return {k: np.asarray(v)[inv] if np.ndim(v) else v for k, v in m.items()}


def pe_local_levels(profile) -> set[str]:
    """Levels with one instance per PE of a spatial array: register files/scratchpads read on every MAC."""
    if profile.family != "systolic_array":
        return set()
    pes = profile.systolic_array.rows * profile.systolic_array.cols
    return {m.name for m in profile.memory if m.instances >= pes}


def _word_bytes(elem_bytes, level):
    """Bytes an access moves: a whole port word (`access_bytes`) per element, or the element itself."""
    if level.access_bytes:
        return np.ceil(elem_bytes / level.access_bytes) * level.access_bytes
    return elem_bytes


def hierarchy_traffic(profile, compute_map: dict, M, Ng, K, a_bytes, b_bytes, c_bytes, c_el, ab, bb, accb,
                      resident, mask=None, macs=None, stream_a_bytes=None, elem_bytes=None):
    """Bytes per level incl. 'dram' and the mapping chosen per tier.

    Returns ({level: (reads by operand dict, write bytes)}, [mapping dict per tier]).
    `resident` rows keep activations on chip between layers: DRAM sees their weights only.
    Only `mask` rows (MAC layers) are mapped; the others get the smallest tiles.
    The compute unit draws each operand from the innermost level holding it: a PE-local register
    file is read on every MAC (the accumulator read and written), as ZigZag and Accelergy count
    it (`elem_bytes`: operand bits without scale metadata, which a MAC does not read); a spatial array fed at its edge (`stream_a_bytes`: the im2col stream) reads every window
    element, since it has no line buffer to reuse overlapping windows.
    """
    M, Ng, K = (np.asarray(x, dtype=np.float64) for x in (M, Ng, K))
    dims = {"m": M, "n": Ng, "k": K}
    c_acc = np.asarray(c_el, dtype=np.float64) * accb
    totals = {"inputs": a_bytes, "weights": b_bytes, "outputs": c_bytes, "psum": c_acc}
    coef = {"inputs": ab + 0.0 * M, "weights": bb + 0.0 * M, "outputs": accb + 0.0 * M}
    cm = compute_map
    trips = [np.ceil(dims[d] / cm[t]) for d, t in (("m", "tm"), ("n", "tn"), ("k", "tk"))]
    rA, rB, pC = reuse(cm["order"], *trips)
    r = {"inputs": rA, "weights": rB, "outputs": pC}
    mins = {"m": np.minimum(cm["tm"], M), "n": np.minimum(cm["tn"], Ng), "k": np.minimum(cm["tk"], K)}
    div = 2.0 if profile.double_buffering else 1.0
    rows = _distinct_rows(dims, mins, coef, totals, mask)
    local, drawn = pe_local_levels(profile), set()
    out, maps = {}, []
    for tier in tiers(profile):
        for level in tier:
            reads, writes = {op: 0.0 * M for op in OPS}, 0.0 * M
            for op in level.holds:
                if op in drawn or macs is None:
                    rd, wr = _served(op, r[op], a_bytes, b_bytes, c_bytes, c_acc)
                elif level.name in local:  # one access per MAC (the accumulator: a read and a write)
                    elem = (elem_bytes or {"inputs": ab, "weights": bb, "outputs": accb})[op]
                    rd = macs * _word_bytes(elem, level)
                    wr = rd if op == "outputs" else 0.0 * M
                else:
                    a_first = a_bytes if stream_a_bytes is None else stream_a_bytes
                    rd, wr = _served(op, r[op], a_first, b_bytes, c_bytes, c_acc)
                reads[op], writes = reads[op] + rd, writes + wr
            drawn |= set(level.holds)
            out[level.name] = (reads, writes)
        m = _map_unique(tier, dims, mins, coef, totals, div, profile.family == "systolic_array", rows,
                        _objective_weights(profile, tier))
        maps.append(m)
        tr = [np.ceil(dims[d] / m[t]) for d, t in (("m", "tm"), ("n", "tn"), ("k", "tk"))]
        rA, rB, pC = reuse(m["order"], *tr)
        new = {"inputs": rA, "weights": rB, "outputs": pC}
        held = {op for level in tier for op in level.holds}
        r = {op: new[op] if op in held else r[op] for op in OPS}
    reads = {"inputs": np.where(resident, 0.0, a_bytes * r["inputs"]), "weights": b_bytes * r["weights"],
             "outputs": np.where(resident, 0.0, r["outputs"] * c_acc)}
    writes = np.where(resident, 0.0, c_bytes + r["outputs"] * c_acc)
    out["dram"] = (reads, writes)
    return out, maps


def mapping_text(profile, compute_map: dict, maps: list[dict], i: int) -> str:
    """Readable mapping of row i: loop order and tile (Tm×Tn×Tk) of the compute unit and each tier."""
    def at(v):
        v = np.asarray(v)
        return v.flat[i] if v.ndim else v

    def one(name, m):
        tm, tn, tk = (int(at(m[k])) for k in ("tm", "tn", "tk"))
        return f"{name}: {ORDERS[int(at(m['order']))]} {tm}x{tn}x{tk}"

    parts = [one("compute", compute_map)]
    parts += [one("+".join(lv.name for lv in tier), m) for tier, m in zip(tiers(profile), maps)]
    return " | ".join(parts)


def activation_capacity(profile) -> float:
    """Bytes of a layer's inputs + outputs that can stay on chip between layers (0 when disabled).

    The home of activations is the largest on-chip level holding both inputs and outputs
    (TPU v1's Unified Buffer, a GPU's L2, a CPU's last-level cache); without one, the smaller
    of the largest input and output levels.
    """
    if not profile.keep_activations_on_chip:
        return 0.0
    both = [m.capacity * m.instances for m in profile.memory if {"inputs", "outputs"} <= set(m.holds)]
    if both:
        return float(max(both))
    cap_in = max([m.capacity * m.instances for m in profile.memory if "inputs" in m.holds], default=0.0)
    cap_out = max([m.capacity * m.instances for m in profile.memory if "outputs" in m.holds], default=0.0)
    return float(min(cap_in, cap_out))


def level_bandwidths(profile) -> dict[str, float]:
    """Bytes per cycle of every level (all instances together) incl. DRAM."""
    bw = {m.name: m.bandwidth_bytes_per_cycle * m.instances for m in profile.memory}
    bw["dram"] = profile.dram.bandwidth / profile.clock
    return bw


def roofline(peak_macs_per_cycle: float, dram_bytes_per_cycle: float, intensity_macs_per_byte):
    """Attainable MACs/cycle at an arithmetic intensity (classic roofline)."""
    return np.minimum(peak_macs_per_cycle, dram_bytes_per_cycle * np.asarray(intensity_macs_per_byte, dtype=float))
