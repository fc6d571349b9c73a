"""Tiling onto a memory hierarchy: bytes moved per level, double buffering, roofline.

Model (vectorised over rows = layers × configs). A GEMM instance is (M, Ng, K), repeated
GB = groups × batch times. Memory levels are listed innermost first; consecutive levels
holding disjoint operands (SCALE-Sim's ifmap/filter/ofmap SRAMs) form one *tier*.

Each tier keeps a square-ish tile (Tm, Tn, Tk) = (min(M,T), min(Ng,T), min(K,T)) with the
largest T whose operand tiles fit every partition (half of it when double buffered). The
traffic a level serves to the one below is set by the tile of the level below (the compute
unit's own tile for the innermost tier):
    A bytes × ceil(Ng/Tn)  +  B bytes × ceil(M/Tm)  +  C bytes  (+ 2·(ceil(K/Tk)-1)·C·acc bytes
    of partial sums where the compute tile does not hold the whole K, e.g. WS/IS arrays).
Fewer bits never move more bytes: smaller elements give a larger or equal T, and every term
is non-increasing in T.
"""

from __future__ import annotations

import numpy as np

OPS = ("inputs", "weights", "outputs")


def tiers(profile) -> list[list]:
    """Group memory levels (innermost first) into tiers of operand-disjoint levels."""
    out: list[list] = []
    for level in profile.memory:
        if out and all(not (set(level.holds) & set(other.holds)) for other in out[-1]):
            out[-1].append(level)
        else:
            out.append([level])
    return out


def _tile_bytes(T, M, Ng, K, ab, bb, cb):
    tm, tn, tk = np.minimum(M, T), np.minimum(Ng, T), np.minimum(K, T)
    return {"inputs": tm * tk * ab, "weights": tk * tn * bb, "outputs": tm * tn * cb}


_OPERANDS = {"inputs": ("ab", "M", "K"), "weights": ("bb", "K", "Ng"), "outputs": ("cb", "M", "Ng")}


def _level_max_t(ops, dims: dict, coefs: dict, cap):
    """Largest T with Σ coef·min(d1,T)·min(d2,T) ≤ cap, solved per interval between the dims.

    Between consecutive breakpoints (sorted M, Ng, K) the tile bytes are a quadratic in T, so
    each interval is solved in closed form; a ±1 integer fix-up removes float rounding.
    """
    M = dims["M"]
    edges = np.sort(np.vstack([dims["M"], dims["Ng"], dims["K"]]), axis=0)
    lows = [np.zeros_like(M), edges[0], edges[1], edges[2]]
    highs = [edges[0], edges[1], edges[2], np.full_like(M, np.inf)]
    best = np.ones_like(M)
    for lo, hi in zip(lows, highs):
        a, b, c = np.zeros_like(M), np.zeros_like(M), np.zeros_like(M)
        for op in ops:
            k, d1n, d2n = _OPERANDS[op]
            coef, d1, d2 = coefs[k], dims[d1n], dims[d2n]
            v1, v2 = d1 > lo, d2 > lo  # T-varying in (lo, hi] when the dim is at least hi
            a = a + np.where(v1 & v2, coef, 0.0)
            b = b + np.where(v1 & ~v2, coef * d2, 0.0) + np.where(~v1 & v2, coef * d1, 0.0)
            c = c + np.where(~v1 & ~v2, coef * d1 * d2, 0.0)
        room = cap - c
        with np.errstate(divide="ignore", invalid="ignore"):
            quad = (-b + np.sqrt(np.maximum(b * b + 4 * a * room, 0.0))) / (2 * a)
            lin = room / b
        t = np.where(a > 0, quad, np.where(b > 0, lin, np.where(room >= 0, np.inf, -np.inf)))
        t = np.where(room < 0, -np.inf, t)
        ok = t > lo
        best = np.where(ok, np.maximum(best, np.minimum(np.floor(np.minimum(t, 1e18)), hi)), best)
    return best


def _fits(tier, T, M, Ng, K, ab, bb, cb, div):
    tb = _tile_bytes(T, M, Ng, K, ab, bb, cb)
    ok = np.ones(np.shape(T), dtype=bool)
    for level in tier:
        ok &= sum(tb[op] for op in level.holds) <= level.capacity / div
    return ok


