#!/usr/bin/env python3
"""ZigZag 3.9.1 reference runs for qsim's cost-model validation (issues 9 and 10).

NOT PART OF QSIM.  This script runs in its own virtual environment with the third-party
tool ZigZag (PyPI ``zigzag-dse==3.9.1``, MIT licence); ZigZag must never become a qsim
dependency and qsim never imports this file.  To regenerate the committed JSON:

    python3 -m venv /tmp/zz
    /tmp/zz/bin/pip install zigzag-dse==3.9.1 six
    /tmp/zz/bin/python tests/data/zigzag/make_reference.py          # from the repo root

It evaluates one layer -- a 3x3 convolution, 128 -> 128 channels, 28x28 output, stride 1,
padding 1 (so the stored input is 28x28, the padded input 30x30), batch 1 -- on ZigZag's
*shipped* ``tpu_like`` hardware and mapping files (read from the installed package, not
copied), at operand precisions w8a8, w4a4 and w2a2, and writes
``conv3x3_128_28_tpu_like.json`` next to this file.

Precision convention: W = I = b bits; partial sums O = 2*b bits and final outputs
O_final = b bits, which is what ZigZag's own ONNX parser uses by default
(``ONNXOperatorParser.get_intermediate_output_precision`` returns 2 * activation precision,
conv_parser sets O_final = activation precision).

API settings are ZigZag's defaults for ``get_hardware_performance_zigzag``: LOMA temporal
mapping search, uneven temporal mapping, lpf_limit=6, opt="latency",
nb_spatial_mappings_generated=3 (unused: the mapping file fixes the spatial mapping).
Energies are in pJ, latencies in clock cycles, as ZigZag reports them.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from importlib import metadata

import zigzag
from zigzag.api import get_hardware_performance_zigzag

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_JSON = os.path.join(HERE, "conv3x3_128_28_tpu_like.json")
ZZ_ROOT = os.path.dirname(zigzag.__file__)
HW_FILE = os.path.join(ZZ_ROOT, "inputs", "hardware", "tpu_like.yaml")
MAP_FILE = os.path.join(ZZ_ROOT, "inputs", "mapping", "tpu_like.yaml")

PRECISIONS = {"w8a8": 8, "w4a4": 4, "w2a2": 2}
API_KWARGS = dict(
    temporal_mapping_search_engine="loma",
    temporal_mapping_type="uneven",
    opt="latency",
    lpf_limit=6,
    nb_spatial_mappings_generated=3,
    loma_show_progress_bar=False,
)


def layer(bits: int, padded_input: bool = False) -> dict:
    """The conv layer in ZigZag's workload format (one-element list of layer dicts)."""
    d = {
        "id": 0,
        "name": "conv3x3_128_28",
        "operator_type": "Conv",
        "equation": "O[b][k][oy][ox]+=W[k][c][fy][fx]*I[b][c][iy][ix]",
        "dimension_relations": ["ix=1*ox+1*fx", "iy=1*oy+1*fy"],
        "loop_dims": ["B", "K", "C", "OY", "OX", "FY", "FX"],
        "loop_sizes": [1, 128, 128, 28, 28, 3, 3],
        "operand_precision": {"W": bits, "I": bits, "O": 2 * bits, "O_final": bits},
        "operand_source": {"I": 0},
        "pr_loop_dims": ["IX", "IY"],
    }
    if padded_input:
        # variant: the input is stored already padded, 30x30, no padding in ZigZag
        d["pr_loop_sizes"] = [30, 30]
    else:
        # main runs: 28x28 stored input, padding 1 on each side (as ZigZag's ONNX parser does)
        d["pr_loop_sizes"] = [28, 28]
        d["padding"] = [[1, 1], [1, 1]]
    return d


def s(x):
    """str() of ZigZag enum/operand keys."""
    return str(x.value) if hasattr(x, "value") else str(x)


