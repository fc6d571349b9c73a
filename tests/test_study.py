"""Study driver: validation up front, tidy outputs, caching, resume after SIGKILL, Dask."""

import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from qsim.cli import main
from qsim.study import StudySpecError, parse_study, run_study

SMALL = {
    "name": "small",
    "network": "digits_mlp",
    "calibration_size": 64,
    "grid": {"wbits": [2, 4, 8], "abits": [4, 8], "granularity": ["tensor", "channel"]},
    "profiles": ["zen3-avx2", "bitfusion"],
}


def test_spec_problems_reported_all_at_once():
    bad = {
        "name": "bad study", "network": "resnet1000", "colour": "red",
        "grid": {"wbits": [], "abits": [1], "act_scheme": "affine", "granularity": ["row"], "bogus": 1,
                 "acc_bits": {"range": [8]}},
        "profiles": ["no-such-chip"], "objectives": {"accuracy": "up", "joy": "max"},
    }
    with pytest.raises(StudySpecError) as info:
        parse_study(bad)
    msg = str(info.value)
    for fragment in ("unknown key 'colour'", "name: a non-empty name", "'resnet1000' is not a qsim network",
                     "grid.wbits is empty", "binary (1-bit) activations cannot use the affine scheme",
                     "grid.granularity: 'row' is not allowed", "grid: unknown key 'bogus'", "grid.acc_bits: a range",
                     "'no-such-chip' is neither a shipped profile", "objectives.accuracy: must be 'min' or 'max'",
                     "'joy' is not a result column"):
        assert fragment in msg, fragment
    assert len(info.value.problems) >= 11


def test_group_larger_than_every_reduction_dimension_is_rejected():
    spec = dict(SMALL, grid={"granularity": ["group"], "group_size": [4096]})
    with pytest.raises(StudySpecError, match="group_size: 4096 is larger than the largest reduction dimension"):
        parse_study(spec)


def test_grid_ranges_and_expansion():
    spec = parse_study(dict(SMALL, profiles=["zen3-avx2"], grid={"wbits": {"range": [2, 8], "step": 2}, "abits": "float",
                                         "scheme": ["symmetric", "mxfp4"], "granularity": ["tensor", "group"],
                                         "group_size": [16, 32]}))
    assert spec.grid["wbits"] == [2, 4, 6, 8]
    configs = spec.configs()
    # 4 bits × (tensor + 2 group sizes) symmetric + one mxfp4 (its bits/block are fixed)
    assert len(configs) == 4 * 3 + 1
    assert all(c.abits is None for c in configs)


def test_run_writes_tidy_outputs_and_reuses_cache(tmp_path):
    res = run_study(SMALL, tmp_path / "out", progress=False)
    table = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert len(table) == 3 * 2 * 2 * 2  # wbits × abits × granularity × profiles
    for col in ("accuracy", "sqnr_db", "overflows", "memory_bytes", "cycles", "latency_s", "energy_j",
                "energy_mac_j", "energy_static_j", "bound", "utilization", "profile", "wbits", "granularity"):
        assert col in table.columns, col
    # Accuracy does not depend on the profile: computed once per config, the same on every profile.
    per_cfg = table.groupby("label")["accuracy"].nunique()
    assert (per_cfg == 1).all()
    pareto = pd.read_csv(tmp_path / "out" / "pareto.csv")
    assert {"overall", "profile:zen3-avx2", "profile:bitfusion"} <= set(pareto["pareto_scope"])
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["spec_hash"] == res.manifest["spec_hash"] and manifest["accuracy_evaluations_computed"] == 12
    assert manifest["cost_batches_computed"] == 2
    for plot in manifest["plots"]:
        assert (tmp_path / "out" / plot).stat().st_size > 0
    assert any(p.endswith(".svg") for p in manifest["plots"]) and any("roofline" in p for p in manifest["plots"])
    again = run_study(SMALL, tmp_path / "out", progress=False)
    assert again.manifest["accuracy_evaluations_computed"] == 0
    pd.testing.assert_frame_equal(again.table, res.table)


def test_killed_run_resumes_and_loses_nothing(tmp_path):
    spec = dict(SMALL, name="killed", grid=dict(SMALL["grid"], wbits=[2, 3, 4, 5, 6, 8], abits=[3, 4, 6, 8]))
    spec_file = tmp_path / "killed.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    out = tmp_path / "killed"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "qsim", "study", "run", str(spec_file), "--out", str(out),
                             "--quiet", "--no-plots"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = out / "cache" / "accuracy"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(cache.glob("*.json"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(cache.glob("*.json")))
    assert 3 <= done_before < 48, "the run should have been killed part way"
    resumed = run_study(str(spec_file), out, progress=False, plots=False)
    assert resumed.manifest["accuracy_evaluations_computed"] == 48 - done_before
    fresh = run_study(str(spec_file), tmp_path / "fresh", progress=False, plots=False)
    pd.testing.assert_frame_equal(resumed.table, fresh.table)


def _workers(out: Path) -> set[str]:
    """host:pid of the processes that computed the cached accuracy records."""
    return {json.loads(f.read_text())["worker"] for f in (out / "cache" / "accuracy").glob("*.json")}


def test_local_processes_give_the_same_table(tmp_path):
    spec = dict(SMALL, name="jobs", grid=dict(SMALL["grid"], wbits=[4, 8], abits=[8]))
    serial = run_study(spec, tmp_path / "serial", progress=False, plots=False)
    parallel = run_study(spec, tmp_path / "parallel", jobs=2, progress=False, plots=False)
    pd.testing.assert_frame_equal(serial.table, parallel.table)
    assert _workers(tmp_path / "serial") == {f"{platform.node()}:{os.getpid()}"}
    workers = _workers(tmp_path / "parallel")
    assert workers and f"{platform.node()}:{os.getpid()}" not in workers, "--jobs 2 must evaluate in worker processes"
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        run_study(spec, tmp_path / "bad", jobs=0, progress=False)


def test_dask_local_cluster_gives_the_same_table(tmp_path):
    pytest.importorskip("distributed", reason="Dask is an optional extra: pip install -e '.[dask]'")
    spec = dict(SMALL, name="dask", grid=dict(SMALL["grid"], wbits=[4, 8], abits=[8]))
    local = run_study(spec, tmp_path / "local", progress=False, plots=False)
    distributed = run_study(spec, tmp_path / "dask", dask="local", progress=False, plots=False)
    pd.testing.assert_frame_equal(local.table, distributed.table)
    workers = _workers(tmp_path / "dask")
    assert workers and f"{platform.node()}:{os.getpid()}" not in workers, "--dask local must evaluate on workers"


def test_cli_run_and_plot(tmp_path, capsys):
    spec_file = tmp_path / "cli.yaml"
    spec_file.write_text(yaml.safe_dump(dict(SMALL, name="cli", grid=dict(SMALL["grid"], wbits=[4], abits=[8]))))
    assert main(["study", "run", str(spec_file), "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "digits_mlp on bitfusion: Pareto front has" in out and "accuracy %" in out
    for png in (tmp_path / "cli" / "plots").glob("*.png"):
        png.unlink()
    assert main(["study", "plot", str(tmp_path / "cli")]) == 0
    assert len(list((tmp_path / "cli" / "plots").glob("*.png"))) >= 2
    assert main(["study", "plot", str(tmp_path / "nowhere")]) == 2
    assert main(["study", "run", str(tmp_path / "missing.yaml")]) == 2
