"""Small pieces the widgets share: the message line, error text, figures and tables as outputs.

Everything a widget shows goes into its own widgets (an `HTML` line or an
`ipywidgets.Output` whose `.outputs` are set directly), never into the cell's
output, so it works the same in Jupyter, in Voila and from a background thread.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

import ipywidgets as w
from matplotlib.figure import Figure

from stemlab.errors import LeaseLost, StemlabError

__all__ = [
    "MessageLine",
    "describe_error",
    "html_table",
    "plain_table",
    "show_figure",
    "show_html",
    "tag_controls",
]

_COLOURS = {"info": "#1b5e20", "error": "#b71c1c", "busy": "#0d47a1"}


def tag_controls(owner: object) -> None:
    """Give each widget attribute of `owner` the CSS class `stemlab-<attribute name>`.

    Stable hooks for a browser test or a user's stylesheet (e.g. `.stemlab-publish-button`).
    """
    for name, value in vars(owner).items():
        if isinstance(value, w.DOMWidget) and not name.startswith("_"):
            value.add_class("stemlab-" + name.replace("_", "-"))


def describe_error(exc: BaseException) -> str:
    """One line for a user: what failed, without a traceback."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, LeaseLost):
        return f"lease lost: {text} (the delivery went back to the queue; its receipt is stale)"
    if isinstance(exc, StemlabError | ValueError | TypeError):
        return f"{type(exc).__name__}: {text}"
    return f"unexpected {type(exc).__name__}: {text}"


class MessageLine(w.HTML):
    """The one-line status of a widget: the last thing that happened, green, blue or red."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.text = ""
        self.kind = "info"

    def say(self, text: str, kind: str = "info") -> None:
        colour = _COLOURS.get(kind, _COLOURS["info"])
        self.value = f'<span style="color:{colour}">{html.escape(text)}</span>'
        self.kind = kind
        self.text = text

    def error(self, exc: BaseException | str) -> None:
        self.say(exc if isinstance(exc, str) else describe_error(exc), "error")


def _display(data: dict[str, str]) -> dict[str, Any]:
    return {"output_type": "display_data", "data": data, "metadata": {}}


def show_figure(out: w.Output, fig: Figure, alt: str) -> None:
    """Replace what `out` shows with `fig` as a PNG (built here, so no inline backend is needed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    png = base64.b64encode(buf.getvalue()).decode("ascii")
    out.outputs = (_display({"image/png": png, "text/plain": alt}),)


def show_html(out: w.Output, markup: str, text: str) -> None:
    """Replace what `out` shows with an HTML fragment (`text` is its plain-text form)."""
    out.outputs = (_display({"text/html": markup, "text/plain": text}),)


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], empty: str) -> str:
    """A small escaped HTML table; `empty` is shown when there are no rows."""
    if not rows:
        return f"<i>{html.escape(empty)}</i>"
    cell = "text-align:left;padding:0 8px"
    head = "".join(f"<th style='{cell}'>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td style='{cell}'>{html.escape(str(c))}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table style='font-family:monospace;font-size:12px'><tr>{head}</tr>{body}</table>"


def plain_table(header: Sequence[str], rows: Sequence[Sequence[Any]], empty: str) -> str:
    """The same table as aligned text (what tests and text front ends read)."""
    if not rows:
        return empty
    cells = [list(map(str, header)), *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(n) for c, n in zip(r, widths, strict=True)) for r in cells)
