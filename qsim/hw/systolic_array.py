"""Systolic MAC arrays: SCALE-Sim fold-based OS/WS/IS cycle counts, Bit Fusion, bit-serial.

SCALE-Sim v2 maps a GEMM (M = ofmap pixels, N = filters, K = window R·S·C) as
    OS: Sr = M, Sc = N, T = K      WS: Sr = K, Sc = N, T = M      IS: Sr = K, Sc = M, T = N
and runs ceil(Sr/rows)·ceil(Sc/cols) folds. Its demand matrices give each fold
    OS: T + rows + cols - 2 cycles        WS, IS: 2·rows + cols + T - 2 cycles
(operand skew = fill, drain of the last partial sums; WS/IS also load the stationary
operand: `rows` more). SCALE-Sim reports the index of the last serviced cycle, one less
than the number of demand lines, hence `SCALESIM_CYCLE_OFFSET`.
"""

from __future__ import annotations

import numpy as np

from qsim.hw.quant import CostQuant, resolve
from qsim.hw.schema import PRECISION_BITS

SCALESIM_CYCLE_OFFSET = -1


def _fold_map(M, N, K, dataflow: str):
    if dataflow == "os":
        return M, N, K
    if dataflow == "ws":
        return K, N, M
    if dataflow == "is":
        return K, M, N
    raise ValueError(f"dataflow must be one of 'os', 'ws', 'is', got {dataflow!r}")


