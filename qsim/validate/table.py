"""The validation table: each published data point against qsim's public cost API.

    rows = validation_table()      # list of {"name", "source", "quantity", "unit", "published", "qsim",
                                   #          "ratio", "tolerance", "ok"[, "note"]}
    print(render_table(rows))

ratio = qsim / published; ok = |ratio − 1| ≤ tolerance. Nothing here tunes a profile: each row runs a
shipped profile (or one whose DRAM bandwidth is set to the experiment's, via `validate_profile_dict`).
"""

from __future__ import annotations

import math
from pathlib import Path

from qsim.hw import tech
from qsim.hw import CostQuant, cost_workload, load_profile, totals, validate_profile_dict
from qsim.validate import published as P
from qsim.validate import workloads as W

W8A8 = CostQuant(w_bits=8, a_bits=8)
FIELDS = ("name", "source", "quantity", "unit", "published", "qsim", "ratio", "tolerance", "ok")


def row(name, source, quantity, unit, published, qsim, tolerance, note=None) -> dict:
    published, qsim = float(published), float(qsim)
    if not (math.isfinite(qsim) and math.isfinite(published) and published > 0):
        raise ValueError(f"validation row {name!r}: qsim {qsim!r} / published {published!r} is not a finite ratio")
    ratio = qsim / published
    out = {"name": name, "source": source, "quantity": quantity, "unit": unit, "published": published,
           "qsim": qsim, "ratio": ratio, "tolerance": float(tolerance), "ok": bool(abs(ratio - 1.0) <= tolerance)}
    if note:
        out["note"] = note
    return out


def with_dram_bandwidth(profile, bytes_per_s: float, suffix: str):
    """A validated copy of `profile` whose DRAM bandwidth is `bytes_per_s` (everything else unchanged)."""
    data = load_profile(profile).model_dump(mode="json")
    data["name"] = f"{data['name']}-{suffix}"
    data["dram"]["bandwidth"] = float(bytes_per_s)
    return validate_profile_dict(data, f"<{data['name']}>")


def _tops(workload, profile) -> float:
    t = totals(cost_workload(workload, W8A8, profile))
    return 2.0 * t["macs"] / t["latency_s"] / 1e12


# --- TPU v1 ---------------------------------------------------------------------------------------
def tpu_rows() -> list[dict]:
    rows, speedups = [], {}
    gddr5 = with_dram_bandwidth("tpu-v1", P.TPU_GDDR5_BANDWIDTH, "gddr5")
    for app, published in P.TPU_TOPS.items():
        wl, proxy = W.tpu_app(app)
        tops = _tops(wl, "tpu-v1")
        rows.append(row(f"tpu-v1 {app} TOPS", f"{P.TPU_PAPER}, Table 3 (measured TeraOps/s); workload: Table 1",
                        "throughput", "TOPS", published, tops, 0.30, f"proxy: {proxy}; TOPS = 2·MACs/latency"))
        speedups[app] = _tops(wl, gddr5) / tops
    bound = [a for a in P.TPU_TOPS if a != "CNN0"]
    mean = sum(speedups[a] for a in bound) / len(bound)
    per_app = ", ".join(f"{a} {speedups[a]:.2f}×" for a in bound)
    rows.append(row("tpu-v1 MLP/LSTM speedup with GDDR5", f"{P.TPU_PAPER}, abstract and §7",
                    "speedup", "×", P.TPU_GDDR5_SPEEDUP_MEMORY_BOUND, mean, 0.30,
                    f"DRAM 34 → 180 GB/s (K80 GDDR5, §7); the paper states 'triple achieved TOPS' as an average, "
                    f"so qsim's value is the mean over MLP0, MLP1, LSTM0, LSTM1 (qsim per app: {per_app})"))
    rows.append(row("tpu-v1 CNN0 speedup with GDDR5", f"{P.TPU_PAPER}, Table 3 (86 of 92 peak TOPS) and §7",
                    "speedup", "×", P.TPU_GDDR5_SPEEDUP_CNN0, speedups["CNN0"], 0.30,
                    "CNN0 is compute-bound: at most 92/86 = 1.07× from more bandwidth"))
    return rows


