"""Results shown in place: a CSV as a table, an image or SVG as a picture, a notebook as a link that
opens it in JupyterLab, anything else as its first lines.

Everything a run wrote is untrusted: text is escaped, pictures are embedded as ``<img>`` data URLs
(an SVG in an ``<img>`` runs no script), and at most :data:`MAX_BYTES` of a file are read.
"""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path

from .text import esc, link

__all__ = ["MAX_BYTES", "preview_html"]

MAX_BYTES = 2 * 1024 * 1024
ROWS = 20
_IMAGES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
}


def preview_html(path: Path, name: str, *, open_url: str | None = None) -> str:
    """The preview of the file at ``path`` (the result called ``name``)."""
    suffix = Path(name).suffix.lower()
    size = path.stat().st_size
    head = f"<div><strong>{esc(name)}</strong> <small>({esc(_size(size))})</small></div>"
    if suffix == ".ipynb":
        where = link(open_url, "Open in JupyterLab") if open_url else ""
        return head + f"<div>A notebook, saved as <code>{esc(path)}</code>. {where}</div>"
    if size > MAX_BYTES:
        return head + f"<div>Too large to show here; saved as <code>{esc(path)}</code>.</div>"
    data = path.read_bytes()
    if suffix in _IMAGES:
        encoded = base64.b64encode(data).decode("ascii")
        return (
            head
            + f'<img alt="{esc(name)}" style="max-width:100%;height:auto" src="data:{_IMAGES[suffix]};base64,{encoded}">'
        )
    text = data.decode("utf-8", "replace")
    if suffix in (".csv", ".tsv"):
        rows = list(csv.reader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ","))
        if rows:
            header, body = rows[0], rows[1 : ROWS + 1]
            more = len(rows) - 1 - len(body)
            table = (
                '<table class="ep-preview" style="border-collapse:collapse;font-size:0.9em"><thead><tr>'
                + "".join(
                    f'<th style="border-bottom:2px solid #8c959f;padding:1px 6px;text-align:left">{esc(cell)}</th>'
                    for cell in header
                )
                + "</tr></thead><tbody>"
                + "".join(
                    "<tr>"
                    + "".join(
                        f'<td style="border-bottom:1px solid #d0d7de;padding:1px 6px">{esc(cell)}</td>' for cell in row
                    )
                    + "</tr>"
                    for row in body
                )
                + "</tbody></table>"
            )
            note = f"<div><small>{more} more row(s) in <code>{esc(path)}</code></small></div>" if more > 0 else ""
            return head + f'<div style="overflow-x:auto">{table}</div>' + note
    lines = text.splitlines()
    shown = "\n".join(lines[:40])
    note = f"<small>{len(lines) - 40} more line(s)</small>" if len(lines) > 40 else ""
    return (
        head
        + f'<pre style="font-size:0.85em;max-height:20em;overflow:auto;white-space:pre-wrap">{esc(shown)}</pre>{note}'
    )


def _size(size: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} bytes"  # pragma: no cover
