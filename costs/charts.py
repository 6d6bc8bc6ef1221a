"""Server-side SVG charts (no JavaScript, no CDN: the portal works offline). Text is escaped."""

from __future__ import annotations

from decimal import Decimal

from django.utils.html import escape

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 40


def _nice_ceiling(value: Decimal) -> Decimal:
    """A round axis maximum at or above ``value`` (1, 2, 2.5 or 5 × a power of ten)."""
    if value <= 0:
        return Decimal(1)
    exponent = len(str(int(value))) - 1
    base = Decimal(10) ** exponent
    for step in (1, 2, Decimal("2.5"), 5, 10):
        if value <= base * step:
            return base * step
    return base * 10  # pragma: no cover


def monthly_trend_svg(points: list[tuple[str, Decimal, bool]], *, estimate: Decimal | None = None,
                      title: str = "Monthly cost (USD)") -> str:
    """A bar chart of monthly totals: ``points`` are (label, USD, partial); partial bars (the month so far) are
    drawn lighter. ``estimate`` (USD per month) is drawn as a dashed line. Returns an ``<svg>`` string."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top_value = _nice_ceiling(max([v for _, v, _ in points] + [estimate or Decimal(0), Decimal(0)]))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="cost-chart" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>"]

    def y(value: Decimal) -> float:
        return TOP + plot_h - float(value / top_value) * plot_h

    for i in range(5):  # gridlines and axis labels
        value = top_value * i / 4
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                     'stroke="#ddd"/>')
        parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end" font-size="11">'
                     f"${value:,.0f}</text>")
    if not points:
        parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" font-size="13">'
                     "No Cost Explorer data cached yet.</text>")
    slot = plot_w / max(1, len(points))
    bar_w = slot * 0.6
    for index, (label, value, partial) in enumerate(points):
        x = LEFT + index * slot + (slot - bar_w) / 2
        fill = "#9ecae1" if partial else "#3182bd"
        parts.append(f'<rect class="bar{" partial" if partial else ""}" x="{x:.1f}" y="{y(value):.1f}" '
                     f'width="{bar_w:.1f}" height="{TOP + plot_h - y(value):.1f}" fill="{fill}">'
                     f"<title>{escape(label)}: ${value:,.2f}{' (so far)' if partial else ''}</title></rect>")
        parts.append(f'<text class="value" x="{x + bar_w / 2:.1f}" y="{y(value) - 4:.1f}" text-anchor="middle" '
                     f'font-size="11">${value:,.0f}</text>')
        parts.append(f'<text class="label" x="{x + bar_w / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" '
                     f'font-size="11">{escape(label)}</text>')
    if estimate is not None:
        parts.append(f'<line class="estimate" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(estimate):.1f}" '
                     f'y2="{y(estimate):.1f}" stroke="#e6550d" stroke-dasharray="6 4"/>')
        parts.append(f'<text class="estimate-label" x="{WIDTH - RIGHT}" y="{y(estimate) - 4:.1f}" text-anchor="end" '
                     f'font-size="11" fill="#e6550d">estimate ${estimate:,.0f}/month</text>')
    parts.append("</svg>")
    return "".join(parts)
