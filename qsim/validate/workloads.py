"""Workloads rebuilt from the papers' descriptions (proxies documented where the paper gives totals only)."""

from __future__ import annotations

import math

from qsim.validate import published as P
from qsim.workload import Conv2d, Dense, Elementwise, Workload, get_workload

# What each TPU proxy is, for the table's notes.
TPU_PROXY = {
    "MLP": "{fc} equal square FC layers ({n}×{n}, {w:.1f}M weights vs {W:.0f}M in Table 1) + ReLU each, batch {b}",
    "LSTM": ("{fc} equal square FC layers ({n}×{n}, {w:.1f}M weights vs {W:.0f}M; the gate GEMMs) + {v} vector "
             "layers (2-operand elementwise over batch×{n}: the gate products/sums), batch {b}"),
    "CNN": ("16 conv 3×3, 256→256 ch on 19×19 (pad 1) + ReLU, batch 8: {w:.1f}M weights vs 8M in Table 1; "
            "MAC ops per weight byte = 8·19·19 = 2888 as in Table 1"),
}


def tpu_app(app: str) -> tuple[Workload, str]:
    """The TPU v1 application `app` of Table 1 as a qsim workload, and a note describing the proxy."""
    spec = P.TPU_APPS[app]
    b, layers = spec["batch"], []
    if spec["conv"]:
        for i in range(spec["conv"]):
            conv = Conv2d(f"conv{i}", in_channels=256, out_channels=256, kernel_size=3, input_hw=19,
                          padding=1, batch=b)
            layers += [conv, Elementwise(f"conv{i}.relu", kind="relu", elements=conv.output_elements)]
        wl = Workload(app, layers)
        return wl, TPU_PROXY["CNN"].format(w=wl.total_weights / 1e6)
    n = round(math.sqrt(spec["weights"] / spec["fc"]))
    fc, vec = spec["fc"], spec["vector"]
    for i in range(fc):
        layers.append(Dense(f"fc{i}", in_features=n, out_features=n, batch=b))
        if not vec:
            layers.append(Elementwise(f"fc{i}.relu", kind="relu", elements=b * n))
        # the vector layers spread evenly between the FC layers (vector j follows FC floor(j·fc/vec))
        layers += [Elementwise(f"vec{j}", kind="mul", elements=b * n, operands=2)
                   for j in range(vec) if j * fc // vec == i]
    wl = Workload(app, layers)
    kind = "LSTM" if spec["vector"] or app.startswith("LSTM") else "MLP"
    note = TPU_PROXY[kind].format(fc=spec["fc"], v=spec["vector"], n=n, b=b, w=wl.total_weights / 1e6,
                                  W=spec["weights"] / 1e6)
    return wl, note


def eyeriss_alexnet(batch: int = P.EYERISS_BATCH) -> Workload:
    """AlexNet CONV1–5 exactly as Eyeriss ran them (Table V; grouped CONV2/4/5 as in the original AlexNet)."""
    return Workload("alexnet-conv", [
        Conv2d("CONV1", in_channels=3, out_channels=96, kernel_size=11, input_hw=227, stride=4, batch=batch),
        Conv2d("CONV2", in_channels=96, out_channels=256, kernel_size=5, input_hw=27, padding=2, groups=2,
               batch=batch),
        Conv2d("CONV3", in_channels=256, out_channels=384, kernel_size=3, input_hw=13, padding=1, batch=batch),
        Conv2d("CONV4", in_channels=384, out_channels=384, kernel_size=3, input_hw=13, padding=1, groups=2,
               batch=batch),
        Conv2d("CONV5", in_channels=384, out_channels=256, kernel_size=3, input_hw=13, padding=1, groups=2,
               batch=batch),
    ])


def zigzag_conv() -> Workload:
    """ZigZag's reference layer: 3×3 conv 128→128, 28×28 output (input 28×28 padded by 1), batch 1."""
    return Workload("conv3x3_128_28", [
        Conv2d("conv3x3_128_28", in_channels=128, out_channels=128, kernel_size=3, input_hw=28, padding=1),
    ])


def bitfusion_fc(bench: str) -> Workload:
    """The artifact's RNN / LSTM benchmark: one FC layer over the batch (benchmarks.py get_RNN / get_LSTM)."""
    fin, fout = P.BITFUSION_FC[bench]
    return Workload(bench, [Dense(bench, in_features=fin, out_features=fout, batch=P.BITFUSION_BATCH)])


def mlperf_resnet50(batch: int = P.MLPERF_BATCH) -> Workload:
    """ResNet-50 v1.5 from the zoo (torchvision layout, as MLPerf's reference model)."""
    return get_workload("resnet50", batch=batch)
