"""One answer per question: weight storage and API/CLI defaults agree.

* `CostQuant.w_storage_bits` equals `QTensor.storage_bits` for every scheme on every layer of
  the runnable networks, and so does the cost model's `memory_bytes`, for every scheme (k-means
  codebooks, ragged last groups and NVFP4's tensor scale included);
* `qsim simulate --format json` equals `cost_workload` with the API's defaults.
"""

import json

import numpy as np
import pytest

from qsim.cli import main
from qsim.hw import CostQuant, cost_workload, load_profile
from qsim.hw.cost import totals
from qsim.nets import get_network
from qsim.quant import QuantSpec, quantize
from qsim.workload.zoo import get_workload

NETS = ["digits_cnn", "digits_mlp", "mnist_dwsep", "mnist1d_cnn"]
SPECS = [
    QuantSpec(bits=4, scheme="symmetric", granularity="tensor"),
    QuantSpec(bits=4, scheme="symmetric", granularity="channel", scale_dtype="fp16"),
    QuantSpec(bits=3, scheme="affine", granularity="channel"),
    QuantSpec(bits=4, scheme="symmetric", granularity="group", group_size=16, scale_dtype="fp16"),
    QuantSpec(bits=2, scheme="affine", granularity="group", group_size=32, scale_dtype="bf16"),
    QuantSpec(bits=5, scheme="pow2", granularity="channel"),
    QuantSpec(scheme="binary", granularity="channel"),
    QuantSpec(scheme="ternary", granularity="tensor"),
    QuantSpec(bits=3, scheme="kmeans", granularity="tensor"),
    QuantSpec(bits=4, scheme="kmeans", granularity="tensor"),
    QuantSpec(scheme="mxint8"), QuantSpec(scheme="mxfp8_e4m3"), QuantSpec(scheme="mxfp6_e2m3"),
    QuantSpec(scheme="mxfp4"), QuantSpec(scheme="nvfp4"),
]


def _layer_qtensor(w: np.ndarray, spec: QuantSpec):
    """Quantized as the network executor does: an (out, K) matrix, channel axis 0, groups along K."""
    w2 = w.reshape(w.shape[0], -1)
    axis = 0 if spec.granularity == "channel" else None if spec.granularity in ("tensor", "global") else -1
    return quantize(w2, spec, axis=axis), w2.shape


@pytest.mark.parametrize("net_name", NETS)
def test_weight_storage_equals_qtensor_storage_bits(net_name):
    net = get_network(net_name)
    params = net.weights()
    workload = net.workload
    for spec in SPECS:
        q = CostQuant.from_specs(spec, QuantSpec(bits=8, scheme="affine"))
        cost = cost_workload(workload, q, load_profile("zen3-avx2")).set_index("name")
        for op in net.arch.mac_ops:
            qt, (n_out, k) = _layer_qtensor(params[f"{op.name}.w"], spec)
            assert q.w_storage_bits(n_out, k) == qt.storage_bits, (net_name, op.name, spec.label())
            # exact for every scheme, ragged last groups and NVFP4's tensor scale included
            assert cost.loc[op.name, "memory_bytes"] * 8 == pytest.approx(qt.storage_bits, rel=1e-12), \
                (net_name, op.name, spec.label())


def test_kmeans_codebook_is_counted():
    spec = QuantSpec(bits=4, scheme="kmeans", granularity="tensor")
    q = CostQuant.from_specs(spec)
    assert q.codebook_bits == 16 * 32
    plain = CostQuant(w_bits=4, granularity="tensor")
    wl = get_network("digits_mlp").workload
    prof = load_profile("zen3-avx2")
    extra = totals(cost_workload(wl, q, prof))["memory_bytes"] - totals(cost_workload(wl, plain, prof))["memory_bytes"]
    n_layers = len(wl.mac_layers)
    assert extra == pytest.approx(n_layers * (16 * 32 - 16) / 8)  # codebook instead of one fp16 scale


def test_cli_simulate_equals_cost_workload_with_the_api_defaults(capsys):
    args = ["simulate", "--profile", "a100", "--model", "resnet50", "--wbits", "4", "--abits", "8",
            "--granularity", "group", "--group-size", "32", "--format", "json"]
    assert main(args) == 0
    cli = json.loads(capsys.readouterr().out)["total"]
    api = totals(cost_workload(get_workload("resnet50"), CostQuant(w_bits=4, a_bits=8, granularity="group",
                                                                   group_size=32), load_profile("a100")))
    for key in ("memory_bytes", "cycles", "latency_s", "energy_j", "macs"):
        assert cli[key] == pytest.approx(api[key], rel=1e-12), key
    assert CostQuant().scale_bits == 16


def _defaults(*argv):
    """Defaults of one sub-command's options, as argparse fills them in."""
    from qsim.cli import build_parser

    return vars(build_parser().parse_args(list(argv)))


def test_shared_options_have_one_default_in_api_cli_and_study_specs():
    import inspect
    from dataclasses import fields

    from qsim.nets.quant_exec import evaluate
    from qsim.study.spec import GRID_DEFAULTS

    sim = _defaults("simulate", "--profile", "h100", "--model", "resnet18", "--wbits", "8", "--abits", "8")
    api = {f.name: f.default for f in fields(CostQuant)}
    for cli_name, api_name in (("scale_bits", "scale_bits"), ("granularity", "granularity"),
                               ("zero_point", "zero_point"), ("acc_bits", "acc_bits"), ("wformat", "w_format"),
                               ("aformat", "a_format"), ("group_size", "group_size")):
        assert sim[cli_name] == api[api_name], cli_name
    ev = _defaults("nets", "eval", "digits_mlp")
    params = inspect.signature(evaluate).parameters
    for cli_name, api_name in (("calib_size", "calib_size"), ("policy", "policy"), ("acc_bits", "acc_bits"),
                               ("overflow", "overflow"), ("eval_size", "eval_size")):
        assert ev[cli_name] == params[api_name].default, cli_name
    # a study grid key left out means what `qsim nets eval` means without the option
    for cli_name, grid_key in (("wbits", "wbits"), ("abits", "abits"), ("scheme", "scheme"),
                               ("ascheme", "act_scheme"), ("granularity", "granularity"),
                               ("calibration", "calibration"), ("policy", "policy"), ("acc_bits", "acc_bits")):
        assert GRID_DEFAULTS[grid_key] == [ev[cli_name]], grid_key
    from qsim.study.spec import parse_study

    spec = parse_study({"name": "d", "network": "digits_mlp", "profiles": ["h100"]})
    assert spec.calibration_size == ev["calib_size"]
