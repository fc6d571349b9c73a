"""The README's Deep Compression table: `python -m qsim.prune.table` (minutes; every pruned and
fine-tuned model is cached, so a rerun takes seconds).

Each row is one `qsim.prune.evaluate_pruned` call on the integer kernels (activations int8
affine per tensor, min-max over 256 calibration samples); `weight bytes` counts every stored
bit of the MAC weights (values, sparse indices, scales, codebooks, Huffman tables; biases
excluded), `ratio` is fp32 weight bytes / weight bytes.
"""

from __future__ import annotations

import os



def _dc(sparsity, epochs, steps=1):
    return dict(sparsity=sparsity, sparsity_pattern="global", fine_tune_epochs=epochs, steps=steps, compress="deep")


# (network, label, wspec kwargs, pruning kwargs)
ROWS = [
    ("mnist_mlp", "int8 per channel, dense", dict(bits=8, granularity="channel"), None),
    ("mnist_mlp", "2:4 + int8 per channel", dict(bits=8, granularity="channel"),
     dict(sparsity_pattern="2:4", fine_tune_epochs=4)),
    ("mnist_mlp", "random + int8 per channel", dict(bits=8, granularity="channel"),
     dict(sparsity=0.3, sparsity_pattern="random")),
    ("mnist_mlp", "random + int8 per channel", dict(bits=8, granularity="channel"),
     dict(sparsity=0.3, sparsity_pattern="random", fine_tune_epochs=4)),
    ("mnist_mlp", "magnitude + int8 per channel", dict(bits=8, granularity="channel"),
     dict(sparsity=0.3, sparsity_pattern="unstructured")),
    ("mnist_mlp", "Deep Compression", dict(bits=5), _dc(0.9, 6)),
    ("mnist_mlp", "Deep Compression", dict(bits=4), _dc(0.92, 6)),
    ("mnist_mlp", "Deep Compression", dict(bits=4), _dc(0.95, 6, 3)),
    ("mnist_cnn", "int8 per channel, dense", dict(bits=8, granularity="channel"), None),
    ("mnist_cnn", "channel + int8 per channel", dict(bits=8, granularity="channel"),
     dict(sparsity=0.5, sparsity_pattern="channel", fine_tune_epochs=4)),
    ("mnist_cnn", "Deep Compression", dict(bits=5), _dc(0.8, 6, 3)),
    ("mnist_cnn", "Deep Compression", dict(bits=4), _dc(0.85, 6, 3)),
    ("mnist_cnn", "Deep Compression", dict(bits=4), _dc(0.9, 6, 3)),
    ("mnist_dwsep", "Deep Compression", dict(bits=5), _dc(0.8, 6, 3)),
    ("mnist_dwsep", "Deep Compression", dict(bits=4), _dc(0.85, 6, 3)),
    ("digits_cnn", "Deep Compression", dict(bits=5), _dc(0.8, 6, 3)),
    ("digits_cnn", "Deep Compression", dict(bits=4), _dc(0.85, 6, 3)),
    ("fashion_cnn", "Deep Compression", dict(bits=5), _dc(0.8, 6, 3)),
    ("mnist1d_cnn", "Deep Compression", dict(bits=5), _dc(0.5, 20, 3)),
    ("mnist1d_cnn", "Deep Compression", dict(bits=5), _dc(0.7, 20, 3)),
]


def run(rows=ROWS) -> list[dict]:
    from qsim.prune import evaluate_pruned
    from qsim.quant import QuantSpec

    aspec = QuantSpec(bits=8, scheme="affine")
    out = []
    for name, label, wkw, pkw in rows:
        wspec = QuantSpec(**wkw)
        res = evaluate_pruned(name, wspec, aspec, **(pkw or {"sparsity": 0.0}))
        q = res["quantized"]
        pr = q["pruning"]
        out.append({"network": name, "method": label, "fp32": res["float"]["metric"], "pattern": pr["pattern"],
                    "sparsity": q["sparsity"], "bits": wspec.bits, "steps": pr["steps"],
                    "fine_tune_epochs": pr["fine_tune_epochs"], "accuracy": q["metric"],
                    "pruned_float": pr["pruned_float_metric"], "weight_bytes": q["weight_bytes"],
                    "ratio": q["compression_ratio"], "formats": sorted({p["format"] for p in q["per_layer"]}),
                    "numerics": q["numerics"], "overflows": q["overflows"],
                    "layer_sparsity": {p["layer"]: p["sparsity"] for p in q["per_layer"]}})
    return out


def markdown(rows: list[dict]) -> str:
    lines = ["| network | method | sparsity (pattern) | bits | fine-tune | accuracy (fp32) | Δ points | weight bytes | ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ft = f"{r['steps']}×{r['fine_tune_epochs']} ep" if r["fine_tune_epochs"] else "—"
        sp = f"{100 * r['sparsity']:.1f} % ({r['pattern']})" if r["sparsity"] else "0"
        lines.append(f"| {r['network']} | {r['method']} | {sp} | {r['bits']} | {ft} | {100 * r['accuracy']:.2f} % "
                     f"({100 * r['fp32']:.2f} %) | {100 * (r['accuracy'] - r['fp32']):+.2f} | "
                     f"{r['weight_bytes']:,.0f} | {r['ratio']:.1f}× |")
    return "\n".join(lines)


def main() -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    print(markdown(run()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
