"""Self-contained HTML pages (the evaluation and tuning reports, the index of published models):
one style, escaping, tables and embedded plots, so that a page is one file to copy or mail.

>>> page = "\\n".join([*page_start("A <b> report", "Generated now."), table(["k"], [["1 < 2"]]), PAGE_END])
>>> "<title>A &lt;b&gt; report</title>" in page and "<td>1 &lt; 2</td>" in page
True
"""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 80em; color: #222; line-height: 1.4; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #bbb; }
table { border-collapse: collapse; margin: .6em 0 1.2em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption, .note { color: #555; font-size: .9em; }
"""
PAGE_END = "</body></html>"
_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def escape(value: Any) -> str:
    """``value`` as HTML text (quotes escaped too, so it can stand in an attribute)."""
    return html.escape(str(value), quote=True)


class Html(str):
    """A table cell (or fragment) that is HTML already, made from escaped text; :func:`table` keeps it."""


def page_start(title: str, note: str, *, style: str = "") -> list[str]:
    """The head of a page, its title as ``<h1>`` and a ``note`` paragraph (text); ``style`` adds CSS."""
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{STYLE}{style}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="note">{escape(note)}</p>',
    ]


def table(head: Sequence[str], rows: Sequence[Sequence[Any]], *, row_classes: Sequence[str] | None = None) -> str:
    """A table; cells are text (escaped here) unless they are :class:`Html` (a whole ``<td>``)."""
    out = ["<table><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        css = f' class="{escape(row_classes[i])}"' if row_classes else ""
        out.append(f"<tr{css}>" + "".join(c if isinstance(c, Html) else f"<td>{escape(c)}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def numeric(text: Any) -> Html:
    """A right-aligned numeric table cell."""
    return Html(f'<td class="num">{escape(text)}</td>')


def figure(path: str | Path, caption: str = "") -> str:
    """The image at ``path`` embedded as a data URL, with ``caption``; a note when it cannot be read."""
    file = Path(path)
    try:
        data = base64.b64encode(file.read_bytes()).decode("ascii")
    except OSError as error:
        log.warning("page: plot %s not embedded: %s", file, error)
        return f'<p class="note">Plot {escape(file.name)} missing ({escape(error)}).</p>'
    mime = _MIME.get(file.suffix.lower(), "application/octet-stream")
    text = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:{mime};base64,{data}" alt="{escape(file.name)}">{text}</figure>'
