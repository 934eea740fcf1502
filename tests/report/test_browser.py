"""Reports in a real headless browser: every figure renders, no JavaScript error, no script from the data runs.

Uses Chromium's own command line (``--headless --dump-dom``): the DOM after the page's
scripts ran is printed and checked here.  The report's error hook writes JavaScript errors
into ``#kmemdes-js-errors``; a recorder injected before the page's scripts turns
``alert``/``confirm``/``prompt`` into an attribute on ``<html>``.  A control page with a
deliberate ``alert`` and a deliberate exception proves both detectors work.

Skipped, with a message, where no browser binary is installed (CI may not install one).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import plotly.graph_objects as go
import pytest

from kmemdes.report.compare import write_comparison
from kmemdes.report.html import write_report
from kmemdes.report.page import Page

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
RECORDER = ("<script>(function(){function rec(kind){return function(m){document.documentElement.setAttribute("
            "'data-kmemdes-dialog', kind + ': ' + m); return null;};}"
            "window.alert=rec('alert');window.confirm=rec('confirm');window.prompt=rec('prompt');})();</script>")


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(f"no headless browser found on PATH (looked for {', '.join(BROWSERS)}); "
                "install one (Debian: apt-get install chromium) to run the browser tests")


def _dump_dom(page: Path, tmp: Path) -> str:
    """Load ``page`` (with the dialog recorder injected first) and return the DOM after its scripts ran."""
    text = page.read_text()
    probe = page.with_name(page.stem + ".probe.html")
    probe.write_text(text.replace("<head>", "<head>" + RECORDER, 1))
    profile = tmp / f"profile-{page.stem}"
    cmd = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "<html" in r.stdout, f"browser failed ({r.returncode}): {r.stderr[-2000:]}"
    return r.stdout


def _check_rendered(dom: str, expected_figures: int) -> None:
    errors = re.search(r'<div id="kmemdes-js-errors">(.*?)</div>', dom, re.S)
    assert errors is not None and errors.group(1).strip() == "", f"JavaScript errors: {errors and errors.group(1)}"
    html_tag = re.search(r"<html[^>]*>", dom).group(0)
    assert "data-kmemdes-dialog" not in html_tag, f"the page opened a dialog: {html_tag}"
    assert f'data-kmemdes-rendered="{expected_figures}"' in dom
    assert 'data-kmemdes-failed="0"' in dom
    chunks = re.split(r'<div class="plot[^"]*" id="fig\d+"', dom)[1:]
    assert len(chunks) == expected_figures
    for i, chunk in enumerate(chunks, 1):
        assert re.search(r'<svg[^>]*class="main-svg"', chunk), f"figure {i} has no rendered SVG"


def test_report_renders_every_figure_and_runs_no_injected_script(evil_run, tmp_path):
    _browser()
    page = write_report(evil_run, tmp_path / "evil.html")
    n = page.read_text().count('<div class="plot"')
    assert n == 18
    dom = _dump_dom(page, tmp_path)
    _check_rendered(dom, n)
    # the hostile names are on the page as text (table cells and Plotly legend entries)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert re.search(r'<text[^>]*class="legendtext"[^>]*>&lt;script&gt;alert\(1\)&lt;/script&gt;</text>', dom)


def test_comparison_renders(replica_runs, evil_run, tmp_path):
    _browser()
    dirs = replica_runs["base"][:2] + replica_runs["strict"][:2] + [evil_run]
    page = write_comparison(dirs, tmp_path / "compare.html")
    n = page.read_text().count('<div class="plot"')
    dom = _dump_dom(page, tmp_path)
    _check_rendered(dom, n)


def test_the_detectors_catch_a_dialog_and_an_error(tmp_path):
    """Control: the same checks on a page that does call alert() and does throw."""
    _browser()
    p = Page("control")
    p.section("s", "s")
    p.figure(go.Figure(go.Scatter(x=[1, 2], y=[1, 2])), "t", "h")
    html = p.render().replace("</body>", "<script>alert('x')</script><script>throw new Error('boom')</script></body>")
    page = tmp_path / "control.html"
    page.write_text(html)
    dom = _dump_dom(page, tmp_path)
    assert 'data-kmemdes-dialog="alert: x"' in re.search(r"<html[^>]*>", dom).group(0)
    assert re.search(r'<div id="kmemdes-js-errors">[^<]*boom', dom)
    assert 'data-kmemdes-rendered="1"' in dom
