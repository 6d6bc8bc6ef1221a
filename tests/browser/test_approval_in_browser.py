"""The two-person rule in Chromium against gunicorn + an RQ worker: an environment admin's change of a protected
environment is held (she sees it waiting, nothing is rendered, she cannot approve it herself, not even with a
forged POST); an approver signs in, finds the request, reads its diff and approves; the worker renders it and the
commit names both. A change the system makes in a protected environment is not held, but the commit, the run page
and the audit trail say nobody approved it.

Screenshots are kept in the folder printed at the start (pytest tmp dir, "screenshots")."""

from __future__ import annotations

import re
import subprocess

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from deployments import changes, runs, services
from deployments.models import Environment, RenderRun
from governance import roles
from governance import services as governance
from governance.models import ChangeRequest
from tests.deployments.runfixtures import queued_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "a-long-browser-password"


@pytest.fixture
def portal_server_env():
    return {"GITOPS_AUTO_RENDER": "true"}  # a save requests its render, as in production


def _shot(page, screenshot_dir, name):
    page.screenshot(path=str(screenshot_dir / f"{name}.png"), full_page=True)


def _user(username, role, environment):
    roles.ensure_roles()  # the transactional test flushed the data migration's groups
    user = get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    governance.grant_environment(user=user, environment=environment)
    return user


def _login(page, url, username):
    page.goto(url + "/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#dashboard")


def _logout(page):
    page.click("#logout-form button")
    page.wait_for_selector("text=Logged out")


def _git(*args) -> str:
    return subprocess.run(["git", "-C", str(settings.GITOPS_REPO_DIR), *args], check=True, capture_output=True,
                          text=True).stdout


def _trailers(sha: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in _git("show", "-s", "--format=%B", sha).splitlines() if ": " in line)


def _wait_finished(page, server):
    for _ in range(240):
        if page.locator("#run-progress[data-finished='1']").count():
            return
        page.wait_for_timeout(500)
    raise AssertionError(f"the run did not finish; worker log: {(server.log_dir / 'worker.log').read_text()[-3000:]}")


def _first_render(environment) -> str:
    run = runs.render_run_execute(run_id=queued_run(environment_ids=[environment.pk], user=None, reason="first").pk)
    assert run.status in (RenderRun.Status.SUCCEEDED, RenderRun.Status.WARNINGS), run.error
    return run.commit_sha


