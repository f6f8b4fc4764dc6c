"""Small inline SVG plots for the report: a histogram against its reference, and sparklines.

Plain SVG strings (no JavaScript, no fonts fetched, no raw rows): each plot is a few hundred
bytes per bin, so a report's size depends on columns x bins, never on the row count.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

CURRENT = "#3b6fb6"
REFERENCE = "#e07b39"


def histogram(
    current: Sequence[float],
    reference: Sequence[float] | None,
    labels: Sequence[str],
    title: str,
    width: int = 420,
    height: int = 150,
) -> str:
    """Bars of this run's bin proportions; the reference's as an outlined step per bin."""
    n = max(len(current), 1)
    top = max([*current, *(reference or []), 1e-12])
    pad, base = 4, height - 18
    slot = (width - 2 * pad) / n
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="hist" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{pad}" y1="{base}" x2="{width - pad}" y2="{base}" stroke="#999"/>',
    ]
    for i, value in enumerate(current):
        h = (base - 6) * value / top
        x = pad + i * slot
        label = escape(labels[i]) if i < len(labels) else str(i)
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{base - h:.1f}" width="{max(slot - 2, 1):.1f}" '
            f'height="{h:.1f}" fill="{CURRENT}"><title>{label}: {value:.2%}</title></rect>'
        )
    if reference:
        for i, value in enumerate(reference):
            h = (base - 6) * value / top
            x = pad + i * slot
            parts.append(
                f'<rect class="ref" x="{x + 1:.1f}" y="{base - h:.1f}" '
                f'width="{max(slot - 2, 1):.1f}" height="{h:.1f}" fill="none" '
                f'stroke="{REFERENCE}" stroke-width="2"/>'
            )
    else:  # say so: a plot without its outline otherwise looks like a perfect match
        parts.append(
            f'<text class="no-ref" x="{width - pad}" y="12" font-size="10" fill="#888" '
            'text-anchor="end">no reference</text>'
        )
    if labels:
        parts.append(
            f'<text x="{pad}" y="{height - 4}" font-size="10" fill="#555">'
            f"{escape(labels[0])}</text>"
        )
        parts.append(
            f'<text x="{width - pad}" y="{height - 4}" font-size="10" fill="#555" '
            f'text-anchor="end">{escape(labels[-1])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def sparkline(values: Sequence[float | None], width: int = 110, height: int = 22) -> str:
    """PSI of the last runs, oldest left; a gap where a run had no number."""
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    if not points:
        return '<span class="muted">n/a</span>'
    top = max(max(v for _, v in points), 0.1)
    step = (width - 4) / max(len(values) - 1, 1)

    def xy(i: int, v: float) -> str:
        return f"{2 + i * step:.1f},{height - 2 - (height - 4) * v / top:.1f}"

    line = " ".join(xy(i, v) for i, v in points)
    last_i, last_v = points[-1]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="spark" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">'
        f'<polyline points="{line}" fill="none" stroke="{CURRENT}" stroke-width="1.5"/>'
        f'<circle cx="{xy(last_i, last_v).split(",")[0]}" cy="{xy(last_i, last_v).split(",")[1]}" '
        f'r="2.5" fill="{REFERENCE}"/></svg>'
    )
