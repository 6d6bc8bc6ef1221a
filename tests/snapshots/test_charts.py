"""snapshots/charts.py: the SVG is drawn (elements present, values placed) and every text is escaped."""

from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

from snapshots.charts import TimelinePoint, TrendPoint, timeline_svg, trend_svg

NOW = datetime(2026, 3, 1, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"


def test_timeline_places_snapshots_on_the_time_axis_and_escapes():
    points = [
        TimelinePoint(key="snap-old", volume="project-storage", started_at=NOW - timedelta(days=40), state="completed",
                      size_gib=5, over_retention=True),
        TimelinePoint(key="snap-new", volume="project-storage", started_at=NOW - timedelta(days=1), state="pending"),
        TimelinePoint(key='snap-<b>"x"', volume="svc-<db>-data", started_at=NOW - timedelta(days=10), state="error"),
    ]
    svg = timeline_svg(points, now=NOW, retention_days=30, volumes=["project-storage", "svc-cache-data"])
    root = ElementTree.fromstring(svg)  # well-formed XML: nothing unescaped
    circles = {c.get("data-key"): c for c in root.iter(f"{SVG}circle") if c.get("data-key")}
    assert set(circles) == {"snap-old", "snap-new", 'snap-<b>"x"'}
    assert float(circles["snap-old"].get("cx")) < float(circles['snap-<b>"x"'].get("cx")) < float(
        circles["snap-new"].get("cx"))
    assert circles["snap-new"].get("fill") == "#bf8700" and circles['snap-<b>"x"'].get("fill") == "#cf222e"
    assert circles["snap-old"].get("stroke") == "#cf222e"
    window = next(r for r in root.iter(f"{SVG}rect") if r.get("class") == "retention-window")
    assert float(circles["snap-old"].get("cx")) < float(window.get("x")) < float(circles["snap-new"].get("cx"))
    lanes = [t.text for t in root.iter(f"{SVG}text")]
    assert lanes[:1] == ["retention: 30 days"] and "svc-cache-data" in lanes and "svc-<db>-data" in lanes
    assert "<db>" not in svg and "&lt;db&gt;" in svg
    assert "snap-old — completed, 2026-01-20 00:00 UTC, 5 GiB — over retention" in svg


def test_trend_draws_one_stacked_bar_per_report():
    points = [TrendPoint(label="Report 1", evaluated_at=NOW - timedelta(days=1), compliant=3, non_compliant=1,
                         unknown=0),
              TrendPoint(label="Report <2>", evaluated_at=NOW, compliant=1, non_compliant=0, unknown=1)]
    root = ElementTree.fromstring(trend_svg(points))
    bars = [r for r in root.iter(f"{SVG}rect") if (r.get("class") or "").startswith("bar")]
    assert [b.get("class") for b in bars] == ["bar COMPLIANT", "bar NON_COMPLIANT", "bar COMPLIANT", "bar UNKNOWN"]
    assert float(bars[0].get("height")) == 3 * float(bars[1].get("height"))
    shares = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "share"]
    assert shares == ["75%", "50%"]
    assert "Report &lt;2&gt;" in trend_svg(points)
    assert "No finished audit yet" in trend_svg([])
