"""Hardware profiles: shipped files validate, package copy in sync, bad files report every problem."""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from qsim.cli import main
from qsim.hw import ProfileError, list_profiles, load_profile, validate_profile_dict
from qsim.hw.profiles import PACKAGE_DIR, REPO_DIR
from qsim.hw.schema import parse_quantity

SHIPPED = sorted(p.stem for p in REPO_DIR.glob("*.yaml"))
REQUIRED = {"zen3-avx2", "xeon-icx-vnni", "xeon-spr-amx", "neoverse-v1", "t4", "a100", "h100", "jetson-agx-orin",
            "tpu-v1", "eyeriss", "bitfusion", "zcu104", "alveo-u250"}

GOOD = {
    "name": "toy", "family": "systolic_array", "clock": "1 GHz", "technology_nm": 28,
    "memory": [
        {"name": "ibuf", "capacity": "64 KiB", "bandwidth_bytes_per_cycle": 32, "read_pj_per_byte": 1.0,
         "energy_source": "toy numbers for the test", "holds": ["inputs"]},
        {"name": "wbuf", "capacity": "64 KiB", "bandwidth_bytes_per_cycle": 32, "pj_per_access": 8.0, "access_bytes": 8,
         "energy_source": "toy numbers for the test", "holds": ["weights"]},
    ],
    "dram": {"kind": "DDR4", "bandwidth": "25.6 GB/s", "energy_pj_per_bit": 20, "energy_source": "toy number"},
    "systolic_array": {"rows": 16, "cols": 16, "dataflow": "os"},
}


def test_all_required_devices_ship_and_validate():
    assert REQUIRED <= set(SHIPPED)
    for name in SHIPPED:
        p = load_profile(name)
        assert p.name == name  # file stem and `name:` agree


def test_package_copy_matches_repo_copy():
    # Installed qsim reads qsim/data/hw_profiles; the repo's hw_profiles/ is the edited copy.
    repo = {p.name: p.read_bytes() for p in REPO_DIR.glob("*.yaml")}
    pkg = {p.name: p.read_bytes() for p in PACKAGE_DIR.glob("*.yaml")}
    assert repo == pkg, "run: cp hw_profiles/*.yaml qsim/data/hw_profiles/"
    assert set(list_profiles()) >= set(SHIPPED)


def test_every_number_has_a_source_comment():
    numeric = re.compile(r"^\s*-?\s*[a-z_0-9]+:\s*(\[?[-\d.]|\"?[\d.]+\s*[A-Za-z/]+)")
    for path in REPO_DIR.glob("*.yaml"):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith("#") or not numeric.match(line):
                continue
            block_ok = line.rstrip().endswith(":") or "#" in line
            assert block_ok, f"{path.name}:{i} has a number without a `# source:` comment: {line.strip()}"


def test_units_and_pj_per_access():
    p = validate_profile_dict(copy.deepcopy(GOOD), "good.yaml")
    assert p.clock == 1e9 and p.memory[0].capacity == 65536 and p.dram.bandwidth == 25.6e9
    assert p.memory[1].read_pj_per_byte == 1.0 and p.memory[1].write_pj_per_byte == 1.0
    assert parse_quantity("700 MHz", "frequency") == 7e8 and parse_quantity(5, "size") == 5.0
    with pytest.raises(ValueError, match="not a frequency unit"):
        parse_quantity("3 GB", "frequency")


def _problems(data) -> dict[str, str]:
    with pytest.raises(ProfileError) as info:
        validate_profile_dict(data, "bad.yaml")
    assert str(info.value).startswith("bad.yaml:")
    return dict(info.value.problems)