def fold_cycles(M, N, K, rows, cols, dataflow: str, load_overlapped: bool = False):
    """Stall-free cycles incl. fill and drain (vectorised; the NumPy model used everywhere).

    `load_overlapped` (WS/IS with a double-buffered stationary tile, TPU v1 §2): each fold's
    `rows`-cycle load hides behind the previous fold's stream of T rows and the folds' wavefronts
    follow each other, so a fold takes max(T, rows) and the first load, fill and drain
    (2·rows + cols − 2) are paid once per layer.
    """
    sr, sc, t = _fold_map(np.asarray(M), np.asarray(N), np.asarray(K), dataflow)
    rows, cols = np.asarray(rows), np.asarray(cols)
    folds = -(-sr // rows) * -(-sc // cols)
    if dataflow == "os":
        return folds * (t + rows + cols - 2)
    if load_overlapped:
        return folds * np.maximum(t, rows) + 2 * rows + cols - 2
    return folds * (2 * rows + cols + t - 2)


def systolic_compute_cycles(M: int, N: int, K: int, rows: int, cols: int, dataflow: str) -> int:
    """Total cycles SCALE-Sim reports for one GEMM layer in stall-free mode (exact integer)."""
    for name, v in (("M", M), ("N", N), ("K", K), ("rows", rows), ("cols", cols)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(fold_cycles(int(M), int(N), int(K), int(rows), int(cols), dataflow)) + SCALESIM_CYCLE_OFFSET


def _pow2_at_least(b: int, floor: int) -> int:
    p = floor
    while p < b:
        p *= 2
    return p


def bit_fusion_macs_per_unit(w_bits: int, a_bits: int, bitbrick_bits: int = 2, max_bits: int = 8) -> float:
    """MACs per cycle of one Fusion Unit: 16/((b_a/2)(b_w/2)) for 2/4/8-bit operands (Bit Fusion).

    Widths round up to a power of two ≥ the BitBrick width; wider than `max_bits` takes
    ceil(b/max)² temporal passes.
    """
    bricks = (max_bits // bitbrick_bits) ** 2
    if w_bits > max_bits or a_bits > max_bits:
        return 1.0 / (-(-w_bits // max_bits) * -(-a_bits // max_bits))
    bw, ba = _pow2_at_least(w_bits, bitbrick_bits), _pow2_at_least(a_bits, bitbrick_bits)
    return bricks / ((bw // bitbrick_bits) * (ba // bitbrick_bits))


def plan(profile, q: CostQuant) -> dict:
    """Per-config constants: precision used, K per PE-cycle factor, passes, peak MACs/cycle."""
    sa = profile.systolic_array
    pes = sa.rows * sa.cols
    int_pe = max([PRECISION_BITS[p] for p in sa.pe_precisions if p.startswith("int")], default=0)
    is_int = q.w_format == "int" and q.a_format == "int"
    if sa.variant == "bit_fusion":
        if not is_int:
            raise ValueError(f"profile {profile.name!r} (Bit Fusion) runs integer operands only, got {q.label()}")
        f = bit_fusion_macs_per_unit(q.w_bits, q.a_bits, sa.bitbrick_bits, sa.max_bits)
        k_div, passes = (f, 1.0) if f >= 1 else (1.0, 1.0 / f)
        return dict(precision=f"w{q.w_bits}a{q.a_bits}", fallback="", k_div=k_div, passes=passes,
                    peak=pes * f, exact_bits=True)
    if sa.variant == "bit_serial":
        if not is_int:
            raise ValueError(f"profile {profile.name!r} (bit-serial) runs integer operands only, got {q.label()}")
        sb = sa.serial_bits
        passes = -(-q.a_bits // sb) * (-(-q.w_bits // sb) if sa.serial_operand == "both" else 1)
        return dict(precision=f"w{q.w_bits}a{q.a_bits}", fallback="", k_div=float(sa.serial_lanes),
                    passes=float(passes), peak=pes * sa.serial_lanes / passes, exact_bits=True)
    supported = set(sa.pe_precisions)
    if int_pe:  # wider integers run as multi-pass products of pe-width slices
        supported |= {p for p in ("int16", "int32") if PRECISION_BITS[p] > int_pe}
    prec, note = resolve(q, supported, profile.name, "PEs")
    passes = 1.0
    if prec.startswith("int") and PRECISION_BITS[prec] > int_pe:
        passes = float(-(-q.w_bits // int_pe) * -(-q.a_bits // int_pe))
        note = note or f"{prec} on int{int_pe} PEs: {int(passes)} passes"
    return dict(precision=prec, fallback=note, k_div=1.0, passes=passes, peak=pes / passes, exact_bits=False)


def compute_cycles(profile, prm: dict, M, Ng, K, GB):
    sa = profile.systolic_array
    k_eff = np.ceil(np.asarray(K, dtype=np.float64) / prm["k_div"])
    per = fold_cycles(np.asarray(M, dtype=np.float64), np.asarray(Ng, dtype=np.float64), k_eff,
                      sa.rows, sa.cols, sa.dataflow, sa.weight_load == "double_buffered")
    return per * prm["passes"] * GB


def compute_map(profile, prm: dict, M, Ng, K) -> dict:
    """The array's own tile and stationary operand (memory.reuse order index).

    OS keeps a rows×cols output tile and streams K; WS keeps a rows(K)×cols(N) weight tile and
    streams M; IS keeps a rows(K)×cols(M) input tile and streams N.
    """
    sa = profile.systolic_array
    if sa.dataflow == "os":
        return {"tm": float(sa.rows), "tn": float(sa.cols), "tk": 1.0, "order": 0}
    if sa.dataflow == "ws":
        return {"tm": 1.0, "tn": float(sa.cols), "tk": float(sa.rows), "order": 1}
    return {"tm": float(sa.cols), "tn": 1.0, "tk": float(sa.rows), "order": 2}


def exposed_fill_cycles(profile, K, Ng, w_bytes):
    """Cycles before a layer's first fold can start with double-buffered weight loads: its first stationary
    tile (rows × cols weights) has to arrive from DRAM with nothing to overlap it (TPU v1 §2: a 64 KiB tile
    per fold). Later tiles load behind the running fold and show up only as DRAM traffic."""
    sa = profile.systolic_array
    if sa.weight_load != "double_buffered":
        return 0.0 * np.asarray(K, dtype=np.float64)
    tile = np.minimum(np.asarray(K, dtype=np.float64), sa.rows) * np.minimum(np.asarray(Ng, dtype=np.float64),
                                                                             sa.cols) * w_bytes
    return np.ceil(tile / (profile.dram.bandwidth / profile.clock))