def solve_tile(tier, M, Ng, K, ab, bb, accb, double_buffering: bool):
    """Largest T whose held operand tiles fit each level of the tier (closed form per interval)."""
    M, Ng, K = (np.asarray(x, dtype=np.float64) for x in (M, Ng, K))
    ab, bb, accb = (np.broadcast_to(np.asarray(x, dtype=np.float64), M.shape) for x in (ab, bb, accb))
    div = 2.0 if double_buffering else 1.0
    top = np.maximum(np.maximum(M, Ng), K)
    dims, coefs = {"M": M, "Ng": Ng, "K": K}, {"ab": ab, "bb": bb, "cb": accb}
    T = top.copy()
    for level in tier:
        T = np.minimum(T, _level_max_t(level.holds, dims, coefs, level.capacity / div))
    T = np.clip(T, 1.0, top)
    up = (T < top) & _fits(tier, T + 1, M, Ng, K, ab, bb, accb, div)
    T = np.where(up, T + 1, T)
    down = (T > 1) & ~_fits(tier, T, M, Ng, K, ab, bb, accb, div)
    T = np.where(down, T - 1, T)
    return np.minimum(M, T), np.minimum(Ng, T), np.minimum(K, T)


def solve_tile_reference(tier, M, Ng, K, ab, bb, accb, double_buffering: bool):
    """Bisection over integer T: the plain reference `solve_tile` is tested against."""
    M, Ng, K = (np.asarray(x, dtype=np.float64) for x in (M, Ng, K))
    div = 2.0 if double_buffering else 1.0
    lo, hi = np.ones_like(M), np.maximum(np.maximum(M, Ng), K)
    while np.any(lo < hi):
        mid = np.floor((lo + hi + 1) / 2)
        good = _fits(tier, mid, M, Ng, K, ab, bb, accb, div)
        lo = np.where(lo < hi, np.where(good, mid, lo), lo)
        hi = np.where(lo < hi, np.where(good, hi, mid - 1), hi)
    return np.minimum(M, lo), np.minimum(Ng, lo), np.minimum(K, lo)


def traffic(tile, M, Ng, K, GB, a_bytes, b_bytes, c_bytes, c_elems, accb, spills: bool):
    """(read bytes per operand dict, write bytes) served by a level to a consumer with `tile`.

    Partial-sum spills (`spills`) happen only below the compute unit's own tile: above it the
    K loop runs innermost with the output tile stationary in the consumer.
    """
    tm, tn, tk = tile
    psum = (np.ceil(K / tk) - 1) * c_elems * accb if spills else 0.0 * c_bytes
    reads = {
        "inputs": a_bytes * np.ceil(Ng / tn),
        "weights": b_bytes * np.ceil(M / tm),
        "outputs": psum,  # partial sums read back
    }
    return reads, c_bytes + psum


def hierarchy_bytes(profile, compute_tile, M, Ng, K, GB, a_bytes, b_bytes, c_bytes, c_elems, ab, bb, accb):
    """Per level name incl. 'dram': (reads by operand dict, write bytes) arrays."""
    out = {}
    tile, spills = compute_tile, True
    for tier in tiers(profile):
        reads, writes = traffic(tile, M, Ng, K, GB, a_bytes, b_bytes, c_bytes, c_elems, accb, spills)
        for level in tier:
            r = {op: (reads[op] if op in level.holds else 0.0 * writes) for op in OPS}
            out[level.name] = (r, writes if "outputs" in level.holds else 0.0 * writes)
        tile, spills = solve_tile(tier, M, Ng, K, ab, bb, accb, profile.double_buffering), False
    out["dram"] = traffic(tile, M, Ng, K, GB, a_bytes, b_bytes, c_bytes, c_elems, accb, spills)
    return out


def activation_capacity(profile) -> float:
    """Bytes of activations that can stay on chip between layers (0 when disabled or no level)."""
    if not profile.keep_activations_on_chip:
        return 0.0
    cap_in = max([m.capacity * m.instances for m in profile.memory if "inputs" in m.holds], default=0.0)
    cap_out = max([m.capacity * m.instances for m in profile.memory if "outputs" in m.holds], default=0.0)
    return min(cap_in, cap_out) / 2.0


def level_bandwidths(profile) -> dict[str, float]:
    """Bytes per cycle of every level (all instances together) incl. DRAM."""
    bw = {m.name: m.bandwidth_bytes_per_cycle * m.instances for m in profile.memory}
    bw["dram"] = profile.dram.bandwidth / profile.clock
    return bw


def roofline(peak_macs_per_cycle: float, dram_bytes_per_cycle: float, intensity_macs_per_byte):
    """Attainable MACs/cycle at an arithmetic intensity (classic roofline)."""
    return np.minimum(peak_macs_per_cycle, dram_bytes_per_cycle * np.asarray(intensity_macs_per_byte, dtype=float))