def test_a_second_user_approves_a_protected_change(portal_server, browser_page, screenshot_dir):
    from tests.factories import environment_factory, project_factory

    page, url = browser_page, portal_server.url
    production = environment_factory(name="prod-browser", protected=True, image_tag="v1.0.0")
    project_factory(production, slug="shop")
    first = _first_render(production)
    alice = _user("alice", roles.ENVIRONMENT_ADMIN, production)
    _user("bob", roles.APPROVER, None)
    runs_before = RenderRun.objects.count()

    # Alice changes the protected environment: saved, held, nothing rendered.
    _login(page, url, "alice")
    page.goto(url + f"/admin/deployments/environment/{production.pk}/change/")
    page.fill("#id_image_tag", "v2.0.0")
    page.click("input[name=_continue]")
    message = page.inner_text(".messagelist")
    assert "Not shipped yet" in message and "Awaiting approval" in message, message
    _shot(page, screenshot_dir, "20-author-change-held")
    change = ChangeRequest.objects.get()
    assert change.status == ChangeRequest.Status.PENDING and change.author == alice
    assert RenderRun.objects.count() == runs_before and _git("rev-parse", settings.GITOPS_BRANCH).strip() == first
    assert Environment.objects.get(pk=production.pk).image_tag == "v2.0.0"  # the model holds it

    # Her dashboard says the environment waits for an approval (and offers no render that would be held anyway).
    page.goto(url + "/admin/")
    card = page.locator('article[data-environment="prod-browser"]')
    assert "1 waiting" in card.inner_text(), card.inner_text()
    assert card.locator("button:has-text('Render and commit')").count() == 0
    _shot(page, screenshot_dir, "21-author-dashboard")

    # She opens the request: the diff, "waiting for an approver other than alice", no way to decide.
    card.locator("a:has-text('1 waiting')").click()
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tbody tr").count() == 1
    page.locator("#result_list tbody tr a").first.click()
    page.wait_for_selector("#diff")
    assert "v2.0.0" in page.inner_text("#diff")
    assert "Waiting for an approver other than alice" in page.inner_text("#content-main")
    assert page.locator("button[value=approve]").count() == 0
    _shot(page, screenshot_dir, "22-author-sees-request")
    # A forged approval (her own session, a valid CSRF token) changes nothing.
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    forged = page.request.post(url + change.get_absolute_url(), form={
        "csrfmiddlewaretoken": token, "decision": "approve", "diff_sha256": change.diff_sha256},
        headers={"Referer": url + change.get_absolute_url()})
    assert forged.status == 403 and "CSRF" not in forged.text(), forged.text()[:500]  # refused by the rule itself
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.PENDING and RenderRun.objects.count() == runs_before
    _logout(page)

    # Bob, an approver, finds it in the list, reads the diff and approves.
    _login(page, url, "bob")
    page.goto(url + "/admin/governance/changerequest/")
    row = page.locator("#result_list tbody tr").first
    assert "Awaiting approval" in row.inner_text() and "alice" in row.inner_text()
    _shot(page, screenshot_dir, "23-approver-list")
    assert page.evaluate("(() => { const r = document.querySelector('.results'); "
                         "return r.scrollWidth <= r.clientWidth; })()"), "the list scrolls sideways at 1366 px"
    row.locator("th a, td a").first.click()
    page.wait_for_selector("#diff")
    assert "v2.0.0" in page.inner_text("#diff") and page.locator("#diff .diff-add").count() >= 1
    change.refresh_from_db()
    assert page.locator("ol.diff-files li").count() == change.files_changed >= 2  # the file list above the diff
    page.fill("#id_comment", "Tag checked")
    _shot(page, screenshot_dir, "24-approver-diff")
    page.click("button[value=approve]")
    page.wait_for_selector(".messagelist .success")
    assert page.inner_text("#status") == "Approved"
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.APPROVED and change.approver.username == "bob"
    assert change.run is not None

    # The worker renders it; the run page shows the progress, the commit, and who approved it.
    page.click(f".messagelist a:text-is('#{change.run_id}')")
    page.wait_for_url(re.compile(rf"/admin/deployments/renderrun/{change.run_id}/change/"))
    _wait_finished(page, portal_server)
    run = RenderRun.objects.get(pk=change.run_id)
    assert run.status in (RenderRun.Status.SUCCEEDED, RenderRun.Status.WARNINGS), run.error
    assert run.commit_sha == _git("rev-parse", settings.GITOPS_BRANCH).strip() != first
    assert run.commit_sha in page.inner_text(".field-commit_sha")
    assert "approved by bob: Tag checked" in page.inner_text("#content-main")
    _shot(page, screenshot_dir, "25-approved-run")
    trailers = _trailers(run.commit_sha)
    assert trailers["Changed-By"] == "alice" and trailers["Approved-By"] == "bob"
    assert trailers["Change-Request"] == f"#{change.pk}" and "Unapproved-System-Change" not in trailers
    assert "v2.0.0" in _git("show", run.commit_sha)
    assert not ChangeRequest.objects.filter(status=ChangeRequest.Status.PENDING).exists()
    assert not Environment.objects.get(pk=production.pk).needs_render
    assert not page.js_errors, page.js_errors


def test_a_system_change_of_a_protected_environment_ships_but_is_named(portal_server, browser_page,
                                                                      screenshot_dir):
    """Commands and data loads (user=None) are not held — they run with shell access to the portal, which is
    more than an approver has — but the commit, the run page and the audit trail say nobody approved them."""
    from tests.factories import environment_factory

    page, url = browser_page, portal_server.url
    production = environment_factory(name="prod-system", protected=True, image_tag="v1.0.0")
    first = _first_render(production)
    assert _trailers(first)["Unapproved-System-Change"] == "prod-system"  # created by the system, too
    _user("bob", roles.APPROVER, None)

    production.image_tag = "v7.0.0"
    with changes.change_batch(user=None) as batch:
        services.environment_save(environment=production, user=None)
    assert batch.request.held is None and batch.request.run is not None  # queued to the real worker
    assert not ChangeRequest.objects.exists()

    _login(page, url, "bob")
    page.goto(url + f"/admin/deployments/renderrun/{batch.request.run.pk}/change/")
    _wait_finished(page, portal_server)
    run = RenderRun.objects.get(pk=batch.request.run.pk)
    assert run.status in (RenderRun.Status.SUCCEEDED, RenderRun.Status.WARNINGS), run.error
    assert "Unapproved-System-Change: prod-system" in page.inner_text("#content-main")
    _shot(page, screenshot_dir, "26-system-change-run")
    trailers = _trailers(run.commit_sha)
    assert trailers["Changed-By"] == "system" and trailers["Unapproved-System-Change"] == "prod-system"
    assert "Approved-By" not in trailers

    page.goto(url + f"/admin/governance/changerequest/audit/?environment={production.pk}")
    row = page.locator("tr", has_text="v7.0.0").first
    assert "system" in row.inner_text() and run.commit_sha[:10] in row.inner_text()
    _shot(page, screenshot_dir, "27-system-change-audit")
    production.refresh_from_db()
    assert not production.needs_render
    assert not page.js_errors, page.js_errors
