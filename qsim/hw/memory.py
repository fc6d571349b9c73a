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


def solve_tile(tier, M, Ng, K, ab, bb, accb, double_buffering: bool):
    """Largest T (vectorised bisection) whose held operand tiles fit each level of the tier."""
    M, Ng, K = (np.asarray(x, dtype=np.float64) for x in (M, Ng, K))
    lo = np.ones_like(M)
    hi = np.maximum(np.maximum(M, Ng), K)
    div = 2.0 if double_buffering else 1.0

    def fits(T):
        tb = _tile_bytes(T, M, Ng, K, ab, bb, accb)
        ok = np.ones(T.shape, dtype=bool)
        for level in tier:
            need = sum(tb[op] for op in level.holds)
            ok &= need <= level.capacity / div
        return ok

    ok_hi = fits(hi)
    for _ in range(int(np.ceil(np.log2(max(float(hi.max(initial=1.0)), 2.0)))) + 1):
        mid = np.floor((lo + hi + 1) / 2)
        good = fits(mid)
        lo = np.where(good, mid, lo)
        hi = np.where(good, hi, mid - 1)
    T = np.where(ok_hi, np.maximum(np.maximum(M, Ng), K), lo)
    return np.minimum(M, T), np.minimum(Ng, T), np.minimum(K, T)


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
    """Per level name: (read bytes, write bytes) arrays, incl. 'dram'."""
    out = {}
    tile, spills = compute_tile, True
    for tier in tiers(profile):
        reads, writes = traffic(tile, M, Ng, K, GB, a_bytes, b_bytes, c_bytes, c_elems, accb, spills)
        for level in tier:
            r = sum(reads[op] for op in level.holds if op in reads)
            w = writes if "outputs" in level.holds else 0.0 * writes
            out[level.name] = (r + 0.0 * writes, w)
        tile, spills = solve_tile(tier, M, Ng, K, ab, bb, accb, profile.double_buffering), False
    reads, writes = traffic(tile, M, Ng, K, GB, a_bytes, b_bytes, c_bytes, c_elems, accb, spills)
    out["dram"] = (reads["inputs"] + reads["weights"] + reads["outputs"], writes)
    return out


def level_bandwidths(profile) -> dict[str, float]:
    """Bytes per cycle of every level (all instances together) incl. DRAM."""
    bw = {m.name: m.bandwidth_bytes_per_cycle * m.instances for m in profile.memory}
    bw["dram"] = profile.dram.bandwidth / profile.clock
    return bw


def roofline(peak_macs_per_cycle: float, dram_bytes_per_cycle: float, intensity_macs_per_byte):
    """Attainable MACs/cycle at an arithmetic intensity (classic roofline)."""
    return np.minimum(peak_macs_per_cycle, dram_bytes_per_cycle * np.asarray(intensity_macs_per_byte, dtype=float))
