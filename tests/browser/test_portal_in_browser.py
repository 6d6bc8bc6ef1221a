"""End to end in Chromium against gunicorn + an RQ worker + PostgreSQL + Redis: what a platform engineer does.

Screenshots of the main pages are kept in the folder printed at the start (pytest tmp dir, "screenshots")."""

from __future__ import annotations

import csv
import datetime
import io
import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from deployments.models import Environment, NodeGroup, RenderRun, Secret
from projects.models import Container, Project

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "a-long-browser-password"


def _shot(page, screenshot_dir, name):
    path = screenshot_dir / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _login(page, server):
    get_user_model().objects.create_superuser("engineer", "engineer@example.com", PASSWORD)
    page.goto(server.url + "/")  # the bare host leads to the dashboard, which asks for a login
    page.fill("#id_username", "engineer")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#dashboard")


def _readable(page, screenshot_dir, name):
    """Screenshot, then check the page needs no horizontal scrolling at 1366 px (issue 16: 2,700-3,000 px)."""
    path = _shot(page, screenshot_dir, name)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1366, f"{name} is {width} px wide at a 1366 px window (see {path})"


def test_create_render_and_commit(portal_server, browser_page, screenshot_dir):
    page, url = browser_page, portal_server.url
    _login(page, portal_server)
    assert "No environments yet." in page.inner_text("#dashboard")

    # An environment with bad input first: the form answers with field errors, nothing is stored.
    page.goto(url + "/admin/deployments/environment/add/")
    page.fill("#id_name", "Bad Name!")
    page.fill("#id_app_domain", "not a domain")
    page.fill("#id_backend_cpu_request", "lots")
    page.click("input[name=_save]")
    page.wait_for_selector(".errornote")
    for field in ("name", "app_domain", "backend_cpu_request"):
        assert page.locator(f".field-{field} .errorlist").count() == 1, field
    _shot(page, screenshot_dir, "01-environment-field-errors")
    assert not Environment.objects.exists()

    # Then good input, with a node group and a secret added through the inline rows.
    page.fill("#id_name", "browser-env")
    page.fill("#id_app_domain", "studio.browser.example.com")
    page.fill("#id_backend_cpu_request", "500m")
    page.click("#node_groups-group .add-row a")
    page.fill("#id_node_groups-0-name", "primary")
    page.fill("#id_node_groups-0-instance_types", "t3.large")
    page.click("#secrets-group .add-row a")
    page.fill("#id_secrets-0-secret_name", "tesslate-app-secrets")
    page.fill("#id_secrets-0-key", "SECRET_KEY")
    page.fill("#id_secrets-0-value", "browser-secret-value-1")
    _readable(page, screenshot_dir, "02-environment-filled")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    env = Environment.objects.get(name="browser-env")
    assert NodeGroup.objects.filter(environment=env, name="primary").exists()
    secret = Secret.objects.get(environment=env, key="SECRET_KEY")
    assert secret.ciphertext and "browser-secret-value-1" not in secret.ciphertext

    # A project with two containers.
    page.goto(url + "/admin/projects/project/add/")
    page.fill("#id_name", "Shop")
    page.fill("#id_slug", "shop")
    page.select_option("#id_environment", str(env.pk))
    page.fill("#id_owner", "user-42")
    for index, (directory, image, port) in enumerate([("frontend", "tesslate-devserver:latest", "5173"),
                                                       ("api", "tesslate-devserver:latest", "8000")]):
        page.click("#containers-group .add-row a")
        page.fill(f"#id_containers-{index}-directory", directory)
        page.fill(f"#id_containers-{index}-image", image)
        page.fill(f"#id_containers-{index}-port", port)
    _readable(page, screenshot_dir, "03-project-filled")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    project = Project.objects.get(slug="shop")
    assert Container.objects.filter(project=project).count() == 2

    # The dashboard says the environment needs a render and offers it.
    page.goto(url + "/admin/")
    card = page.locator('article[data-environment="browser-env"]')
    assert "Needs render" in card.inner_text() and "Never rendered" in card.inner_text()
    _shot(page, screenshot_dir, "04-dashboard-needs-render")

    # Preview: the diff with its file list, nothing committed.
    page.goto(url + f"/admin/deployments/environment/{env.pk}/change/")
    _readable(page, screenshot_dir, "05-environment-page")
    page.click("text=Preview diff")
    page.wait_for_selector("pre.run-diff")
    assert page.locator("ol.diff-files li").count() > 5
    assert f"proj-{project.pk}" in page.inner_text("ol.diff-files")
    _shot(page, screenshot_dir, "06-preview")
    assert not RenderRun.objects.filter(status=RenderRun.Status.SUCCEEDED).exists()

    # Render and commit from the environment page; the worker runs it; the bar reaches 100 %.
    page.goto(url + f"/admin/deployments/environment/{env.pk}/change/")
    page.click("button:has-text('Render and commit')")
    page.wait_for_url(re.compile(r"/admin/deployments/renderrun/\d+/change/"))
    seen = set()
    for _ in range(240):
        status = page.locator("#run-progress .run-status").inner_text(timeout=60_000)
        seen.add(status)
        if "100%" in status and page.locator("#run-progress[data-finished='1']").count():
            break
        page.wait_for_timeout(500)
    else:
        raise AssertionError(f"the run did not finish: {seen}; worker log: "
                             f"{(portal_server.log_dir / 'worker.log').read_text()[-3000:]}")
    assert page.locator("#run-progress progress").get_attribute("value") == "100"
    run = RenderRun.objects.get(environments=env)
    assert run.status in (RenderRun.Status.SUCCEEDED, RenderRun.Status.WARNINGS), run.error
    assert re.fullmatch(r"[0-9a-f]{40}", run.commit_sha)
    assert run.commit_sha in page.inner_text(".field-commit_sha")
    assert page.locator(".field-error_block").count() == 0  # no Error section without an error
    _shot(page, screenshot_dir, "07-run-finished")

    # The dashboard shows the commit; nothing left to render, so no render button.
    page.goto(url + "/admin/")
    card = page.locator('article[data-environment="browser-env"]')
    assert run.commit_sha[:12] in card.inner_text() and "Up to date" in card.inner_text()
    assert card.locator("button:has-text('Render and commit')").count() == 0
    _shot(page, screenshot_dir, "08-dashboard-after-render")
    page.goto(url + f"/admin/deployments/environment/{env.pk}/preview/")
    assert "No change" in page.inner_text("#content-main")
    assert page.locator("input[value^='Render and commit']").count() == 0  # nothing to commit, nothing offered

    # The project page: hosts, its folder in git, its runs; hibernated, it has no host links and no folder.
    page.goto(url + f"/admin/projects/project/{project.pk}/change/")
    assert "shop-frontend.studio.browser.example.com" in page.inner_text(".field-host_links")
    assert f"environments/browser-env/projects/proj-{project.pk}/" in page.inner_text(".field-git_folder_link")
    _readable(page, screenshot_dir, "09-project-page")
    page.select_option("#id_state", "hibernated")
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist .success")
    assert "none while hibernated" in page.inner_text(".field-host_links")
    assert "studio.browser.example.com" not in page.inner_text("#content")
    _shot(page, screenshot_dir, "10-project-hibernated")
    assert not page.js_errors, page.js_errors


