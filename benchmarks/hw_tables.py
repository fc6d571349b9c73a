"""Print the README's hardware tables (Markdown) from finished study results.

    qsim study run studies/hardware.yaml && qsim study run studies/llm_weight_only.yaml
    python benchmarks/hw_tables.py [RESULTS_DIR]      # default: results/
"""
import sys
from pathlib import Path

import pandas as pd

HW_ORDER = ["h100", "a100", "t4", "bitfusion", "zcu104", "alveo-u250", "tpu-v1", "eyeriss", "zen3-avx2", "xeon-spr-amx"]
LLM_COLS = ["W8-symmetric-g128/Afloat", "W4-symmetric-g128/Afloat", "W4-symmetric-g32/Afloat",
            "W3-symmetric-g128/Afloat", "W2-symmetric-g64/Afloat", "mxfp8_e4m3/Afloat", "mxfp4/Afloat", "nvfp4/Afloat"]


def fmt(v: float) -> str:
    return f"{v:.3g}" if v < 10 else f"{v:,.0f}"


def main(root: Path) -> None:
    hw = pd.read_parquet(root / "hardware" / "results.parquet")
    d = hw[(hw["abits"] == 8) & (hw["granularity"] == "channel")]
    lat = d.pivot_table(index="profile", columns="wbits", values="latency_s", aggfunc="min") * 1e6
    ov = d.pivot_table(index="profile", columns="wbits", values="overhead_s", aggfunc="min") * 1e6
    print("| profile | W2/A8 | W4/A8 | W8/A8 | of which fixed overheads |\n|---|---|---|---|---|")
    for p in [p for p in HW_ORDER if p in lat.index]:
        print(f"| {p} | " + " | ".join(fmt(lat.loc[p, b]) for b in (2, 4, 8)) + f" | {fmt(ov.loc[p, 8])} |")
    llm = pd.read_parquet(root / "llm_weight_only" / "results.parquet")
    dec = llm[llm["target"].str.contains("decode")]
    piv = dec.pivot_table(index="profile", columns="label", values="latency_s", aggfunc="min") * 1e6
    mem = dec.groupby("label")["memory_bytes"].first() / 2**20
    names = [c.split("/")[0].replace("-symmetric-", " ").replace("_e4m3", "").upper() for c in LLM_COLS]
    print("\n| profile | " + " | ".join(names) + " |\n" + "|---" * (len(names) + 1) + "|")
    for p in [p for p in ("h100", "a100", "xeon-spr-amx", "zen3-avx2") if p in piv.index]:
        print(f"| {p} | " + " | ".join(fmt(piv.loc[p, c]) for c in LLM_COLS) + " |")
    print("| weights (MiB) | " + " | ".join(f"{mem[c]:.1f}" for c in LLM_COLS) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results"))
