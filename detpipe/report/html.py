"""A markdown report as one self-contained HTML page: what a Kubeflow ``Output[HTML]`` shows.

The page references nothing outside itself: every image is embedded as a ``data:`` URI (read
from the directory the markdown lives in), links to other files become plain text naming
them, raw HTML in the markdown is escaped, and a Content-Security-Policy forbids loading
anything that is not a ``data:`` image or the page's own style::

    html = render_page(Path("runs/report/report.md").read_text(), assets=Path("runs/report"))
    write_page(Path("runs/logs/analysis.md"), Path("runs/logs/analysis.html"))
    assert external_references(html) == []

The markdown is rendered by markdown-it-py (CommonMark plus GitHub tables).
"""

from __future__ import annotations

import base64
import html as html_lib
import re
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from detpipe.errors import InvalidInput
from detpipe.io import read_text, write_text

IMAGE_TYPES = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}
"""Magic bytes -> MIME type of the images a page may embed (raster only: an SVG can load things)."""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
"""The page's Content-Security-Policy: nothing but embedded images and its own styles."""

_URL_ATTRS = frozenset(
    {"src", "href", "srcset", "poster", "action", "formaction", "data", "background", "xlink:href", "cite"}
)

_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       margin: 0; background: #fff; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5em 2em 3em; }
h1, h2, h3 { line-height: 1.25; margin: 1.4em 0 0.5em; }
h1 { border-bottom: 1px solid #d0d7de; padding-bottom: 0.3em; }
table { border-collapse: collapse; margin: 0.8em 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: 0.3em 0.7em; }
th { background: #f6f8fa; }
tbody tr:nth-child(even) { background: #f9fafb; }
code, pre { font: 13px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
            background: #f6f8fa; border-radius: 4px; }
code { padding: 0.1em 0.3em; }
pre { padding: 0.8em; overflow-x: auto; }
img { max-width: 100%; height: auto; display: block; margin: 0.6em 0; }
.ref { text-decoration: underline dotted; }
"""


def image_data_uri(path: Path) -> str:
    """``data:image/...;base64,...`` of a PNG, JPEG or GIF file.

    Raises:
        InvalidInput: not one of those (by its first bytes).
    """
    data = Path(path).read_bytes()
    mime = next((m for magic, m in IMAGE_TYPES.items() if data.startswith(magic)), None)
    if mime is None:
        raise InvalidInput(f"{path}: not a PNG, JPEG or GIF image; cannot embed it")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _embedded(src: str, assets: Path | None) -> str:
    """The ``data:`` URI for an image reference of the markdown (a file beside it)."""
    if src.startswith("data:image/"):
        return src
    if "://" in src or src.startswith(("//", "/", "data:")) or assets is None:
        raise InvalidInput(f"image {src!r}: only files beside the markdown can be embedded")
    root = Path(assets).resolve()
    path = (root / unquote(src)).resolve()  # markdown-it percent-encodes link targets
    if not path.is_relative_to(root) or not path.is_file():
        raise InvalidInput(f"image {src!r}: no such file in {assets}")
    return image_data_uri(path)


def _markdown_renderer(assets: Path | None) -> Any:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    default_image = md.renderer.rules["image"]
    opened: list[bool] = []  # per open link: kept as a link (an in-page anchor) or made text

    def image(tokens: Sequence[Any], idx: int, options: Any, env: Any) -> str:
        token = tokens[idx]
        token.attrSet("src", _embedded(str(token.attrGet("src") or ""), assets))
        return default_image(tokens, idx, options, env)

    def link_open(tokens: Sequence[Any], idx: int, options: Any, env: Any) -> str:
        href = str(tokens[idx].attrGet("href") or "")
        opened.append(href.startswith("#"))
        if opened[-1]:
            return f'<a href="{html_lib.escape(href)}">'
        return f'<span class="ref" title="{html_lib.escape(href)}">'

    def link_close(tokens: Sequence[Any], idx: int, options: Any, env: Any) -> str:
        return "</a>" if opened.pop() else "</span>"

    md.renderer.rules["image"] = image
    md.renderer.rules["link_open"] = link_open
    md.renderer.rules["link_close"] = link_close
    return md


def _title(markdown: str) -> str:
    for line in markdown.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return "detpipe"


def render_page(markdown: str, *, assets: Path | None = None, title: str | None = None) -> str:
    """The HTML page of ``markdown``, its images (files in ``assets``) embedded.

    Args:
        markdown: the text (CommonMark + tables); raw HTML in it is shown as text.
        assets: the directory image references are relative to (the markdown's own).
        title: the page title; None: the first ``# heading``.

    Raises:
        InvalidInput: an image that is not a PNG/JPEG/GIF file in ``assets`` (a remote one
            included): the page would not be self-contained.
    """
    body = _markdown_renderer(assets).render(markdown)
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{html_lib.escape(title or _title(markdown))}</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n"
    )
    refs = external_references(page)
    if refs:  # the renderer's own rules make none; this guards them
        raise InvalidInput(f"the page would load {', '.join(refs[:3])}: not self-contained")
    return page


def write_page(markdown_file: Path, out: Path, title: str | None = None) -> Path:
    """Render ``markdown_file`` (its images beside it) to the page ``out``, atomically."""
    markdown_file = Path(markdown_file)
    return write_text(out, render_page(read_text(markdown_file), assets=markdown_file.parent, title=title))


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        for name, value in attrs:
            if value is None:
                continue
            if name in _URL_ATTRS:
                # srcset: "URL [descriptor], URL ..."; a data: URI's own comma has no space after it
                urls = (
                    [u.split()[0] for u in re.split(r",\s+", value.strip())] if name == "srcset" else [value]
                )
                self.found += [u for u in urls if not u.startswith(("data:", "#"))]
            elif name == "style":
                self._css(value)
            elif name == "http-equiv" and value.lower() == "refresh":
                self.found.append("meta refresh")

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self._css(data)

    def _css(self, css: str) -> None:
        low = css.lower()
        if "@import" in low:
            self.found.append("@import")
        for part in low.split("url(")[1:]:
            url = part.split(")", 1)[0].strip("'\" ")
            if not url.startswith(("data:", "#")):
                self.found.append(url)


def external_references(page: str) -> list[str]:
    """Everything ``page`` would fetch or navigate to outside itself (``data:`` and ``#`` are in).

    Looks at URL attributes (``src``, ``href``, ``srcset``, ...), CSS ``url()`` and ``@import``
    in ``<style>`` and ``style=""``, and meta refreshes.
    """
    parser = _References()
    parser.feed(page)
    parser.close()
    return parser.found
