#!/usr/bin/env python3
"""Assemble tests/data/bitfusion/reference.json from the Bit Fusion artifact.

NOT PART OF QSIM; not imported by qsim.  Inputs:
  * the artifact's git mirror (github.com/hsharma35/bitfusion, commit below), read with `git show`:
    bf_e_conf.ini, bf_s_conf.ini, results/bitfusion-eyeriss-sim-sweep.csv (the artifact's own
    committed simulator output, the "published" cycles);
  * the JSON written by run_bitfusion_sim.py (the simulator re-run here under Python 2.7).

Usage (see README.md):
    python3 tests/data/bitfusion/make_reference.py <bitfusion .git dir> <run_bitfusion_sim output json>
"""

from __future__ import annotations

import configparser
import csv
import io
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
COMMIT = "04ec1c87c91ef4a681858f84f5a7832d5b65e83b"


def show(gitdir: str, path: str) -> str:
    return subprocess.run(["git", "--git-dir", gitdir, "show", f"{COMMIT}:{path}"],
                          check=True, capture_output=True, text=True).stdout


def ini(gitdir: str, path: str) -> dict:
    cp = configparser.ConfigParser(inline_comment_prefixes=("#",))
    cp.read_string(show(gitdir, path))
    return {s: dict(cp[s]) for s in cp.sections()}


