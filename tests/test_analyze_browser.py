"""report.html in a real headless browser (Chromium from the distribution's packages).

The page is opened from disk for a screenshot (it must not be blank), and as a copy with
a probe script that, after the load event, writes into the DOM what it measured (which
``--dump-dom`` prints): the images that failed to decode (``naturalWidth == 0``), where
the answer starts in a 1280 x 900 window, and every element wider than the viewport
outside a horizontal scroll box. A report with hostile names must run none of them.
Skipped without Chromium, except under CI, where ``.ci/run`` installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from analyze_support import analyze_cli, make_experiment, write_result
from test_analyze import FORGET
from test_analyze_escape import plant

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


#: A 1280 px wide window with a 900 px fold: a laptop screen.
WINDOW = (1280, 900)

_PROBE = (
    "<script>window.addEventListener('load', function () {"
    " var b = document.body, vw = document.documentElement.clientWidth;"
    " var answer = document.getElementById('answer');"
    " b.setAttribute('data-vw', vw);"
    " b.setAttribute('data-answer-top', answer ? Math.round(answer.getBoundingClientRect().top) : -1);"
    " b.setAttribute('data-answer-bottom', answer ? Math.round(answer.getBoundingClientRect().bottom) : -1);"
    # Folded blocks open, so their tables are measured too.
    " Array.prototype.forEach.call(document.querySelectorAll('details'), function (d) { d.open = true; });"
    " function boxed(el) { for (var p = el.parentElement; p && p !== b; p = p.parentElement) {"
    "   var o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll') return true; } return false; }"
    " var wide = [];"
    " Array.prototype.forEach.call(b.querySelectorAll('*'), function (el) {"
    "   var r = el.getBoundingClientRect();"
    "   if (r.width > 0 && r.right > vw + 1 && !boxed(el)) wide.push(el.tagName.toLowerCase()); });"
    " var unboxed = 0, scrolling = 0;"
    " Array.prototype.forEach.call(document.querySelectorAll('table'), function (t) {"
    "   var box = t.parentElement, o = getComputedStyle(box).overflowX;"
    "   if (o !== 'auto' && o !== 'scroll') unboxed++;"
    "   if (box.scrollWidth > box.clientWidth) scrolling++; });"
    " b.setAttribute('data-wide', wide.length); b.setAttribute('data-wide-tags', wide.slice(0, 5).join(' '));"
    " b.setAttribute('data-tables', document.querySelectorAll('table').length);"
    " b.setAttribute('data-unboxed', unboxed); b.setAttribute('data-scrolling', scrolling);"
    "});</script>"
)


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None, "chromium is not installed: apt-get install -y chromium"
    # A fresh profile each time, and nothing fetched in the background: the page alone is measured.
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                               "--hide-scrollbars", "--disable-background-networking", "--disable-component-update",
                               "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=180)


def _probe(report: Path, window: tuple[int, int] = WINDOW) -> dict[str, str]:
    """The body attributes the probe scripts wrote, from a copy of ``report`` opened in ``window``."""
    html = report.read_text(encoding="utf-8")
    probe = report.with_name("report-probe.html")
    probe.write_text(html.replace("</body>", _COUNT_IMAGES + _PROBE + "</body>"), encoding="utf-8")
    try:
        proc = _chromium(f"--window-size={window[0]},{window[1]}", "--virtual-time-budget=10000", "--dump-dom",
                         probe.as_uri())
    finally:
        probe.unlink()
    body = re.search(r"<body[^>]*>", proc.stdout)
    assert body is not None, proc.stderr[-2000:]
    return dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(0)))


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
    embedded = re.findall(r'<img alt="([^"]+)"[^>]* src="data:image/png;base64,', html)
    assert sorted(embedded) == ["accuracy_by_epoch.png", "deltas.png", "sweep_lora_rank.png"]
    assert "http://" not in html and "https://" not in html  # self-contained
    attrs = _probe(report)
    assert (attrs.get("data-images"), attrs.get("data-broken")) == ("3", "0"), attrs


def _check_layout(attrs: dict[str, str]) -> None:
    assert attrs["data-vw"] == str(WINDOW[0]), attrs
    # The answer starts on the first screen, under the title and the question.
    assert 0 < int(attrs["data-answer-top"]) < WINDOW[1] // 2, attrs
    # Nothing is wider than the window outside a scroll box, and every table sits in one.
    assert attrs["data-wide"] == "0", attrs
    assert int(attrs["data-tables"]) >= 2 and attrs["data-unboxed"] == "0", attrs


def test_answer_is_above_the_fold_and_nothing_overflows_at_1280_px(report: Path, tmp_path: Path) -> None:
    from PIL import Image

    _check_layout(_probe(report))
    shot = tmp_path / "fold.png"
    _chromium(f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={shot}", report.as_uri())
    with Image.open(shot) as img:
        assert img.size == WINDOW


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return plant(tmp_path_factory.mktemp("browser-hostile") / "hostile") / "report.html"


def test_hostile_names_run_nothing_and_wide_tables_scroll(hostile_report: Path) -> None:
    attrs = _probe(hostile_report)
    assert "data-pwned" not in attrs, attrs
    assert attrs["data-broken"] == "0" and int(attrs["data-images"]) >= 3, attrs
    _check_layout(attrs)
    # Its long condition names make tables wider than the window: they scroll inside their box.
    assert int(attrs["data-scrolling"]) >= 1, attrs
