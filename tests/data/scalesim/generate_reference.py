"""Regenerate `reference.json` by running the real SCALE-Sim (PyPI `scalesim`).

Run with SCALE-Sim's own interpreter, never qsim's (it needs numpy<2):

    python -m venv /tmp/scalesim-venv
    /tmp/scalesim-venv/bin/pip install scalesim==3.0.0 "numpy<2"
    OPENBLAS_NUM_THREADS=1 /tmp/scalesim-venv/bin/python tests/data/scalesim/generate_reference.py

Every layer of `conv_layers.csv` and `gemm_layers.csv` is simulated alone (a
one-row topology file) on every array in ARRAYS and every dataflow, with
`scalesim_calc.cfg` as the template (InterfaceBandwidth CALC = stall-free), so
the wall time of each `run_scale()` is the cost of one layer.
"""

from __future__ import annotations

import csv
import datetime
import json
import platform
import re
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from scalesim.scale_sim import scalesim

HERE = Path(__file__).resolve().parent
ARRAYS = [(8, 8), (16, 16), (32, 32), (8, 32), (32, 8)]
DATAFLOWS = ["os", "ws", "is"]
TOPOLOGIES = [("conv_layers.csv", False), ("gemm_layers.csv", True)]
REPORT_FIELDS = [
    "total_cycles_incl_prefetch", "total_cycles", "stall_cycles",
    "overall_util_pct", "mapping_efficiency_pct", "compute_util_pct",
]


def _config_text(template: str, rows: int, cols: int, dataflow: str) -> str:
    for key, value in (("ArrayHeight", rows), ("ArrayWidth", cols), ("Dataflow", dataflow)):
        template = re.sub(rf"(?m)^{key}\s*[:=].*$", f"{key}: {value}", template)
    return template


def _run_one(work: Path, header: str, row: str, gemm: bool, rows: int, cols: int, df: str) -> dict:
    cfg = work / "run.cfg"
    cfg.write_text(_config_text((HERE / "scalesim_calc.cfg").read_text(), rows, cols, df))
    topo = work / "topo.csv"
    topo.write_text(header + "\n" + row + "\n")
    layout = work / "layout.csv"  # SCALE-Sim opens a layout file even when custom layouts are off
    layout.write_text(header + "\n")
    sim = scalesim(save_disk_space=True, verbose=False, config=str(cfg), topology=str(topo),
                   layout=str(layout), input_type_gemm=gemm)
    t0, c0 = time.perf_counter(), time.process_time()
    sim.run_scale(top_path=str(work / "out"))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    layer_sim = sim.runner.single_layer_sim_object_list[0]
    opmat = layer_sim.op_mat_obj
    with open(work / "out" / "qsim_reference" / "COMPUTE_REPORT.csv") as fh:
        report = list(csv.reader(fh))[1]
    values = [v.strip() for v in report[1:1 + len(REPORT_FIELDS)]]
    out = {
        # SCALE-Sim's own GEMM view: M = ofmap pixels per filter, N = filters, K = window size
        "M": int(opmat.ofmap_px_per_filt), "N": int(opmat.num_filters), "K": int(opmat.conv_window_size),
        "rows": rows, "cols": cols, "dataflow": df,
        # rows of the compute demand matrices = cycles of the stall-free schedule, fill/drain included
        "demand_rows": int(layer_sim.compute_system.get_ofmap_demand_mat().shape[0]),
    }
    for name, value in zip(REPORT_FIELDS, values):
        out[name] = int(value) if name.endswith("cycles") or name.endswith("prefetch") else float(value)
    out["scalesim_wall_s"] = round(wall, 4)
    out["scalesim_cpu_s"] = round(cpu, 4)  # SCALE-Sim is single-threaded: its cost on an unshared core
    return out


def main() -> int:
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for fname, gemm in TOPOLOGIES:
            lines = [ln.rstrip("\n") for ln in (HERE / fname).read_text().splitlines() if ln.strip()]
            header, rows_ = lines[0], lines[1:]
            for row in rows_:
                name = row.split(",")[0].strip()
                for rows, cols in ARRAYS:
                    for df in DATAFLOWS:
                        case = {"layer": name, "topology": fname}
                        case.update(_run_one(work, header, row, gemm, rows, cols, df))
                        cases.append(case)
                        print(f"{name:12s} {rows:3d}x{cols:<3d} {df} cycles={case['total_cycles']:6d} "
                              f"stalls={case['stall_cycles']} wall={case['scalesim_wall_s']:.3f}s cpu={case['scalesim_cpu_s']:.3f}s", flush=True)
    doc = {
        "generator": "tests/data/scalesim/generate_reference.py",
        "scalesim_version": version("scalesim"),
        "numpy_version": version("numpy"),
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "generated_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mode": "InterfaceBandwidth CALC (stall-free), save_disk_space=True, verbose=False",
        "cases": cases,
    }
    (HERE / "reference.json").write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