# --- Eyeriss --------------------------------------------------------------------------------------
def eyeriss_rows() -> list[dict]:
    # 16-bit operands and psums: Eyeriss's PEs accumulate into 16-bit psum scratchpads (JSSC 2017 §III).
    df = cost_workload(W.eyeriss_alexnet(), CostQuant(w_bits=16, a_bits=16, acc_bits=16), "eyeriss").set_index("name")
    if "bytes_glb" not in df.columns:
        raise ValueError("the eyeriss profile has no memory level named 'glb' (the global buffer)")
    src = f"{P.EYERISS_PAPER}"
    rows = []
    for layer in P.EYERISS_LAYERS:
        pub, r = P.EYERISS[layer], df.loc[layer]
        chip_j = float(r["energy_j"]) - float(r["energy_dram_j"])
        rows += [
            row(f"eyeriss AlexNet {layer} latency", src, "latency", "ms", pub["latency_ms"],
                1e3 * r["latency_s"], 0.30),
            row(f"eyeriss AlexNet {layer} DRAM traffic", src, "bytes_dram", "MB", pub["dram_mb"],
                r["bytes_dram"] / 1e6, 0.50, "MB = 10^6 bytes"),
            row(f"eyeriss AlexNet {layer} global-buffer traffic", src, "bytes_glb", "MB", pub["glb_mb"],
                r["bytes_glb"] / 1e6, 0.50, "MB = 10^6 bytes"),
            row(f"eyeriss AlexNet {layer} power", src, "power", "mW", pub["power_mw"],
                1e3 * chip_j / r["latency_s"], 0.30,
                "chip power = (energy − DRAM energy) / latency: the measured power excludes off-chip DRAM"),
        ]
    rows.append(row("eyeriss AlexNet CONV1-5 latency", src, "latency", "ms", P.EYERISS_TOTAL_LATENCY_MS,
                    1e3 * df["latency_s"].sum(), 0.30))
    return rows


# --- MLPerf ---------------------------------------------------------------------------------------
def mlperf_rows() -> list[dict]:
    wl, rows = W.mlperf_resnet50(), []
    for profile, pub in P.MLPERF.items():
        t = totals(cost_workload(wl, W8A8, profile))
        rows.append(row(f"{profile} ResNet-50 offline", f"MLPerf Inference {pub['round']} datacenter, "
                        f"ResNet-50 offline: {pub['url']}", "throughput", "img/s", pub["img_per_s"],
                        P.MLPERF_BATCH / t["latency_s"], 0.30,
                        f"zoo resnet50 (v1.5), batch {P.MLPERF_BATCH}, W8A8; throughput = batch / latency"))
    return rows


# --- Bit Fusion -------------------------------------------------------------------------------------
def bitfusion_rows() -> list[dict]:
    base, rows = load_profile("bitfusion"), []
    for bits_per_cycle, cycles in P.BITFUSION_CYCLES.items():
        prof = with_dram_bandwidth(base, bits_per_cycle / 8 * base.clock, f"dram{bits_per_cycle}b")
        for bench, published in cycles.items():
            t = totals(cost_workload(W.bitfusion_fc(bench), CostQuant(w_bits=4, a_bits=4), prof))
            fin, fout = P.BITFUSION_FC[bench]
            rows.append(row(f"bitfusion {bench} cycles, DRAM {bits_per_cycle} bit/cycle", P.BITFUSION_SOURCE,
                            "cycles", "cycles", published, t["cycles"], 0.30,
                            f"one FC {fin}→{fout}, batch {P.BITFUSION_BATCH}, w4a4 on the bitfusion profile with "
                            f"its DRAM bandwidth set to {bits_per_cycle} bit/cycle"))
    return rows


# --- ZigZag -----------------------------------------------------------------------------------------
ZIGZAG_PROFILE = Path(__file__).parent / "profiles" / "zigzag_tpu_like.yaml"
ZIGZAG_COMPONENTS = ("mac", "rf_128B", "rf_2B", "sram_2MB", "dram")


def zigzag_rows() -> list[dict]:
    profile, wl, rows = load_profile(ZIGZAG_PROFILE), W.zigzag_conv(), []
    for bits, pub in P.ZIGZAG.items():
        # ZigZag's precision convention: W = I = b bits, partial sums 2b bits.
        t = totals(cost_workload(wl, CostQuant(w_bits=bits, a_bits=bits, acc_bits=2 * bits), profile))
        tag = f"zigzag tpu_like conv3x3 w{bits}a{bits}"
        rows.append(row(f"{tag} cycles", P.ZIGZAG_SOURCE, "cycles", "cycles", pub["cycles"], t["cycles"], 0.10,
                        "profile qsim/validate/profiles/zigzag_tpu_like.yaml built from the JSON's hardware"))
        for comp in ZIGZAG_COMPONENTS:
            rows.append(row(f"{tag} energy {comp}", P.ZIGZAG_SOURCE, f"energy_{comp}_j", "µJ", pub[comp] / 1e6,
                            1e6 * t[f"energy_{comp}_j"], 0.30))
    return rows


