"""The study cache never serves a stale number: code, weights, data and profile are in every key.

The edits happen in a temporary copy of the qsim package (run in a subprocess with that
copy first on PYTHONPATH), so the checkout itself is never touched.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import qsim
from qsim.cli import main
from qsim.study import run_study
from qsim.study import cache as cache_mod

PKG = Path(qsim.__file__).resolve().parent

SCRIPT = r"""
import json, sys
import qsim
assert qsim.__file__.startswith(sys.argv[3]), qsim.__file__
from qsim.study import run_study
res = run_study(json.loads(sys.argv[1]), sys.argv[2], progress=False, plots=False)
m, t = res.manifest, res.table
print(json.dumps({"acc": m["accuracy_evaluations_computed"], "cost": m["cost_batches_computed"],
                  "energy": t["energy_j"].tolist(), "src": m["source_hash"],
                  "accuracy": t["accuracy"].tolist() if "accuracy" in t else None}))
"""

COST_ONLY = {"name": "costonly", "workload": "resnet18", "grid": {"wbits": [4, 8], "abits": [8]},
             "profiles": ["zen3-avx2"]}
ACCURACY = {"name": "acc", "network": "digits_mlp", "calibration_size": 32, "eval_size": 120,
            "grid": {"wbits": [4], "abits": [8]}, "profiles": ["zen3-avx2"]}


@pytest.fixture(scope="module")
def pkg_copy(tmp_path_factory):
    root = tmp_path_factory.mktemp("qsim_copy")
    shutil.copytree(PKG, root / "qsim", ignore=shutil.ignore_patterns("*.pyc"))
    return root


def _run(root: Path, spec: dict, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(root), OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(spec), str(out), str(root)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_edited_cost_function_is_recomputed(pkg_copy, tmp_path):
    out = tmp_path / "out"
    first = _run(pkg_copy, COST_ONLY, out)
    assert first["cost"] == 1
    again = _run(pkg_copy, COST_ONLY, out)
    assert again["cost"] == 0 and again["energy"] == first["energy"]
    # Change the cost model's code: every energy 1000x.
    cost_py = pkg_copy / "qsim" / "hw" / "cost.py"
    original = cost_py.read_text()
    cost_py.write_text(original + "\n\n_orig_cost_batch = cost_batch\n\n\ndef cost_batch(*a, **k):\n"
                       "    df = _orig_cost_batch(*a, **k)\n    df['energy_j'] = df['energy_j'] * 1000\n"
                       "    return df\n")
    try:
        edited = _run(pkg_copy, COST_ONLY, out)
    finally:
        cost_py.write_text(original)
    assert edited["src"] != first["src"]
    assert edited["cost"] == 1, "an edited cost function must not be served from the cache"
    np.testing.assert_allclose(edited["energy"], np.array(first["energy"]) * 1000)


def test_edited_weights_file_is_recomputed(pkg_copy, tmp_path):
    out = tmp_path / "out"
    first = _run(pkg_copy, ACCURACY, out)
    assert first["acc"] == 1
    assert _run(pkg_copy, ACCURACY, out)["acc"] == 0
    weights = pkg_copy / "qsim" / "data" / "weights" / "digits_mlp.npz"
    original = weights.read_bytes()
    with np.load(weights, allow_pickle=False) as d:
        params = {k: d[k] for k in d.files}
    params["fc1.w"] = params["fc1.w"] * 0  # a network that has forgotten everything
    np.savez(weights, **params)
    try:
        edited = _run(pkg_copy, ACCURACY, out)
    finally:
        weights.write_bytes(original)
    assert edited["src"] == first["src"]  # only the weights changed
    assert edited["acc"] == 1, "edited weights must not be served from the cache"
    assert edited["accuracy"][0] < first["accuracy"][0] - 0.3


def test_profile_and_source_in_the_key_in_process(tmp_path, monkeypatch):
    prof = yaml.safe_load((PKG / "data" / "hw_profiles" / "zen3-avx2.yaml").read_text())
    prof["name"] = "mychip"
    path = tmp_path / "mychip.yaml"
    path.write_text(yaml.safe_dump(prof))
    spec = dict(COST_ONLY, profiles=[str(path)])
    out = tmp_path / "out"
    first = run_study(spec, out, progress=False, plots=False)
    assert first.manifest["cost_batches_computed"] == 1
    # a custom profile is labelled by its `name:`, its file kept beside it
    assert set(first.table["profile"]) == {"mychip"} and set(first.table["profile_source"]) == {str(path)}
    assert run_study(spec, out, progress=False, plots=False).manifest["cost_batches_computed"] == 0
    prof["clock"] = "9.8 GHz"  # an edited profile
    path.write_text(yaml.safe_dump(prof))
    faster = run_study(spec, out, progress=False, plots=False)
    assert faster.manifest["cost_batches_computed"] == 1
    monkeypatch.setattr("qsim.study.runner.source_hash", lambda: "another-source")
    assert run_study(spec, out, progress=False, plots=False).manifest["cost_batches_computed"] == 1
    fresh = run_study(spec, out, progress=False, plots=False, fresh=True)
    assert fresh.manifest["cost_batches_computed"] == 1


def test_source_hash_covers_every_module(tmp_path):
    shutil.copytree(PKG / "quant", tmp_path / "quant", ignore=shutil.ignore_patterns("__pycache__"))
    before = cache_mod.source_hash(tmp_path)
    (tmp_path / "quant" / "rounding.py").write_text((tmp_path / "quant" / "rounding.py").read_text() + "\n# edit\n")
    cache_mod.source_hash.cache_clear()
    assert cache_mod.source_hash(tmp_path) != before


def test_fresh_and_clean_from_the_cli(tmp_path, capsys):
    spec_file = tmp_path / "c.yaml"
    spec_file.write_text(yaml.safe_dump(COST_ONLY))
    out = tmp_path / "costonly"
    assert main(["study", "run", str(spec_file), "--out", str(out), "--quiet", "--no-plots"]) == 0
    assert "cost (per target × profile): 1 computed, 0 from cache" in capsys.readouterr().out
    assert main(["study", "run", str(spec_file), "--out", str(out), "--quiet", "--no-plots"]) == 0
    assert "0 computed, 1 from cache" in capsys.readouterr().out
    assert main(["study", "run", str(spec_file), "--out", str(out), "--quiet", "--no-plots", "--fresh"]) == 0
    assert "1 computed, 0 from cache" in capsys.readouterr().out
    assert main(["study", "clean", str(out)]) == 0
    assert not (out / "cache").exists() and (out / "results.parquet").exists()
    assert main(["study", "clean", str(out), "--all"]) == 0
    assert not out.exists()
    assert main(["study", "clean", str(tmp_path / "nowhere")]) == 2
    (tmp_path / "plain").mkdir()
    assert main(["study", "clean", str(tmp_path / "plain")]) == 2  # not a results directory: nothing removed
    assert (tmp_path / "plain").exists()
