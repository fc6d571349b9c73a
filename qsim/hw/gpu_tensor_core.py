"""GPU tensor cores: CTA tiles in waves over SMs, K padded to the MMA k.

cycles = waves · tm·tn·k_split / (dense tensor MACs per cycle per SM), with CTA tiles
shrunk to the problem (tm ≥ 16 rows, tn ≥ 8 cols: the MMA granularity), split-K when there
are fewer tiles than SMs (GEMV/decode), waves = ceil(tiles·split / SMs) and K padded to the
MMA k. Precisions a chip lacks fall back to the next one it has
(H100: int4 → int8) and the report's `fallback` says so.
"""

from __future__ import annotations

import numpy as np

from qsim.hw.quant import CostQuant, resolve

_DEFAULT_K = {"int4": 64, "int8": 32, "fp8": 32, "fp4": 64, "fp6": 32, "fp16": 16, "bf16": 16,
              "tf32": 8, "binary": 256, "fp32": 1, "int16": 16, "int2": 64, "int32": 1}


def plan(profile, q: CostQuant) -> dict:
    g = profile.gpu_tensor_core
    rates = dict(g.tensor_macs_per_cycle_per_sm)
    if g.cuda_fp32_fma_per_cycle_per_sm and "fp32" not in rates:
        rates["fp32"] = g.cuda_fp32_fma_per_cycle_per_sm
    prec, note = resolve(q, set(rates), profile.name, "tensor cores")
    k = g.mma_tiles[prec][2] if prec in g.mma_tiles else _DEFAULT_K.get(prec, 16)
    return dict(precision=prec, fallback=note, rate=rates[prec], k_mma=float(k),
                peak=rates[prec] * g.sms, exact_bits=False)


def compute_cycles(profile, prm: dict, M, Ng, K, GB):
    g = profile.gpu_tensor_core
    M, Ng, K = (np.asarray(x, dtype=np.float64) for x in (M, Ng, K))
    tm = np.minimum(g.cta_tile[0], np.ceil(M / 16) * 16)
    tn = np.minimum(g.cta_tile[1], np.ceil(Ng / 8) * 8)
    tiles = np.ceil(M / tm) * np.ceil(Ng / tn) * GB
    ksteps = np.ceil(K / prm["k_mma"])
    split = np.maximum(1.0, np.minimum(np.floor(g.sms / tiles), ksteps))
    waves = np.ceil(tiles * split / g.sms)
    return waves * tm * tn * np.ceil(ksteps / split) * prm["k_mma"] / prm["rate"]


def compute_map(profile, prm: dict, M, Ng, K) -> dict:
    """A CTA keeps its output tile in registers and streams K in MMA-k steps (output-stationary)."""
    tm, tn = profile.gpu_tensor_core.cta_tile
    return {"tm": float(tm), "tn": float(tn), "tk": prm["k_mma"], "order": 0}
