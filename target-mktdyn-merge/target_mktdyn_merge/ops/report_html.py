"""``mktdyn report --format html``: one self-contained page (inline CSS, SVG and script; nothing fetched).

The page is rendered by Jinja2 with autoescaping on, so every value from a record (names, emails, API
messages: anything a user of either system typed) is text, never markup. The timeline's data travels as JSON
in a ``<script type="application/json">`` element with ``<``, ``>`` and ``&`` escaped, and the page's script
writes it with ``textContent`` only: a hostile value cannot close the element or become HTML.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

#: Bar colours per action (an action not listed is grey); ``unchanged`` is not charted.
COLOURS = {
    "created": "#2e7d32",
    "updated": "#1565c0",
    "linked": "#6a1b9a",
    "collision": "#ef6c00",
    "validation_failed": "#c62828",
    "write_failed": "#b71c1c",
    "write_ignored": "#ad1457",
    "deleted": "#4e342e",
    "flagged": "#795548",
    "unlinked": "#5d4037",
    "ambiguous_match": "#f9a825",
    "skipped": "#90a4ae",
    "deferred": "#00838f",
}
CHART_HEIGHT = 220
BAR_WIDTH = 28
GAP = 12


@dataclass(frozen=True)
class Bar:
    """One segment of a run's stacked bar."""

    x: int
    y: float
    height: float
    colour: str
    title: str


def chart(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The run-history chart as SVG geometry: a stacked bar per run, a segment per action (not ``unchanged``)."""
    actions = sorted({a for run in history for a in run["counts"] if a != "unchanged"}, key=_action_order)
    totals = [sum(n for a, n in run["counts"].items() if a != "unchanged") for run in history]
    top = max(totals, default=0) or 1
    bars: list[Bar] = []
    for index, run in enumerate(history):
        x = GAP + index * (BAR_WIDTH + GAP)
        y = float(CHART_HEIGHT)
        for action in actions:
            count = run["counts"].get(action, 0)
            if not count:
                continue
            height = max(count / top * (CHART_HEIGHT - 20), 1.0)
            y -= height
            label = f"{run['run_id']} ({run['mode']}): {count} {action}"
            bars.append(Bar(x, round(y, 1), round(height, 1), COLOURS.get(action, "#9e9e9e"), label))
    return {
        "width": max(GAP + len(history) * (BAR_WIDTH + GAP), 320),
        "height": CHART_HEIGHT,
        "bars": bars,
        "legend": [(a, COLOURS.get(a, "#9e9e9e")) for a in actions],
        "top": top,
        "labels": [
            (GAP + i * (BAR_WIDTH + GAP), _clock(run["started_at"]), run["mode"]) for i, run in enumerate(history)
        ],
    }


def _clock(started_at: str) -> str:
    """A run's label under its bar: its start time of day (the table below gives the full id)."""
    return started_at[11:16] if len(started_at) >= 16 else started_at


def _action_order(action: str) -> tuple[int, str]:
    order = list(COLOURS)
    return (order.index(action) if action in order else len(order), action)


def script_json(value: Any) -> Markup:
    """JSON safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` as escapes, so no value can end it."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))  # noqa: S704 - escaped above


def value_text(value: Any) -> str:
    """A field value as the page shows it: ∅ for none, JSON for anything not a string."""
    if value is None:
        return "∅"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def render_html(data: dict[str, Any]) -> str:
    """The report page of :func:`~target_mktdyn_merge.sync.report_data.report_data`'s data."""
    environment = Environment(
        loader=PackageLoader("target_mktdyn_merge.ops", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["value"] = value_text
    environment.filters["script_json"] = script_json
    template = environment.get_template("report.html.j2")
    return template.render(data=data, chart=chart(data["history"]), run=data["run"])
