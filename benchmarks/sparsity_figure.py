"""The README's sparsity × bit-width figure and table from a finished `studies/sparsity.yaml` run.

    qsim study run studies/sparsity.yaml && python benchmarks/sparsity_figure.py results/sparsity
Writes docs/images/sparsity_bits.png and prints, per profile, the cheapest configuration (energy per inference)
within one point of the dense W8 network's accuracy.
"""
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

MARKERS = {"dense": "o", "unstructured": "s", "channel": "^", "2:4": "D"}
COLORS = {2: "#440154", 4: "#21918c", 8: "#fde725"}


def main(results: Path, out: Path) -> None:
    t = pd.read_parquet(results / "results.parquet")
    t = t[t["wfloat"].isna()] if "wfloat" in t else t
    t["form"] = t.apply(lambda r: "dense" if not r["sparsity"] else r["sparsity_pattern"], axis=1)
    t["accuracy"] = t["accuracy"] * 100.0  # the study table holds fractions
    profiles = list(dict.fromkeys(t["profile"]))
    fig, axes = plt.subplots(1, len(profiles), figsize=(4.2 * len(profiles), 3.8), sharey=True)
    rows = []
    for ax, prof in zip(axes, profiles):
        d = t[t["profile"] == prof]
        for (form, bits), g in d.groupby(["form", "wbits"]):
            ax.scatter(g["energy_j"] * 1e6, g["accuracy"], marker=MARKERS[form], c=COLORS.get(bits, "grey"),
                       edgecolors="black", s=30 + 120 * g["sparsity"], label=f"{form} W{bits}")
        ax.set_title(prof)
        ax.set_xlabel("energy per inference [µJ]")
        ax.grid(alpha=0.3)
        ref = d[(d["form"] == "dense") & (d["wbits"] == 8)]["accuracy"].max()
        ok = d[d["accuracy"] >= ref - 1.0].sort_values("energy_j")
        best, dense = ok.iloc[0], d[(d["form"] == "dense") & (d["wbits"] == 8)].iloc[0]
        rows.append((prof, best["label"], best["accuracy"], best["energy_j"] * 1e6, dense["energy_j"] * 1e6,
                     best["memory_bytes"] / 1024, dense["memory_bytes"] / 1024))
    axes[0].set_ylabel("accuracy [%]")
    handles, labels = axes[0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    fig.legend(uniq.values(), uniq.keys(), loc="lower center", ncol=6, fontsize=8, frameon=False)
    fig.suptitle("mnist_mlp: pruning pattern (marker, size = sparsity) × weight bits (colour), A8")
    fig.tight_layout(rect=(0, 0.12, 1, 0.95))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    print("| profile | cheapest within 1 point of dense W8 | accuracy | energy µJ (dense W8) | weights KiB (dense W8) |")
    print("|---|---|---|---|---|")
    for prof, label, acc, e, e8, kib, kib8 in rows:
        print(f"| {prof} | {label} | {acc:.2f} % | {e:.3g} ({e8:.3g}) | {kib:.1f} ({kib8:.1f}) |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results/sparsity"), Path("docs/images/sparsity_bits.png"))
