"""Every number says how it was computed: numerics per config and layer, overflows only where counted."""

import json
import math

import pandas as pd

from qsim.cli import main
from qsim.study import run_study

SPEC = {
    "name": "prov", "network": "digits_mlp", "calibration_size": 32, "eval_size": 100,
    "grid": {"wbits": [4], "abits": [8, "float"], "scheme": ["symmetric", "kmeans"], "granularity": ["tensor"]},
    "profiles": ["zen3-avx2"],
}


def test_nets_eval_json_reports_numerics_per_layer(capsys):
    assert main(["nets", "eval", "digits_mlp", "--wbits", "4", "--scheme", "kmeans", "--granularity", "tensor",
                 "--eval-size", "50", "--calib-size", "32", "--format", "json"]) == 0
    res = json.loads(capsys.readouterr().out)
    q = res["quantized"]
    assert q["numerics"].startswith("float: k-means codebook")
    assert q["overflows"] is None
    for layer in q["per_layer"]:
        assert layer["numerics"].startswith("float: k-means") and layer["overflows"] is None
    assert main(["nets", "eval", "digits_mlp", "--wbits", "4", "--eval-size", "50", "--calib-size", "32",
                 "--format", "json"]) == 0
    q = json.loads(capsys.readouterr().out)["quantized"]
    assert q["numerics"] == "integer kernels" and isinstance(q["overflows"], int)
    assert all(p["numerics"] == "integer" and isinstance(p["overflows"], int) for p in q["per_layer"])


def test_study_table_and_manifest_carry_provenance(tmp_path):
    res = run_study(SPEC, tmp_path / "out", progress=False, plots=False)
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    by_label = table.set_index("label")
    assert by_label.loc["W4-symmetric-tensor/A8", "numerics"] == "integer kernels"
    assert by_label.loc["W4-symmetric-tensor/A8", "overflows"] == 0
    kmeans = by_label.loc["W4-kmeans-tensor/A8"]
    assert kmeans["numerics"].startswith("float: k-means") and math.isnan(kmeans["overflows"])
    weight_only = by_label.loc["W4-symmetric-tensor/Afloat"]
    assert weight_only["numerics"].startswith("float: weight-only") and math.isnan(weight_only["overflows"])
    m = res.manifest
    assert m["qsim_version"] and len(m["source_hash"]) == 16 and m["host"]["cpu"] and m["host"]["cores"] >= 1
    assert set(m["inputs"]["digits_mlp"]) == {"weights", "data"}
