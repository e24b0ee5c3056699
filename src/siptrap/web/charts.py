"""Charts drawn on the server as inline SVG: no script, no chart library, no CDN.

Every label is escaped here (markupsafe), so an attacker's User-Agent in a bar chart is
text; colours and coordinates are ours. SVG presentation attributes, not style
attributes, so the page's Content-Security-Policy (no inline styles) holds.
"""

from __future__ import annotations

import time

from markupsafe import Markup, escape

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
WIDTH, HEIGHT, PAD = 640, 180, 36


def _hhmm(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(epoch))


def line_chart(
    title: str, series: list[tuple[str, list[int]]], since: float, bucket: int
) -> Markup:
    """Lines over time, one per series; the y axis from 0 to the largest value."""
    count = max((len(v) for _, v in series), default=0)
    top = max((max(v, default=0) for _, v in series), default=0) or 1
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    step = inner_w / max(1, count - 1)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT + 20}" '
        f'width="{WIDTH}" height="{HEIGHT + 20}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT + 20}" fill="#ffffff"/>',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#888"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#888"/>',
        f'<text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end" font-size="11">{top}</text>',
        f'<text x="{PAD - 4}" y="{HEIGHT - PAD}" text-anchor="end" font-size="11">0</text>',
        f'<text x="{PAD}" y="{HEIGHT - PAD + 14}" font-size="11">{_hhmm(since)}</text>',
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - PAD + 14}" text-anchor="end" font-size="11">'
        f"{_hhmm(since + bucket * count)} UTC, {bucket}s per point</text>",
    ]
    for index, (name, values) in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        points = " ".join(
            f"{PAD + i * step:.1f},{HEIGHT - PAD - inner_h * v / top:.1f}"
            for i, v in enumerate(values)
        )
        if points:
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>'
            )
        x = PAD + index * 150
        parts.append(f'<rect x="{x}" y="{HEIGHT + 2}" width="12" height="12" fill="{colour}"/>')
        parts.append(
            f'<text x="{x + 16}" y="{HEIGHT + 12}" font-size="12">'
            f"{escape(name)} ({sum(values)})</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every label escaped above)


def bar_chart(title: str, rows: list[tuple[str, int]]) -> Markup:
    """Horizontal bars, one per (label, count), labels cut to 40 characters."""
    height = 22 * max(1, len(rows)) + 24
    top = max((n for _, n in rows), default=0) or 1
    label_w, bar_w = 300, WIDTH - 300 - 60
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="4" y="14" font-size="12" font-weight="bold">{escape(title)}</text>',
    ]
    if not rows:
        parts.append('<text x="4" y="36" font-size="12">none</text>')
    for i, (label, n) in enumerate(rows):
        y = 24 + i * 22
        text = label if len(label) <= 40 else label[:39] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end" font-size="11">'
            f"{escape(text)}</text>"
        )
        parts.append(
            f'<rect x="{label_w}" y="{y + 2}" width="{max(1.0, bar_w * n / top):.1f}" '
            f'height="16" fill="{COLOURS[0]}"/>'
        )
        parts.append(f'<text x="{label_w + bar_w + 6}" y="{y + 14}" font-size="12">{n}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every label escaped above)
