"""Server-side SVG charts (no JavaScript, no CDN): a project's snapshot timeline and the audit compliance trend.

Pure functions: plain values in, SVG text out; every text is XML-escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from xml.sax.saxutils import escape, quoteattr

from django.utils.safestring import SafeString, mark_safe

STATE_COLOURS = {"completed": "#2da44e", "pending": "#bf8700", "error": "#cf222e"}
RESULT_COLOURS = {"COMPLIANT": "#2da44e", "NON_COMPLIANT": "#cf222e", "UNKNOWN": "#bf8700"}
WIDTH, LEFT, RIGHT, TOP = 900, 150, 20, 30
LANE = 34


@dataclass(frozen=True)
class TimelinePoint:
    """One snapshot on the timeline: ``volume`` is its lane, ``started_at`` its x, ``state`` its colour."""

    key: str
    volume: str
    started_at: datetime
    state: str
    size_gib: int | None = None
    over_retention: bool = False


def _text(x: float, y: float, text: str, *, anchor: str = "start", size: int = 11, fill: str = "#333",
          extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}"{extra}>'
            f"{escape(text)}</text>")


def timeline_svg(points: Sequence[TimelinePoint], *, now: datetime, retention_days: int,
                 volumes: Sequence[str] = ()) -> SafeString:
    """A time axis (oldest snapshot or the retention start, whichever is older, to now), one lane per volume, a
    circle per snapshot coloured by state (over-retention ones outlined in red), the retention window shaded.
    ``volumes`` fixes the lanes' order (a volume with no snapshot still gets its empty lane)."""
    lanes = list(dict.fromkeys([*volumes, *sorted({p.volume or "(unknown volume)" for p in points})]))
    lanes = lanes or ["(no snapshots)"]
    retention_start = now - timedelta(days=retention_days)
    oldest = min([p.started_at for p in points] + [retention_start])
    start = oldest - (now - oldest) * 0.05
    span = (now - start).total_seconds() or 1.0
    plot_width = WIDTH - LEFT - RIGHT
    height = TOP + LANE * len(lanes) + 60

    def x_of(moment: datetime) -> float:
        return LEFT + plot_width * (moment - start).total_seconds() / span

    bottom = TOP + LANE * len(lanes)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="snapshot-timeline" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="Snapshot timeline">',
             f'<rect class="past-retention" x="{LEFT}" y="{TOP}" width="{x_of(retention_start) - LEFT:.1f}" '
             f'height="{bottom - TOP}" fill="#ffebe9"/>',
             f'<rect class="retention-window" x="{x_of(retention_start):.1f}" y="{TOP}" '
             f'width="{x_of(now) - x_of(retention_start):.1f}" height="{bottom - TOP}" fill="#dafbe1"/>',
             _text(x_of(retention_start) + 4, TOP - 8, f"retention: {retention_days} days", fill="#1a7f37")]
    for index, lane in enumerate(lanes):
        y = TOP + LANE * index + LANE / 2
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#d0d7de"/>')
        parts.append(_text(LEFT - 8, y + 4, lane, anchor="end"))
    for tick in range(6):
        moment = start + timedelta(seconds=span * tick / 5)
        x = x_of(moment)
        parts.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 5}" stroke="#57606a"/>')
        parts.append(_text(x, bottom + 18, f"{moment:%Y-%m-%d}", anchor="middle", size=10))
    parts.append(f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" stroke="#57606a"/>')
    for point in sorted(points, key=lambda p: (p.started_at, p.key)):
        y = TOP + LANE * lanes.index(point.volume or "(unknown volume)") + LANE / 2
        colour = STATE_COLOURS.get(point.state, "#57606a")
        stroke = ' stroke="#cf222e" stroke-width="3"' if point.over_retention else ' stroke="#fff" stroke-width="1"'
        size = f", {point.size_gib} GiB" if point.size_gib is not None else ""
        title = f"{point.key} — {point.state}, {point.started_at:%Y-%m-%d %H:%M} UTC{size}" + (
            " — over retention" if point.over_retention else "")
        parts.append(f'<circle class="snapshot state-{escape(point.state)}" data-key={quoteattr(point.key)} '
                     f'cx="{x_of(point.started_at):.1f}" cy="{y:.1f}" r="7" fill="{colour}"{stroke}>'
                     f"<title>{escape(title)}</title></circle>")
    legend_y = bottom + 40
    x = LEFT
    for state, colour in STATE_COLOURS.items():
        parts.append(f'<circle cx="{x}" cy="{legend_y - 4}" r="5" fill="{colour}"/>')
        parts.append(_text(x + 9, legend_y, state))
        x += 95
    parts.append(f'<circle cx="{x}" cy="{legend_y - 4}" r="5" fill="#fff" stroke="#cf222e" stroke-width="3"/>')
    parts.append(_text(x + 9, legend_y, "over retention / count"))
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped


@dataclass(frozen=True)
class TrendPoint:
    """One report: when, and how many results of each kind."""

    label: str
    evaluated_at: datetime
    compliant: int
    non_compliant: int
    unknown: int

    @property
    def total(self) -> int:
        return self.compliant + self.non_compliant + self.unknown


def trend_svg(points: Sequence[TrendPoint]) -> SafeString:
    """One 100 % stacked bar per report (compliant, non-compliant, unknown), oldest left, with the compliant
    share written above each bar."""
    height, plot_top, plot_bottom = 260, 30, 210
    left, right = 50, 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="compliance-trend" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="Compliance trend">']
    for percent in (0, 50, 100):
        y = plot_bottom - (plot_bottom - plot_top) * percent / 100
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{WIDTH - right}" y2="{y:.1f}" stroke="#d0d7de"/>')
        parts.append(_text(left - 6, y + 4, f"{percent}%", anchor="end", size=10))
    if not points:
        parts.append(_text(WIDTH / 2, (plot_top + plot_bottom) / 2, "No finished audit yet", anchor="middle"))
    slot = (WIDTH - left - right) / max(1, len(points))
    bar = min(40.0, slot * 0.7)
    for index, point in enumerate(points):
        x = left + slot * index + (slot - bar) / 2
        y = float(plot_bottom)
        for result, count in (("COMPLIANT", point.compliant), ("UNKNOWN", point.unknown),
                              ("NON_COMPLIANT", point.non_compliant)):
            if not point.total or not count:
                continue
            h = (plot_bottom - plot_top) * count / point.total
            y -= h
            parts.append(f'<rect class="bar {result}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{RESULT_COLOURS[result]}"><title>{escape(point.label)}: {count} '
                         f"{result}</title></rect>")
        share = f"{100 * point.compliant / point.total:.0f}%" if point.total else "–"
        parts.append(_text(x + bar / 2, plot_top - 8, share, anchor="middle", size=10,
                           extra=' class="share"'))
        parts.append(_text(x + bar / 2, plot_bottom + 16, f"{point.evaluated_at:%m-%d %H:%M}", anchor="middle",
                           size=9))
    x = left
    for result, colour in RESULT_COLOURS.items():
        parts.append(f'<rect x="{x}" y="{height - 22}" width="10" height="10" fill="{colour}"/>')
        parts.append(_text(x + 14, height - 13, result))
        x += 140
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped
