"""The cost report as text lines and as JSON (``manage.py costs``); the page shows the same figures."""

from __future__ import annotations

import datetime
from decimal import Decimal

from costs.estimator import CATEGORIES, money
from costs.selectors import CostReport


def usd(value: Decimal | None) -> str:
    return "-" if value is None else f"${money(value):,.2f}"


def age_text(age: datetime.timedelta | None) -> str:
    """'3 h ago', '2 days ago'; 'never' for None."""
    if age is None:
        return "never"
    seconds = int(age.total_seconds())
    if seconds < 3600:
        return f"{max(0, seconds) // 60} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def report_lines(report: CostReport) -> list[str]:
    """The report, one figure a line (monthly USD)."""
    env, estimate = report.environment, report.estimate
    lines = [f"Environment {env.name} ({env.get_kind_display()}): estimate from the model, prices as of "
             f"{report.prices_as_of or 'unknown'}"]
    by_category = estimate.by_category()
    for category, amount in by_category.items():
        guide = report.guide_baseline.get(category)
        lines.append(f"  {CATEGORIES[category]:<30} {usd(amount):>10}" + (f"   (guide ~${guide})" if guide else ""))
        for line in estimate.lines:
            if line.category == category and line.price_key:
                lines.append(f"      {line.item}: {line.quantity.normalize():f} {line.unit} × "
                             f"${line.unit_price.normalize():f} = {usd(line.monthly_usd)}")
    guide_total = "   (guide ~$320)" if report.guide_baseline else ""
    lines.append(f"  {'Total':<30} {usd(estimate.total_usd):>10}{guide_total}")
    for key in estimate.missing_prices:
        lines.append(f"  Missing price {key}: its line is left out; add it to the price table.")
    if env.kind == "eks":
        lines.append(f"Spot savings: {usd(estimate.spot_savings_usd)} a month")
    if report.top_projects:
        lines.append("Most expensive projects (volumes + snapshots + spot compute share):")
        for p in report.top_projects:
            lines.append(f"  {p.slug:<24} {usd(p.total_usd):>10}  ({p.state}; "
                         f"{p.volume_gib.normalize():f} GiB volumes {usd(p.volume_usd)}, "
                         f"{p.snapshot_gib.normalize():f} GiB snapshots {usd(p.snapshot_usd)}, "
                         f"spot {usd(p.spot_compute_usd)})")
    for finding in estimate.findings:
        saving = f" Saves ~{usd(finding.monthly_savings_usd)} a month." if finding.monthly_savings_usd else ""
        lines.append(f"Finding [{finding.kind}] {finding.title}: {finding.detail}{saving}")
    if env.kind == "eks":
        lines.append(f"Actuals (Cost Explorer, last fetched {report.fetched_at or 'never'}, "
                     f"{age_text(report.data_age)}; {report.request_count} requests so far):")
        if report.last_error:
            lines.append(f"  ERROR ({report.last_error_kind}, {report.last_error_at}): {report.last_error} — "
                         "showing the cached figures.")
        for month in report.months:
            lines.append(f"  {month.month:%Y-%m} {usd(month.total):>10}" + ("  (so far)" if month.partial else ""))
        if report.services:
            lines.append(f"  {'Service':<50} {'estimate':>10} {'last month':>11} {'this month':>11}")
            for row in report.services:
                lines.append(f"  {row.service:<50} {usd(row.estimate):>10} {usd(row.last_month):>11} "
                             f"{usd(row.month_to_date):>11}")
    return lines


def _num(value: Decimal | None) -> float | None:
    return None if value is None else float(money(value))


def report_json(report: CostReport) -> dict:
    """The report as JSON-ready data (USD as numbers rounded to cents, dates as ISO strings)."""
    estimate = report.estimate
    return {
        "environment": report.environment.name,
        "kind": report.environment.kind,
        "prices_as_of": report.prices_as_of.isoformat() if report.prices_as_of else None,
        "estimate": {
            "total_usd": _num(estimate.total_usd),
            "by_category": {k: _num(v) for k, v in estimate.by_category().items()},
            "by_service": {k: _num(v) for k, v in estimate.by_service().items()},
            "lines": [{"category": line.category, "aws_service": line.aws_service, "item": line.item,
                       "quantity": float(line.quantity), "unit": line.unit, "unit_price": float(line.unit_price),
                       "monthly_usd": _num(line.monthly_usd), "price_key": line.price_key}
                      for line in estimate.lines],
            "missing_prices": list(estimate.missing_prices),
        },
        "guide_baseline": {k: float(v) for k, v in report.guide_baseline.items()},
        "spot_savings_usd": _num(estimate.spot_savings_usd),
        "projects": [{"slug": p.slug, "state": p.state, "total_usd": _num(p.total_usd),
                      "volume_gib": float(p.volume_gib), "volume_usd": _num(p.volume_usd),
                      "snapshot_gib": float(p.snapshot_gib), "snapshot_usd": _num(p.snapshot_usd),
                      "spot_compute_usd": _num(p.spot_compute_usd)} for p in estimate.projects],
        "findings": [{"kind": f.kind, "title": f.title, "detail": f.detail,
                      "monthly_savings_usd": _num(f.monthly_savings_usd)} for f in estimate.findings],
        "actuals": {
            "fetched_at": report.fetched_at.isoformat() if report.fetched_at else None,
            "age_seconds": int(report.data_age.total_seconds()) if report.data_age else None,
            "request_count": report.request_count,
            "error": {"kind": report.last_error_kind, "message": report.last_error,
                      "at": report.last_error_at.isoformat() if report.last_error_at else None}
            if report.last_error else None,
            "months": [{"month": m.month.strftime("%Y-%m"), "total_usd": _num(m.total), "partial": m.partial,
                        "by_service": {k: _num(v) for k, v in m.by_service.items()}} for m in report.months],
            "by_service": [{"service": r.service, "estimate_usd": _num(r.estimate),
                            "last_month_usd": _num(r.last_month), "month_to_date_usd": _num(r.month_to_date)}
                           for r in report.services],
        },
    }
