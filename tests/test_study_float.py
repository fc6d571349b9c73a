"""Float baselines (`wbits: fp32 | fp16 | bf16`) as marked reference points; plots encode A bits."""

import pandas as pd
import pytest
import yaml

from qsim.cli import main
from qsim.hw import CostQuant, cost_workload, load_profile
from qsim.hw.cost import totals
from qsim.nets import get_network
from qsim.study import StudySpecError, parse_study, run_study
from qsim.study.runner import round_float

SPEC = {
    "name": "floatref", "network": "digits_mlp", "calibration_size": 32, "eval_size": 150,
    "grid": {"wbits": [4, "fp32", "fp16", "bf16"], "abits": [4, 8], "granularity": ["tensor", "channel"]},
    "profiles": ["h100", "bitfusion"],
}


def test_baselines_are_costed_at_their_precision_and_kept_off_the_front(tmp_path, capsys):
    spec_file = tmp_path / "f.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    assert main(["study", "run", str(spec_file), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    table = pd.read_parquet(tmp_path / "out" / "results.parquet")
    base = table[table["wfloat"].notna()]
    # one baseline per format (the rest of the grid does not multiply it), on h100 only
    assert sorted(base["label"]) == ["bf16 (float baseline)", "fp16 (float baseline)", "fp32 (float baseline)"]
    assert set(base["profile"]) == {"h100"}
    wl, h100 = get_network("digits_mlp").workload, load_profile("h100")
    for fmt, bits in (("fp32", 32), ("fp16", 16), ("bf16", 16)):
        row = base[base["wfloat"] == fmt].iloc[0]
        assert row["precision_used"] == fmt
        api = totals(cost_workload(wl, CostQuant(w_bits=bits, a_bits=bits, w_format=fmt, a_format=fmt,
                                                 granularity="tensor", scale_bits=0), h100))
        assert row["energy_j"] == pytest.approx(api["energy_j"]) and row["memory_bytes"] == api["memory_bytes"]
        assert row["memory_bytes"] == wl.total_weights * bits / 8
    fp32 = base[base["wfloat"] == "fp32"].iloc[0]
    assert fp32["accuracy"] == fp32["float_accuracy"] and fp32["numerics"] == "float: fp32 baseline"
    pareto = pd.read_csv(tmp_path / "out" / "pareto.csv")
    assert not pareto["label"].str.contains("baseline").any()
    assert "* fp32 (float baseline)" in printed and "note: fp32 (float baseline) not shown on bitfusion" in printed
    svg = (tmp_path / "out" / "plots" / "pareto_digits_mlp_h100.svg").read_text()
    assert "float baseline" in svg and "A8: accuracy" in svg and "A4: accuracy" in svg
    assert "float baseline" not in (tmp_path / "out" / "plots" / "pareto_digits_mlp_bitfusion.svg").read_text()


def test_float_formats_in_the_grid_are_validated():
    with pytest.raises(StudySpecError, match=r"grid.wbits: 'fp8' is not allowed.*float baseline format"):
        parse_study(dict(SPEC, grid={"wbits": ["fp8"]}))
    spec = parse_study(dict(SPEC, profiles=["h100"], grid={"wbits": [4], "abits": ["bf16", "float"]}))
    assert sorted(c.afloat for c in spec.configs()) == ["bf16", "fp16"]


def test_bf16_rounding_is_nearest_even():
    import numpy as np

    x = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-7, -3.14159], np.float32)
    got = round_float(x, "bf16")
    assert got.tolist() == [1.0, 1.0, 1 + 2**-6, 1 + 2**-7, -3.140625]
    assert (got.view(np.uint32) & 0xFFFF == 0).all()