def hardware_description(acc) -> dict:
    """tpu_like's parameters, taken from ZigZag's parsed Accelerator object."""
    oa = acc.operational_array
    mems = []
    for ml in acc.memory_hierarchy.mem_level_list:
        mi = ml.memory_instance
        ports = []
        for p in mi.ports:
            ports.append({"name": p.name, "type": s(p.type), "bandwidth_min_bits": p.bw_min,
                          "bandwidth_max_bits": p.bw_max})
        alloc = {s(op): {s(dr): port for dr, port in dirs.items()} for op, dirs in ml.port_alloc_raw.data.items()}
        mems.append({
            "name": mi.name,
            "size_bits": mi.size,
            "r_cost_pj_per_access": mi.r_cost,
            "w_cost_pj_per_access": mi.w_cost,
            "latency": mi.latency,
            "area": mi.area,
            "memory_operands": [s(o) for o in ml.operands],
            "served_dimensions": sorted(s(d) for d in ml.served_dimensions.data),
            "instances_unroll_count": ml.unroll_count,
            "ports": ports,
            "port_allocation": alloc,
        })
    return {
        "name": acc.name,
        "operational_array": {
            "dimensions": {s(k): v for k, v in oa.dimension_sizes.items()},
            "total_mac_units": oa.total_unit_count,
            "mac_unit_energy_pj": oa.multiplier.energy_cost,
            "mac_unit_area": oa.multiplier.area,
            "systolic_dimensions": sorted(s(d) for d in oa.systolic_dimensions),
        },
        "memories_innermost_first": mems,
        "memory_levels_per_memory_operand": {
            s(op): [lv.memory_instance.name for lv in levels] for op, levels in acc.mem_hierarchy_dict.items()
        },
        "notes": "size in bits; r_cost/w_cost in pJ per access of one port-bandwidth word; bandwidths in bits/cycle. "
                 "ZigZag memory operands: I1 = activations (layer operand I), I2 = weights (W), O = outputs.",
    }


def run_one(bits: int, padded_input: bool, dump: str) -> dict:
    energy, latency, cmes = get_hardware_performance_zigzag(
        [layer(bits, padded_input)], HW_FILE, MAP_FILE, dump_folder=dump, **API_KWARGS
    )
    cme = cmes[0][1][0][0]  # the single layer's CostModelEvaluation
    with open(os.path.join(dump, "conv3x3_128_28_complete.json")) as f:
        complete = json.load(f)  # ZigZag's own JSON export (CompleteSaveStage)
    with open(os.path.join(dump, "loop_ordering.txt")) as f:
        loop_ordering = f.read()
    links = {s(k): s(v) for k, v in cme.layer.memory_operand_links.data.items()}
    levels = {
        lop: [lv.memory_instance.name for lv in cme.accelerator.mem_hierarchy_dict[mop_key]]
        for lop, mop in links.items()
        for mop_key in cme.accelerator.mem_hierarchy_dict
        if s(mop_key) == mop
    }
    out = complete["outputs"]
    en = out["energy"]
    # label per-level lists with the memory name
    per_level = {
        op: [{"memory": levels[op][i], "energy_pj": e} for i, e in enumerate(lst)]
        for op, lst in en["memory_energy_breakdown_per_level"].items()
    }
    per_level_dir = {
        op: [{"memory": levels[op][i], **d} for i, d in enumerate(lst)]
        for op, lst in en["memory_energy_breakdown_per_level_per_operand"].items()
    }
    accesses = {
        op: [{"memory": levels[op][i], **d} for i, d in enumerate(lst)]
        for op, lst in out["memory"]["word_accesses"].items()
    }
    per_memory = {}
    for op, lst in per_level.items():
        for item in lst:
            per_memory[item["memory"]] = per_memory.get(item["memory"], 0.0) + item["energy_pj"]
    return {
        "layer": complete["inputs"]["layer"],
        "workload_input": layer(bits, padded_input),
        "latency_cycles": {
            "total": cme.latency_total2,
            "ideal_cycle": cme.ideal_cycle,
            "ideal_temporal_cycle": cme.ideal_temporal_cycle,
            "stall_slack_comb": cme.stall_slack_comb,
            "computation_latency_total0": cme.latency_total0,
            "data_onloading_cycle": cme.data_onloading_cycle,
            "data_offloading_cycle": cme.data_offloading_cycle,
            "systolic_drain_cycle": cme.systolic_drain_cycle,
            "latency_total1_with_onloading": cme.latency_total1,
            "latency_total2_with_onloading_offloading": cme.latency_total2,
            "api_returned_latency": latency,
            "formula": "total = ideal_temporal_cycle + stall_slack_comb + data_onloading_cycle "
                       "+ data_offloading_cycle + systolic_drain_cycle",
        },
        "mac_utilization": out["spatial"]["mac_utilization"],
        "energy_pj": {
            "total": en["energy_total"],
            "api_returned_energy": energy,
            "mac": en["operational_energy"],
            "memory_total": en["memory_energy"],
            "memory_per_memory_instance": per_memory,
            "memory_per_operand_per_level": per_level,
            "memory_per_operand_per_level_per_direction": per_level_dir,
        },
        "word_accesses_per_operand_per_level": accesses,
        "memory_utilization_per_operand_per_level": out["memory"]["utilization"],
        "memory_levels_per_layer_operand_innermost_first": levels,
        "memory_operand_links": links,
        "mapping": {
            "spatial_mapping_per_operand_per_level": complete["inputs"]["spatial_mapping"],
            "temporal_mapping_per_operand_per_level_innermost_first": complete["inputs"]["temporal_mapping"],
            "loop_ordering_txt": loop_ordering,
        },
    }


