"""Charts as server-rendered SVG: grouped bars and lines, no JavaScript. Colours are SVG
presentation attributes (the page's Content-Security-Policy allows no inline style), every mark
carries its value (``data-value``) and a ``<title>`` a pointer or a screen reader shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

WIDTH, HEIGHT = 720, 290
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 38, 70
PALETTE = {
    "approved": "#2e7d32",
    "denied": "#c62828",
    "standard": "#1565c0",
    "expedited": "#ef6c00",
    "held": "#6a1b9a",
    "pending": "#00838f",
    "grey": "#757575",
    "teal": "#00897b",
    "brown": "#6d4c41",
}


@dataclass
class Series:
    name: str
    colour: str
    values: list[float | None]
    notes: list[str] = field(default_factory=list)  # per point: e.g. "12 of 40"


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    for step in (1, 2, 2.5, 5, 10):
        for scale in (10**k for k in range(-1, 8)):
            if step * scale >= value:
                return step * scale
    return value


def _frame(title: str, y_max: float, unit: str, labels: list[str], slot: float) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" class="chart" role="img"'
        f' aria-label="{escape(title)}" data-chart="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{LEFT}" y="20" font-size="14" font-weight="600" fill="#212121">{escape(title)}</text>',
    ]
    for i in range(5):
        value = y_max * i / 4
        y = TOP + plot_h - plot_h * i / 4
        out.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#e0e0e0" stroke-width="1"/>'
        )
        text = f"{value:g}{unit}"
        out.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#555">{escape(text)}</text>'
        )
    every = -(-len(labels) // 12)  # at most 12 labels under the axis
    for i, label in enumerate(labels):
        if i % every:
            continue
        x = LEFT + slot * (i + 0.5)
        out.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" font-size="11" fill="#555">'
            f"{escape(label)}</text>"
        )
    return out


def _legend(series: list[Series]) -> list[str]:
    """Keys under the plot, wrapped onto a second row when they do not fit."""
    out, x, y = [], LEFT, HEIGHT - 30
    for s in series:
        width = 24 + 7 * len(s.name)
        if x + width > WIDTH - RIGHT and x > LEFT:
            x, y = LEFT, y + 16
        out.append(f'<rect x="{x}" y="{y - 10}" width="12" height="12" fill="{s.colour}"/>')
        out.append(f'<text x="{x + 16}" y="{y}" font-size="12" fill="#333">{escape(s.name)}</text>')
        x += width
    return out


def bars(title: str, labels: list[str], series: list[Series], *, unit: str = "", y_max: float | None = None) -> str:
    """Grouped vertical bars, one group per label; a missing value (None) draws nothing."""
    values = [v for s in series for v in s.values if v is not None]
    top = y_max if y_max is not None else _nice_max(max(values, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(labels))
    width = slot * 0.8 / max(1, len(series))
    out = _frame(title, top, unit, labels, slot)
    for k, s in enumerate(series):
        for i, value in enumerate(s.values):
            if value is None:
                continue
            h = plot_h * min(value, top) / top if top else 0
            x = LEFT + slot * i + slot * 0.1 + width * k
            note = s.notes[i] if i < len(s.notes) else ""
            tip = f"{s.name}, {labels[i]}: {value:g}{unit}" + (f" ({note})" if note else "")
            out.append(
                f'<rect class="mark" x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{max(width - 1, 1):.1f}"'
                f' height="{max(h, 0.5):.1f}" fill="{s.colour}" data-series="{escape(s.name)}"'
                f' data-value="{value:g}"><title>{escape(tip)}</title></rect>'
            )
    out += _legend(series)
    out.append("</svg>")
    return "".join(out)


def lines(title: str, labels: list[str], series: list[Series], *, unit: str = "") -> str:
    """One polyline per series with a dot per value; gaps (None) break the line."""
    values = [v for s in series for v in s.values if v is not None]
    top = _nice_max(max(values, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(labels))
    out = _frame(title, top, unit, labels, slot)
    for s in series:
        runs: list[list[str]] = [[]]
        for i, value in enumerate(s.values):
            if value is None:
                runs.append([])
                continue
            x, y = LEFT + slot * (i + 0.5), TOP + plot_h - plot_h * min(value, top) / top
            runs[-1].append(f"{x:.1f},{y:.1f}")
            note = s.notes[i] if i < len(s.notes) else ""
            tip = f"{s.name}, {labels[i]}: {value:g}{unit}" + (f" ({note})" if note else "")
            out.append(
                f'<circle class="mark" cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{s.colour}"'
                f' data-series="{escape(s.name)}" data-value="{value:g}"><title>{escape(tip)}</title></circle>'
            )
        for run in runs:
            if len(run) > 1:
                out.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{s.colour}" stroke-width="2"/>')
    out += _legend(series)
    out.append("</svg>")
    return "".join(out)