# --- per-operation energy -------------------------------------------------------------------------
HOROWITZ_SOURCE = "Horowitz, 'Computing's energy problem', ISSCC 2014, energy table at 45 nm / 0.9 V (REFERENCE.md 4.1)"
HOROWITZ_45NM_PJ = {"int8 multiply": 0.2, "int32 multiply": 3.1, "int8 add": 0.03, "int32 add": 0.1,
                    "fp16 multiply": 1.1, "fp32 multiply": 3.7, "fp16 add": 0.4, "fp32 add": 0.9}


def energy_rows() -> list[dict]:
    """Per-operation energies of the technology tables (qsim.hw.tech) against the sources they chose.

    Arithmetic follows Horowitz (qsim's default; hwcomponents' Aladdin numbers are 4.6x larger for multiplies:
    qsim.hw.tech's docstring says why Horowitz is the default, and `source="aladdin"` gives the other), SRAMs
    follow CACTI 7 through hwcomponents.
    """
    rows = []
    ops = {"int8 multiply": tech.int_mul_pj(8, 8), "int32 multiply": tech.int_mul_pj(32, 32),
           "int8 add": tech.int_add_pj(8), "int32 add": tech.int_add_pj(32),
           "fp16 multiply": tech.float_mul_pj("fp16", "fp16"), "fp32 multiply": tech.float_mul_pj("fp32", "fp32"),
           "fp16 add": tech.float_add_pj(16), "fp32 add": tech.float_add_pj(32)}
    for name, pub in HOROWITZ_45NM_PJ.items():
        rows.append(row(f"45nm {name} energy", HOROWITZ_SOURCE, "energy per operation", "pJ", pub, float(ops[name]),
                        0.30, "qsim.hw.tech (mac.yaml, source 'horowitz'): multiplier k·b_w·b_a, adder k·b"))
    for bits, pub in P.HWC_INT_MAC_ACC32_PJ.items():
        rows.append(row(f"45nm int{bits} MAC energy (Aladdin option)", P.HWCOMPONENTS_SOURCE, "energy per MAC", "pJ",
                        pub, float(tech.mac_pj(bits, bits, 32, source="aladdin")), 0.30,
                        f"qsim.hw.tech.mac_pj({bits}, {bits}, 32, source='aladdin') vs AladdinIntMAC"))
    for kib, pub in P.HWC_SRAM_READ_64B_PJ.items():
        size = f"{kib} KiB" if kib < 1024 else f"{kib // 1024} MiB"
        rows.append(row(f"45nm SRAM {size} 64-bit read energy", P.HWCOMPONENTS_SOURCE, "energy per access", "pJ",
                        pub, float(tech.sram_pj_per_access(kib * 1024, 64)), 0.30,
                        f"qsim.hw.tech.sram_pj_per_access({kib * 1024}, 64) (CACTI 7 fit) vs CACTI 7"))
    return rows


SECTIONS = [tpu_rows, eyeriss_rows, mlperf_rows, bitfusion_rows, zigzag_rows, energy_rows]


def validation_table() -> list[dict]:
    """Every published data point with qsim's value (see the module docstring); a known miss's reason is
    appended to its note."""
    from qsim.validate.known_misses import KNOWN_MISSES

    rows = [r for section in SECTIONS for r in section()]
    for r in rows:
        if not r["ok"] and r["name"] in KNOWN_MISSES:
            r["note"] = "; ".join(filter(None, [r.get("note"), f"known miss: {KNOWN_MISSES[r['name']]}"]))
    return rows


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1e4 else f"{x:.4g}"


def render_table(rows: list[dict]) -> str:
    """Aligned text table, one line per row, ✓/✗ for within/outside tolerance."""
    head = ("name", "unit", "published", "qsim", "ratio", "tol", "ok")
    body = [(r["name"], r["unit"], _fmt(r["published"]), _fmt(r["qsim"]), f"{r['ratio']:.3f}",
             f"±{r['tolerance']:.0%}", "✓" if r["ok"] else "✗") for r in rows]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
    left = {0, 1}

    def fmt(line):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))

    n_ok = sum(r["ok"] for r in rows)
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths), *map(fmt, body),
                      f"{n_ok} of {len(rows)} rows within tolerance"])


def render_markdown(rows: list[dict]) -> str:
    """The README's table: one line per row, ✓ or ✗ (known miss), and the count within tolerance."""
    lines = ["| row | published | qsim | ratio | tolerance | ok |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} ({r['unit']}) | {_fmt(r['published'])} | {_fmt(r['qsim'])} | {r['ratio']:.2f} | "
                     f"±{r['tolerance']:.0%} | {'✓' if r['ok'] else '✗ (known miss)'} |")
    n_ok = sum(r["ok"] for r in rows)
    lines.append(f"\n{n_ok} of {len(rows)} rows within tolerance (`qsim validate --format markdown`; sources and "
                 f"notes per row: `--format json`).")
    return "\n".join(lines)
