"""The HTML pages a pipeline run shows (the report's, the training-log analysis'): one
self-contained file each, checked in a real browser (Debian's Chromium driven by playwright):
no console errors, no request leaving the page, every image decoded, every table with rows."""

from __future__ import annotations

import base64
import shutil
import sys
from pathlib import Path

import pytest

from detpipe.errors import InvalidInput
from detpipe.report.html import external_references, render_page, write_page
from detpipe.report.stage import ReportConfig, write_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "logs"))
from logs_runs import clean  # the logs tests' fixed run directories

AXES = Path(__file__).with_name("sweep_axes.csv")
CHROMIUM = Path("/usr/bin/chromium")
PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def test_images_are_embedded_links_made_text_and_html_escaped(tmp_path):
    (tmp_path / "plot one.png").write_bytes(PNG_1PX)
    md = (
        "# Title <b>bold</b>\n\n![a plot](plot%20one.png)\n\n[the analysis](cells/a/analysis.md), "
        "[up](#title) <script>alert(1)</script>\n\n| a | b |\n|---|--:|\n| x | 1 |\n"
    )
    page = render_page(md, assets=tmp_path)
    assert f'src="data:image/png;base64,{base64.b64encode(PNG_1PX).decode()}"' in page
    assert '<span class="ref" title="cells/a/analysis.md">the analysis</span>' in page
    assert '<a href="#title">up</a>' in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<title>Title &lt;b&gt;bold&lt;/b&gt;</title>" in page
    assert "<tbody>\n<tr>\n<td>x</td>" in page
    assert external_references(page) == []


@pytest.mark.parametrize(
    "src",
    ["https://example.com/a.png", "//example.com/a.png", "/etc/a.png", "../a.png", "missing.png", "a.txt"],
)
def test_an_image_that_cannot_be_embedded_is_refused(tmp_path, src):
    (tmp_path / "a.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    with pytest.raises(InvalidInput):
        render_page(f"![x]({src})", assets=tmp_path / "sub" if src == "../a.png" else tmp_path)


def test_external_references_finds_what_a_browser_would_fetch():
    page = (
        '<img src="http://h/a.png"><img srcset="data:image/png;base64,AA 1x, b.png 2x">'
        '<a href="x.html">x</a><a href="#ok">ok</a><div style="background: url(\'c.png\')"></div>'
        "<style>@import 'd.css'; p { background: url(data:image/png;base64,AA) }</style>"
        '<meta http-equiv="refresh" content="0; url=e">'
    )
    assert external_references(page) == [
        "http://h/a.png",
        "b.png",
        "x.html",
        "c.png",
        "@import",
        "meta refresh",
    ]


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (a dev dependency: pip install -e '.[dev]')")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium; `make test` does it as root)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), timeout=60_000)
        yield browser
        browser.close()


_IMAGES = """async () => Promise.all([...document.images].map(async (img) => {
    try { await img.decode(); } catch (e) { return {ok: false, width: 0}; }
    return {ok: img.complete, width: img.naturalWidth, height: img.naturalHeight};
}))"""
_TABLES = "() => [...document.querySelectorAll('table')].map((t) => t.querySelectorAll('tbody tr').length)"


def open_page(browser, path: Path) -> dict:
    """Load ``path`` in a fresh page: console errors, requests leaving it, images, table rows."""
    page = browser.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(path.as_uri(), wait_until="load", timeout=30_000)
        images = page.evaluate(_IMAGES)
        tables = page.evaluate(_TABLES)
    finally:
        page.close()
    leaving = [u for u in requests if u != path.as_uri() and not u.startswith("data:")]
    return {"errors": errors, "requests": leaving, "images": images, "tables": tables}


def _assert_clean(seen: dict, images: int, tables: int) -> None:
    assert seen["errors"] == [] and seen["requests"] == []
    assert len(seen["images"]) == images and all(i["ok"] and i["width"] > 0 for i in seen["images"])
    assert len(seen["tables"]) >= tables and all(rows > 0 for rows in seen["tables"])


@pytest.mark.timeout(180)
def test_the_report_page_loads_clean_in_chromium(browser, tmp_path):
    write_report(ReportConfig(out=tmp_path / "report", table=AXES))
    page = tmp_path / "report" / "report.html"
    alone = tmp_path / "alone" / "report.html"  # self-contained: it works without its directory
    alone.parent.mkdir()
    shutil.copyfile(page, alone)
    shutil.rmtree(tmp_path / "report")
    plots = ("map_vs_size", "retention_vs_size", "cliff", "strategies", "policies", "variance")
    _assert_clean(open_page(browser, alone), images=len(plots), tables=5)


@pytest.mark.timeout(180)
def test_the_training_log_page_loads_clean_in_chromium(browser, tmp_path):
    from kfp.dsl import HTML, Artifact, Metrics, Model

    from detpipe.components.logs import logs_op

    run = clean(tmp_path / "runs")
    page = HTML(name="page", uri=str(tmp_path / "page.html"), metadata={})
    logs_op.python_func(
        model=Model(name="model", uri=str(run), metadata={}),
        analysis=Artifact(name="analysis", uri=str(tmp_path / "analysis"), metadata={}),
        metrics=Metrics(name="metrics", uri=str(tmp_path / "metrics"), metadata={}),
        page=page,
    )
    plots = sorted(p.name for p in (tmp_path / "analysis").glob("*.png"))
    assert plots  # the losses and metrics plots
    _assert_clean(open_page(browser, Path(page.path)), images=len(plots), tables=3)


@pytest.mark.timeout(120)
def test_the_browser_check_sees_a_page_that_is_not_self_contained(browser, tmp_path):
    (tmp_path / "p.png").write_bytes(PNG_1PX)
    write_page(_md(tmp_path / "page.md", "# t\n\n![p](p.png)\n\n| a |\n|---|\n| 1 |\n"), tmp_path / "ok.html")
    assert open_page(browser, tmp_path / "ok.html")["images"] == [{"ok": True, "width": 1, "height": 1}]
    bad = (tmp_path / "ok.html").read_text().replace("<main>", '<main><img src="http://127.0.0.1:9/x.png">')
    (tmp_path / "bad.html").write_text(bad)
    seen = open_page(browser, tmp_path / "bad.html")
    assert any("Content Security Policy" in e for e in seen["errors"]), seen["errors"]
    assert not all(i["ok"] and i["width"] > 0 for i in seen["images"])


def _md(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
