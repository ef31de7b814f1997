"""The report as one list of sections, written twice: a self-contained HTML page and Markdown.

A section is a stable id, a title and blocks (text, a table, an image, preformatted text). The HTML
embeds every image as a base64 data URI and carries its own CSS, so ``index.html`` opens offline from
anywhere (no CDN, no script); the Markdown links the same images by paths relative to its folder.
"""
from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]
    status_column: str | None = None   # cells "pass"/"fail"/"yes"/"no" coloured in HTML

    def cells(self) -> list[list[str]]:
        return [[_cell(v) for v in row] for row in self.rows]


@dataclass(frozen=True)
class Image:
    path: Path
    caption: str


@dataclass(frozen=True)
class Pre:
    text: str


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    blocks: list = field(default_factory=list)


def _cell(v) -> str:
    if isinstance(v, float):
        return "n/a" if v != v else f"{v:.4g}"
    return str(v)


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;
color:#222;line-height:1.4}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #bbb;margin-top:2em}
nav a{margin-right:1em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}
th{background:#f0f0f0}tr:nth-child(even) td{background:#fafafa}
td.good{background:#d9f2d9!important}td.bad{background:#f8d4d4!important}td.na{color:#888}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}
figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.8em;color:#555}
pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:.8em}
"""

_GOOD, _BAD = {"pass", "yes"}, {"fail", "no"}


def _data_uri(path: Path) -> str:
    mime = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}.get(path.suffix.lower(), "image/png")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _html_block(b) -> str:
    e = html.escape
    if isinstance(b, Text):
        return f"<p>{e(b.text)}</p>"
    if isinstance(b, Pre):
        return f"<pre>{e(b.text)}</pre>"
    if isinstance(b, Image):
        return (f'<figure><img src="{_data_uri(b.path)}" alt="{e(b.caption)}">'
                f"<figcaption>{e(b.caption)}</figcaption></figure>")
    if isinstance(b, Table):
        status = b.columns.index(b.status_column) if b.status_column in b.columns else -1
        head = "".join(f"<th>{e(c)}</th>" for c in b.columns)
        body = []
        for row in b.cells():
            tds = []
            for i, v in enumerate(row):
                cls = ""
                if i == status:
                    cls = ' class="good"' if v in _GOOD else ' class="bad"' if v in _BAD else ' class="na"'
                tds.append(f"<td{cls}>{e(v)}</td>")
            body.append("<tr>" + "".join(tds) + "</tr>")
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    raise TypeError(f"unknown block {type(b).__name__}")


def render_html(title: str, subtitle: str, sections: list[Section]) -> str:
    """The whole page as one string: inline CSS, images as data URIs, one <section id=...> each."""
    e = html.escape
    nav = " ".join(f'<a href="#{s.id}">{e(s.title)}</a>' for s in sections)
    parts = [f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
             f"<style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1><p>{e(subtitle)}</p><nav>{nav}</nav>"]
    for s in sections:
        parts.append(f'<section id="{s.id}"><h2>{e(s.title)}</h2>')
        parts.extend(_html_block(b) for b in s.blocks)
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _md_escape(v: str) -> str:
    return v.replace("|", "\\|").replace("\n", " ")


def _md_block(b, base: Path) -> str:
    if isinstance(b, Text):
        return b.text
    if isinstance(b, Pre):
        return f"```\n{b.text.rstrip()}\n```"
    if isinstance(b, Image):
        rel = Path(os.path.relpath(b.path.resolve(), base.resolve())).as_posix()
        return f"![{b.caption}]({rel})\n\n*{b.caption}*"
    if isinstance(b, Table):
        lines = ["| " + " | ".join(b.columns) + " |", "|" + "---|" * len(b.columns)]
        lines += ["| " + " | ".join(_md_escape(v) for v in row) + " |" for row in b.cells()]
        return "\n".join(lines)
    raise TypeError(f"unknown block {type(b).__name__}")


def render_markdown(title: str, subtitle: str, sections: list[Section], base: Path) -> str:
    """The same sections as Markdown; images linked relative to ``base`` (the Markdown file's folder)."""
    parts = [f"# {title}", subtitle]
    for s in sections:
        parts.append(f'<a id="{s.id}"></a>\n\n## {s.title}')
        parts.extend(_md_block(b, base) for b in s.blocks)
    return "\n\n".join(parts) + "\n"
