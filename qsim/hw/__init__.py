"""Hardware profiles (YAML, validated) and cycle-approximate cost models.

    profile = load_profile("h100")
    rec = cost_layer(layer, CostQuant(w_bits=4, a_bits=8), profile)
    df = cost_workload(workload, q, profile); totals(df)
    sweep = cost_batch(workload, [q1, q2, ...], profile)
"""

from qsim.hw.cost import cost_batch, cost_layer, cost_workload, peak_macs_per_cycle, totals
from qsim.hw.profiles import find_profile, list_profiles, load_profile
from qsim.hw.quant import CostQuant, precision_candidates
from qsim.hw.schema import FAMILIES, PRECISIONS, ProfileError, json_schema, validate_profile_dict
from qsim.hw.systolic_array import systolic_compute_cycles

__all__ = [
    "FAMILIES", "PRECISIONS", "CostQuant", "ProfileError", "cost_batch", "cost_layer", "cost_workload",
    "find_profile", "json_schema", "list_profiles", "load_profile", "peak_macs_per_cycle", "precision_candidates",
    "systolic_compute_cycles", "totals", "validate_profile_dict",
]