def main() -> None:
    result = {
        "description": "ZigZag 3.9.1 on its shipped tpu_like hardware/mapping: one 3x3 conv, K=C=128, OX=OY=28, "
                       "stride 1, padding 1, batch 1. Energies pJ, latency cycles. Produced by make_reference.py "
                       "(own venv; not part of qsim).",
        "tool": {"name": "zigzag-dse", "version": metadata.version("zigzag-dse"), "licence": "MIT",
                 "python": platform.python_version()},
        "hardware_file": "zigzag/inputs/hardware/tpu_like.yaml (inside the installed package)",
        "mapping_file": "zigzag/inputs/mapping/tpu_like.yaml (inside the installed package; entry 'default' used)",
        "api": "zigzag.api.get_hardware_performance_zigzag",
        "api_kwargs": {k: v for k, v in API_KWARGS.items() if k != "loma_show_progress_bar"},
        "precision_convention": "W=I=b bits, O (partial sum)=2b, O_final=b (ZigZag ONNX-parser default)",
        "runs": {},
        "variant_input_stored_30x30_no_padding": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, bits in PRECISIONS.items():
            r = run_one(bits, False, os.path.join(tmp, name))
            result["runs"][name] = r
            print(f"{name}: latency {r['latency_cycles']['total']:.0f} cycles, "
                  f"energy {r['energy_pj']['total']:.1f} pJ (MAC {r['energy_pj']['mac']:.1f})", file=sys.stderr)
        for name, bits in PRECISIONS.items():
            r = run_one(bits, True, os.path.join(tmp, name + "_30"))
            result["variant_input_stored_30x30_no_padding"][name] = {
                "latency_cycles": r["latency_cycles"],
                "energy_pj": {k: v for k, v in r["energy_pj"].items()
                              if k in ("total", "mac", "memory_total", "memory_per_memory_instance",
                                       "memory_per_operand_per_level")},
                "loop_ordering_txt": r["mapping"]["loop_ordering_txt"],
            }
        # hardware description from the parsed accelerator (same for every run)
        _, _, cmes = get_hardware_performance_zigzag(
            [layer(8)], HW_FILE, MAP_FILE, dump_folder=os.path.join(tmp, "hw"), **API_KWARGS
        )
        result["hardware_tpu_like"] = hardware_description(cmes[0][1][0][0].accelerator)
    with open(OUT_JSON, "w") as f:
        json.dump(result, f, indent=1, sort_keys=False)
        f.write("\n")
    print("wrote", OUT_JSON, file=sys.stderr)


if __name__ == "__main__":
    main()