def main() -> None:
    gitdir, produced_json = sys.argv[1], sys.argv[2]
    with open(produced_json) as f:
        produced = json.load(f)

    rows = list(csv.DictReader(io.StringIO(show(gitdir, "results/bitfusion-eyeriss-sim-sweep.csv"))))
    published = {}
    for r in rows:
        if r["Network"] in ("RNN", "LSTM") and r["N"] == "16" and r["M"] == "32":
            published[(r["Network"], int(r["Bandwidth (bits/cycle)"]))] = {k: r[k] for k in r}

    bf_e = ini(gitdir, "bf_e_conf.ini")
    acc = bf_e["accelerator"]
    config = {
        "source_file": "bf_e_conf.ini (the notebook's 'BitFusion-Eyeriss' configuration)",
        "fusion_units_rows_N": int(acc["a"]),
        "fusion_units_cols_M": int(acc["c"]),
        "fusion_units_total": int(acc["a"]) * int(acc["c"]),
        "max_precision_bits": int(acc["high_prec"]),
        "min_precision_bits": int(acc["low_prec"]),
        "bitbricks_per_fusion_unit": (int(acc["high_prec"]) // int(acc["low_prec"])) ** 2,
        "frequency_hz": int(acc["frequency"]),
        "wbuf_bytes": int(acc["wgt_sram"]), "wbuf_bits": int(acc["wgt_sram"]) * 8,
        "ibuf_bytes": int(acc["act_sram"]), "ibuf_bits": int(acc["act_sram"]) * 8,
        "obuf_bytes": int(acc["out_sram"]), "obuf_bits": int(acc["out_sram"]) * 8,
        "double_buffered": "yes: every tile must fit in half of each buffer (optimizer.py get_stats_fast)",
        "dram_interface_bits_per_cycle_in_file": int(bf_e["system"]["if_width"]),
        "dram_interface_bits_per_cycle_runs": [192, 4096],
        "bandwidth_4096_origin": "notebook cell 24 (factor 1): Simulator('bf_e_conf.ini') with "
                                 "accelerator.mem_if_width = 4096, all else unchanged",
        "output_psum_precision_bits": 32,
        "macs_per_fusion_unit_per_cycle_w4a4": (int(acc["high_prec"]) // 4) ** 2,
        "peak_macs_per_cycle_w4a4": int(acc["a"]) * int(acc["c"]) * (int(acc["high_prec"]) // 4) ** 2,
        "other_config_bf_s_conf_ini": ini(gitdir, "bf_s_conf.ini").get("accelerator", {})
                                      | {"if_width": ini(gitdir, "bf_s_conf.ini")["system"]["if_width"]},
    }

    benches = {}
    for run in produced["runs"]:
        name, bw = run["benchmark"], run["bandwidth_bits_per_cycle"]
        pub = published[(name, bw)]
        layers = []
        for layer in run["layers"]:
            st = layer["stats"]
            layers.append({
                "layer": layer["layer"],
                "gemm": {"M_batch": layer["as_conv"]["B"], "K_in": layer["as_conv"]["IC"],
                         "N_out": layer["as_conv"]["OC"]},
                "w_bits": layer["wprec_bits"], "a_bits": layer["iprec_bits"],
                "perf_factor": layer["perf_factor"],
                "produced": {
                    "total_cycles": st["total_cycles"],
                    "compute_cycles": st["compute_cycles"],
                    "memory_stall_cycles": st["mem_stall_cycles"],
                    "reads_bits": st["reads_bits"], "writes_bits": st["writes_bits"],
                },
                "chosen_tiling_num_tiles_and_tile": layer["best_tiling_num_tiles_and_tile"],
                "chosen_loop_order_outer_to_inner": layer["best_loop_order_outer_to_inner"],
                "published_csv_row": {
                    "Cycles": int(pub["Cycles"]), "Memory wait cycles": int(pub["Memory wait cycles"]),
                    "WBUF Read": int(pub["WBUF Read"]), "WBUF Write": int(pub["WBUF Write"]),
                    "OBUF Read": int(pub["OBUF Read"]), "OBUF Write": int(pub["OBUF Write"]),
                    "IBUF Read": int(pub["IBUF Read"]), "IBUF Write": int(pub["IBUF Write"]),
                    "DRAM Read": int(pub["DRAM Read"]), "DRAM Write": int(pub["DRAM Write"]),
                },
                "reproduced_exactly": (
                    st["total_cycles"] == int(pub["Cycles"])
                    and st["mem_stall_cycles"] == int(pub["Memory wait cycles"])
                    and st["reads_bits"]["dram"] == int(pub["DRAM Read"])
                    and st["writes_bits"]["dram"] == int(pub["DRAM Write"])
                ),
            })
        benches.setdefault(name, {})[str(bw)] = {
            "published_cycles": int(pub["Cycles"]),
            "produced_cycles": run["total_cycles"],
            "layers": layers,
        }

    out = {
        "description": "Bit Fusion artifact (hsharma35/bitfusion) RNN and LSTM benchmarks, batch 16, w4a4, "
                       "DRAM interface 192 and 4096 bit/cycle: layer shapes, array configuration, the artifact's "
                       "committed cycle counts and the counts re-produced by running its simulator here. "
                       "Bit counts are in bits. Made by tests/data/bitfusion/make_reference.py (not part of qsim).",
        "artifact": {"repo": "https://github.com/hsharma35/bitfusion", "commit": COMMIT,
                     "dependency": {"repo": "https://github.com/hsharma35/dnnweaver2",
                                    "commit": "28c5f830d4b8b6d2fbb8b1d158f0debcef3dbefb"},
                     "licence": "none stated (no LICENSE file in the repository); only facts and numbers are "
                                "recorded here, no code"},
        "published_source": "results/bitfusion-eyeriss-sim-sweep.csv rows N=16, M=32, Network RNN/LSTM "
                            "(the artifact's own simulator output, committed with it)",
        "benchmarks_definition": {
            "file": "bitfusion/src/benchmarks/benchmarks.py",
            "RNN": "get_RNN('RNN', 2048): input tensor (16, 2*2048) FXP4 -> fc(output_channels=2*2048, w FXP4): "
                   "one MatMul, M=16 (batch) x K=4096 x N=4096; one time step, no recurrence loop, no bias cost, "
                   "dataset tag 'PTB'",
            "LSTM": "get_LSTM('LSTM', 900): input tensor (16, 4*900) FXP4 -> fc(output_channels=4*900, w FXP4): "
                    "one MatMul, M=16 x K=3600 x N=3600; one time step",
            "batch": 16,
        },
        "config": config,
        "energy_costs_from_artifact_nJ": produced.get("energy_cost_from_artifact"),
        "energy_costs_note": "core_dynamic_energy in nJ per cycle for the whole array; SRAM energies in nJ per bit "
                             "(Simulator.get_energy_cost from bitfusion/sram/cacti_sweep.csv); DRAM 15e-3 nJ/bit "
                             "(Stats.get_energy default dram_cost)",
        "benchmarks": benches,
        "cycle_model": [
            "FC layers become a conv with K=O=S=1 (Simulator.get_FC_cycles -> get_conv_cycles).",
            "perf_factor = (pmax // max(a_bits, pmin)) * (pmax // max(w_bits, pmin)) = 2*2 = 4 for w4a4 on an 8-bit "
            "Fusion Unit (16 BitBricks).",
            "compute cycles per tile = b * ceil(oc/M) * ow*oh*kw*kh * ceil(ic/(N*perf_factor)); total = number of "
            "tiles x per-tile cycles (Accelerator.get_compute_cycles); untiled RNN: 16*ceil(4096/32)*ceil(4096/64) "
            "= 131072, LSTM 16*113*57 = 103056. Tiles that do not divide the layer round up per tile: LSTM at 192 "
            "bit/cycle uses oc tiles of 128 (29 tiles, 4 column passes each = 116 > 113), so its compute is "
            "16*57*29*4 = 105792.",
            "optimizer (optimize_for_order): for each of the 120 orders of loops B, OW, OH, IC, OC and power-of-two "
            "tile sizes (oc a multiple of M), tiles must fit half of each buffer (double buffering); DRAM traffic is "
            "counted by walking the loops inner->outer and multiplying a buffer's fill by a loop's trip count "
            "unless the grown tile still fits (reuse); partial sums are 32 bit and are read back/written when IC is "
            "tiled outside OC; picks min cycles, then min energy.",
            "memory: initial fill (largest tile of each buffer) and final output drain are exposed latency "
            "ceil(bits/if_width) each; the remaining DRAM traffic takes ceil(bits/if_width) cycles and overlaps "
            "with compute.",
            "total = compute + max(0, middle_memory_cycles - compute) + exposed latency; at 192 bit/cycle both "
            "benchmarks are DRAM-bound (total ~ DRAM bits / 192), at 4096 compute-bound (compute + 7).",
        ],
    }
    path = os.path.join(HERE, "reference.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
