"""Every spec problem and every infeasible (config, profile) pair is reported before any work."""

import re
from pathlib import Path

import pytest
import yaml

from qsim.study import StudySpecError, parse_study, run_study

ROOT = Path(__file__).resolve().parent.parent


def readme_spec() -> dict:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"### A study spec\n.*?```yaml\n(.*?)```", text, re.S)
    assert block, "README.md lost its 'A study spec' block"
    return yaml.safe_load(block.group(1))


def test_readme_spec_block_reports_its_infeasible_pairs_before_any_work(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the block names profile files relative to the repository root
    spec = readme_spec()
    spec["profiles"] = [p for p in spec["profiles"] if not str(p).endswith(".yaml")]
    from qsim.study import runner

    calls = []
    monkeypatch.setattr(runner, "evaluate_config", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(runner, "run_cost", lambda *a, **k: calls.append(a))
    with pytest.raises(StudySpecError) as info:
        run_study(spec, tmp_path / "out", progress=False)
    assert calls == []  # no accuracy evaluation and no costing started
    msg = str(info.value)
    assert "profile 'zcu104' cannot run Wfp4_e2m1-Aint8-g32" in msg and "mxfp4/A8" in msg
    assert not (tmp_path / "out").exists(), "nothing may be computed or written for a rejected spec"


def test_all_problems_at_once_incl_binary_activations_and_profiles():
    spec = readme_spec()
    spec["profiles"] = ["zcu104", "tpu-v1"]
    spec["grid"].update(abits=[1], act_scheme=["binary"], scheme=["symmetric", "mxfp4"])
    spec["colour"] = "red"
    with pytest.raises(StudySpecError) as info:
        parse_study(spec)
    msg = str(info.value)
    assert "unknown key 'colour'" in msg
    assert "binary activations: the network executors run activations as integer codes" in msg
    assert "/A1" in msg  # names the grid configs it affects
    for prof in ("zcu104", "tpu-v1"):
        assert f"profile '{prof}' cannot run" in msg, prof
    # Grouped: one line per distinct problem, not one per config.
    assert len(info.value.problems) <= 6


def test_feasible_spec_passes(tmp_path):
    spec = readme_spec()
    spec["profiles"] = ["h100"]
    spec["grid"].update(granularity=["channel"], calibration=["minmax"])
    parse_study(spec)  # no exception: h100 runs every config of the grid
