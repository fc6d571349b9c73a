"""`qsim study report DIR`: one self-contained HTML page; `--markdown`: the README's front tables."""

import re
import shutil
import subprocess

import pytest

from qsim.cli import main
from qsim.study import run_study

SPEC = {
    "name": "rep", "network": "digits_mlp", "calibration_size": 32, "eval_size": 100,
    "grid": {"wbits": [2, 4, "fp32"], "abits": [8], "granularity": ["tensor", "channel"]},
    "profiles": ["h100", "zen3-avx2"],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "rep"
    run_study(SPEC, out, progress=False)
    return out


def test_html_report_is_self_contained(results, capsys):
    assert main(["study", "report", str(results)]) == 0
    page = (results / "report.html").read_text()
    assert capsys.readouterr().out.strip().endswith("report.html")
    assert page.count("<svg") == len(list((results / "plots").glob("*.svg"))) >= 6  # every plot inline
    assert 'id="fronts"' in page and 'id="results"' in page and "addEventListener('click'" in page
    assert "source_hash" in page and "* fp32 (float baseline)" in page
    # nothing fetched from elsewhere: no external scripts, stylesheets or images
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page)
    assert "<link" not in page and "<img" not in page
    n_rows = page.split('id="results"')[1].count("<tr")
    assert n_rows == 1 + len(__import__("pandas").read_parquet(results / "results.parquet"))


def test_markdown_fronts(results, capsys):
    assert main(["study", "report", str(results), "--markdown", "--top", "2"]) == 0
    md = capsys.readouterr().out
    lines = [line for line in md.splitlines() if line.startswith("|")]
    assert lines[0].startswith("| profile | config | accuracy | energy / inference | latency | weights incl. scales")
    assert sum(line.startswith("| h100 |") for line in lines) == 3  # 2 front rows + the fp32 baseline
    assert "| h100 | * fp32 (float baseline) |" in md
    assert main(["study", "report", str(results.parent / "missing")]) == 2


def test_report_page_renders_in_headless_chromium(results, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("Chromium is not installed (optional: apt-get install chromium)")
    page = results / "report.html"
    if not page.exists():
        main(["study", "report", str(results)])
    shot = tmp_path / "report.png"
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--screenshot={shot}", "--window-size=1400,2000", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000, proc.stderr[-2000:]
    from PIL import Image  # matplotlib's dependency

    img = Image.open(shot).convert("L")
    lo, hi = img.getextrema()
    assert hi - lo > 100, "the screenshot is blank"


def test_markdown_pivot(results, capsys):
    assert main(["study", "report", str(results), "--pivot", "wbits,granularity", "--where", "profile=h100"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert lines[0] == "| wbits | tensor | channel |"
    table = __import__("pandas").read_parquet(results / "results.parquet").set_index(["profile", "label"])
    acc = table.loc[("h100", "W2-symmetric-channel/A8"), "accuracy"]
    kib = table.loc[("h100", "W2-symmetric-channel/A8"), "memory_bytes"] / 1024
    assert lines[2].startswith("| 2 |") and f"{acc * 100:.1f} % / {kib:.1f} |" in lines[2]
    assert len(lines) == 2 + 2  # wbits 2 and 4; the fp32 baseline is not a pivot row
    assert main(["study", "report", str(results), "--pivot", "wbits,granularity"]) == 2  # two profiles per cell
    assert main(["study", "report", str(results), "--pivot", "wbits,colour"]) == 2
