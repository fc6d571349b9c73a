"""CPU SIMD/matrix units: cores × best instruction path per precision.

Work is cut into register tiles (mr × nr outputs, full K kept in registers) spread over
cores; a core retires `macs_per_cycle_per_core` of the chosen path (e.g. AVX2 vpmaddubsw
32, AVX-512 VNNI 128, AMX 1024 int8 MACs/cycle). Sub-8-bit operands on an int8-only path
run at int8 rate (the report says so) but move fewer bytes.
"""

from __future__ import annotations

import numpy as np

from qsim.hw.quant import CostQuant, resolve


def plan(profile, q: CostQuant) -> dict:
    best: dict[str, tuple[float, str]] = {}
    for ins in profile.cpu_simd.instructions:
        if ins.precision not in best or ins.macs_per_cycle_per_core > best[ins.precision][0]:
            best[ins.precision] = (ins.macs_per_cycle_per_core, ins.name)
    prec, note = resolve(q, set(best), profile.name, "SIMD paths")
    rate, path = best[prec]
    return dict(precision=prec, fallback=note, rate=rate, path=path,
                peak=rate * profile.cpu_simd.cores, exact_bits=False)


def compute_cycles(profile, prm: dict, M, Ng, K, GB):
    c = profile.cpu_simd
    mr, nr = c.register_tile
    blocks = np.ceil(np.asarray(M, dtype=np.float64) / mr) * np.ceil(np.asarray(Ng, dtype=np.float64) / nr) * GB
    return np.ceil(blocks / c.cores) * (mr * nr) * np.asarray(K, dtype=np.float64) / prm["rate"]


def compute_map(profile, prm: dict, M, Ng, K) -> dict:
    """A core keeps an mr×nr register tile of outputs and streams K (output-stationary)."""
    mr, nr = profile.cpu_simd.register_tile
    return {"tm": float(mr), "tn": float(nr), "tk": 1.0, "order": 0}