def test_bad_profile_lists_every_problem_at_once():
    bad = copy.deepcopy(GOOD)
    del bad["technology_nm"]                                   # missing field
    bad["clock"] = "1 GB"                                      # wrong unit
    bad["memory"][1]["bandwidth_bytes_per_cycle"] = -4         # negative bandwidth
    bad["memory"][0]["capacity"] = 0                           # zero size
    bad["systolic_array"]["rows"] = "sixteen"                  # wrong type
    bad["systolic_array"]["dataflow"] = "rs"                   # unknown dataflow
    bad["systolic_array"]["pe_precisions"] = ["int3"]          # unsupported precision
    probs = _problems(bad)
    assert probs["technology_nm"] == "required field is missing"
    assert "Hz" in probs["clock"]
    assert "greater than 0" in probs["memory[1].bandwidth_bytes_per_cycle"]
    assert "greater than 0" in probs["memory[0].capacity"]
    assert "integer" in probs["systolic_array.rows"]
    assert "'os', 'ws' or 'is'" in probs["systolic_array.dataflow"]
    assert "int8" in probs["systolic_array.pe_precisions[0]"]
    assert len(probs) == 7


def test_unknown_family_still_reports_core_problems():
    bad = copy.deepcopy(GOOD)
    bad["family"] = "tpu"
    bad["clock"] = -1
    probs = _problems(bad)
    assert "cpu_simd" in probs["family"] and "fpga" in probs["family"]
    assert "greater than 0" in probs["clock"]


def test_missing_family_section_and_typo_field():
    bad = copy.deepcopy(GOOD)
    bad["systolic_aray"] = bad.pop("systolic_array")
    probs = _problems(bad)
    assert probs["systolic_array"] == "required field is missing"
    assert "unknown field" in probs["systolic_aray"]


def test_not_a_mapping_and_bad_yaml(tmp_path):
    _problems(["a list"])
    f = tmp_path / "broken.yaml"
    f.write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(f)
    with pytest.raises(FileNotFoundError, match="known profiles"):
        load_profile("no-such-device")


def test_cli_validate_bad_file_exits_2_without_traceback(tmp_path, capsys):
    bad = copy.deepcopy(GOOD)
    bad["memory"][1]["bandwidth_bytes_per_cycle"] = 0
    bad["systolic_array"]["dataflow"] = "xy"
    bad["family"] = "systolic_array"
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(bad))
    assert main(["profiles", "validate", str(f)]) == 2
    err = capsys.readouterr().err
    assert str(f) in err and "memory[1].bandwidth_bytes_per_cycle" in err and "systolic_array.dataflow" in err
    assert "Traceback" not in err
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(GOOD))
    assert main(["profiles", "validate", str(good)]) == 0
    assert "ok" in capsys.readouterr().out


def test_cli_list_show_schema(capsys):
    assert main(["profiles", "list"]) == 0
    names = capsys.readouterr().out.split()
    assert REQUIRED <= set(names)
    assert main(["profiles", "show", "h100"]) == 0
    assert "source:" in capsys.readouterr().out
    assert main(["profiles", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "qsim hardware profile" and "$defs" in schema


def test_cli_import_scalesim_writes_a_loadable_profile(tmp_path, capsys):
    cfg = Path(__file__).parent / "data" / "scalesim" / "scalesim_calc.cfg"
    out = tmp_path / "from_scalesim.yaml"
    assert main(["profiles", "import-scalesim", str(cfg), "-o", str(out)]) == 0
    p = load_profile(out)
    assert p.family == "systolic_array" and (p.systolic_array.rows, p.systolic_array.cols) == (8, 8)
    assert main(["profiles", "validate", str(out)]) == 0
    capsys.readouterr()
    assert main(["profiles", "import-scalesim", str(tmp_path / "missing.cfg"), "-o", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_calibrate_host_says_clearly_when_unavailable(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "qsim.hw.calibrate", None)  # import now raises ImportError
    assert main(["profiles", "calibrate-host", "-o", str(tmp_path / "host.yaml")]) == 2
    err = capsys.readouterr().err
    assert "host calibration is not available" in err and "Traceback" not in err
