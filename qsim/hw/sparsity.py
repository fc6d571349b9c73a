"""What a sparse weight (or activation) tensor buys on a given chip: the profile's `sparsity` section decides.

Per (profile, CostQuant) a small plan of factors the vectorised cost model applies:

* channel pruning removes whole filters: a smaller dense layer on every chip (outputs, weights, MACs × kept);
* N:M weights on units that exploit them (A100/H100/Orin sparse tensor cores: 2:4 at 2× the dense math rate,
  NVIDIA A100/H100 datasheets) run `structured[pattern]` times faster, execute only the kept MACs, and read the
  kept values plus their index metadata (2 bits per kept value for 2:4, 3 for 4:8: the position among M);
* otherwise weights may be stored compressed in a format the runtime decodes (`weight_formats`): bitmask (one
  bit per weight + kept values), CSR with relative indices (5 bits per kept value, Han et al. ICLR 2016 for FC
  layers), or N:M metadata — the cheapest applicable one; every kept value costs one index add to decode;
* zero gating (Eyeriss: zero inputs skip the MAC and its scratchpad reads) saves the MAC and PE register-file
  energy of the gated fraction of MACs, no time;
* anything the profile does not list buys nothing, and `sparsity_used` says so.
"""

from __future__ import annotations

from qsim.hw.quant import CostQuant, nm_pattern

CSR_INDEX_BITS = 5  # relative index per kept weight (Han et al., ICLR 2016: 5 bits for fully connected layers)


def plan(profile, q: CostQuant) -> dict:
    """Factors for one config on one profile (see the module docstring)."""
    sp, pattern, cfg = float(q.sparsity), q.sparsity_pattern, profile.sparsity
    out = {"channel_keep": 1.0, "store_keep": 1.0, "meta_bits": 0.0, "compute_div": 1.0, "mac_frac": 1.0,
           "rf_frac": 1.0, "decode": 0.0, "used": ""}
    gate = {"none": 0.0, "inputs": q.act_sparsity, "weights": sp if pattern != "channel" else 0.0,
            "both": 1.0 - (1.0 - q.act_sparsity) * (1.0 - (sp if pattern != "channel" else 0.0))}[cfg.zero_gating]
    notes = []
    if sp and pattern == "channel":
        out["channel_keep"] = 1.0 - sp
        notes.append(f"channel pruning: {1 - sp:.0%} of the filters remain (a smaller dense layer)")
    elif sp:
        nm = nm_pattern(pattern)
        formats = []
        if nm and "nm" in cfg.weight_formats:
            formats.append(("nm", 1.0 - sp, float((nm[1] - 1).bit_length())))
        if "bitmask" in cfg.weight_formats:
            formats.append(("bitmask", 1.0 - sp, 1.0 / (1.0 - sp)))
        if "csr" in cfg.weight_formats:
            formats.append(("csr", 1.0 - sp, float(CSR_INDEX_BITS)))
        structured = bool(nm) and pattern in cfg.structured and "nm" in cfg.weight_formats
        if structured:  # the sparse units read the N:M format natively
            formats = [f for f in formats if f[0] == "nm"]
        if formats:
            name, keep, meta = min(formats, key=lambda f: f[1] * (q.w_bits + f[2]))
            if keep * (q.w_bits + meta) < q.w_bits:  # compressed only where it saves bytes
                out.update(store_keep=keep, meta_bits=meta, decode=1.0)
                notes.append(f"weights stored {name}-compressed ({keep:.0%} kept + {meta:g} index bits each)")
        if structured and out["decode"]:
            out.update(compute_div=float(cfg.structured[pattern]), mac_frac=1.0 - sp, decode=0.0)
            notes.append(f"{pattern} sparse units: {cfg.structured[pattern]:g}x math, only kept MACs")
    if gate:
        out["mac_frac"] *= 1.0 - gate
        out["rf_frac"] = 1.0 - gate
        notes.append(f"zero gating of {cfg.zero_gating}: {gate:.0%} of MACs gated")
    if (sp or q.act_sparsity) and not notes:
        notes.append("none: this profile exploits no sparsity of this form (runs dense)")
    out["used"] = "; ".join(notes)
    return out
