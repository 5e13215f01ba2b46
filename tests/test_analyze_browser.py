"""report.html in a real headless browser (Chromium from the distribution's packages).

The page is opened twice from disk: once for a screenshot (it must not be blank), once
with a copy that counts, after the load event, the images that failed to decode
(``naturalWidth == 0``) and writes the count into the DOM, which ``--dump-dom`` prints.
Skipped without Chromium, except under CI, where ``.ci/run`` installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from analyze_support import analyze_cli, make_experiment, write_result
from test_analyze import FORGET

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                reason="needs chromium (apt-get install chromium); required under CI")

_COUNT_IMAGES = (
    "<script>window.addEventListener('load', function () {"
    " var imgs = Array.prototype.slice.call(document.images);"
    " var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; });"
    " document.body.setAttribute('data-images', imgs.length);"
    " document.body.setAttribute('data-broken', broken.length); });</script>"
)


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None, "chromium is not installed: apt-get install -y chromium"
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--hide-scrollbars", *args], capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exp = tmp_path_factory.mktemp("browser") / "forgetting"
    make_experiment(exp, {**FORGET, "replicates": {"seeds": [1, 2]}})
    for i, run in enumerate(["m_rank8_seed1", "m_rank8_seed2", "m_rank16_seed1", "m_rank16_seed2",
                             "m_rank32_seed1", "m_rank32_seed2"]):
        write_result(exp, run, "qa_epoch0", [j < 30 + 4 * i for j in range(100)], epoch=0)
    write_result(exp, "m_base", "qa", [j < 50 for j in range(100)])
    proc = analyze_cli(exp)
    assert proc.returncode == 0, proc.stderr
    return exp / "analysis" / "report.html"


def test_report_screenshot_is_not_blank(report: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "report.png"
    proc = _chromium("--window-size=1200,1600", f"--screenshot={shot}", report.as_uri())
    assert shot.is_file(), proc.stderr[-2000:]
    with Image.open(shot) as img:
        rgb = img.convert("RGB")
        assert rgb.size == (1200, 1600)
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        white = sum(n for n, c in colours if c == (255, 255, 255))
    # Text, table rules and plots: many colours, and a good share of the page is not background.
    assert len(colours) > 50, len(colours)
    assert white < 0.97 * 1200 * 1600, white


def test_report_has_every_plot_and_no_broken_image(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    embedded = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', html)
    assert sorted(embedded) == ["accuracy_by_epoch.png", "deltas.png", "sweep_lora_rank.png"]
    assert "http://" not in html and "https://" not in html  # self-contained
    probe = report.with_name("report-probe.html")
    probe.write_text(html.replace("</body>", _COUNT_IMAGES + "</body>"), encoding="utf-8")
    try:
        proc = _chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    finally:
        probe.unlink()
    body = re.search(r"<body[^>]*>", proc.stdout)
    assert body is not None, proc.stderr[-2000:]
    assert 'data-images="3"' in body.group(0) and 'data-broken="0"' in body.group(0), body.group(0)