def _seed_backup_and_costs(env, project):
    from costs.models import CostActual
    from snapshots.models import AuditFinding, AuditReport, Snapshot

    now = timezone.now()
    for index in range(3):
        Snapshot.objects.create(environment=env, project=project, key=f"snap-0abc{index:013d}",
                                ebs_snapshot_id=f"snap-0abc{index:013d}", namespace=project.namespace,
                                volume_name="project-storage", state="completed", size_gib=5,
                                started_at=now - datetime.timedelta(days=3 * index + 1), seen_in_aws=True)
    for day, (good, bad) in enumerate([(3, 2), (4, 1), (5, 0)]):
        report = AuditReport.objects.create(status="succeeded", progress=100, compliant_count=good,
                                            non_compliant_count=bad,
                                            evaluated_at=now - datetime.timedelta(days=2 - day))
        for index in range(good):
            AuditFinding.objects.create(report=report, control="project-recent-snapshot", scope="project",
                                        environment_name=env.name, project=project, resource=f"shop-{index}",
                                        result="COMPLIANT")
        for index in range(bad):
            AuditFinding.objects.create(report=report, control="over-retention", scope="snapshot",
                                        environment_name=env.name, resource=f"snap-{index}",
                                        result="NON_COMPLIANT", detail="older than the retention")
    first = now.date().replace(day=1)
    for months_back, amount in ((2, "290.10"), (1, "305.55")):
        start = (first - datetime.timedelta(days=28 * months_back)).replace(day=1)
        end = (start + datetime.timedelta(days=32)).replace(day=1)
        CostActual.objects.create(environment=env, granularity="MONTHLY", period_start=start, period_end=end,
                                  service="Amazon Elastic Compute Cloud - Compute", amount=Decimal(amount),
                                  fetched_at=now)
    return report


def test_snapshot_audit_and_cost_pages_draw_their_charts(portal_server, browser_page, screenshot_dir):
    from tests.factories import eks_environment_factory, project_factory

    page, url = browser_page, portal_server.url
    env = eks_environment_factory(name="aws-browser")
    project = project_factory(env, slug="shop")
    report = _seed_backup_and_costs(env, project)
    _login(page, portal_server)

    card = page.locator('article[data-environment="aws-browser"]')
    assert "Compliant" in card.inner_text() and "estimated" in card.inner_text()

    page.goto(url + f"/admin/projects/project/{project.pk}/change/")
    page.click("text=Snapshot timeline")
    svg = page.locator("svg.snapshot-timeline")
    svg.wait_for()
    assert svg.locator(".snapshot").count() == 3 and svg.bounding_box()["width"] > 300
    _shot(page, screenshot_dir, "11-snapshot-timeline")

    page.goto(url + f"/admin/snapshots/auditreport/{report.pk}/change/")
    trend = page.locator("svg.compliance-trend")
    trend.wait_for()
    assert trend.locator(".bar").count() >= 3 and trend.bounding_box()["height"] > 50
    _shot(page, screenshot_dir, "12-audit-report")
    with page.expect_download() as download_info:
        page.click("a:text-is('CSV')")
    download = download_info.value
    rows = list(csv.reader(io.StringIO(open(download.path(), encoding="utf-8").read())))
    assert rows[0][:3] == ["control", "result", "scope"] and len(rows) == 1 + 5
    assert download.suggested_filename == f"backup-audit-{report.pk}.csv"

    page.goto(url + f"/admin/costs/environmentcostsettings/report/{env.pk}/")
    chart = page.locator("svg.cost-chart")
    chart.wait_for()
    assert chart.locator("rect.bar").count() >= 2 and "$306" in chart.inner_html()
    _shot(page, screenshot_dir, "13-cost-report")
    assert not page.js_errors, page.js_errors
