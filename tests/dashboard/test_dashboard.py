"""The admin index as a dashboard, and the page fixes of issue 16 (labels, neutral icons, links, diff file list)."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from dashboard import selectors
from deployments.adminkit import diff_file_list, diff_html, diff_paths
from deployments.models import Environment, RenderRun
from jobs.models import JobRun
from live.models import LiveStatus
from projects.models import Project
from snapshots.models import AuditFinding, AuditReport
from tests.factories import eks_environment_factory, environment_factory, project_factory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "a-long-test-password")
    client.force_login(user)
    client.user = user
    return client


def _run(environment, status, *, sha="", warnings=0, user=None, minutes_ago=0):
    run = RenderRun.objects.create(status=status, commit_sha=sha, warning_count=warnings, triggered_by=user,
                                   progress=100, finished_at=timezone.now())
    run.environments.add(environment)
    RenderRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timezone.timedelta(minutes=minutes_ago))
    return run


def _card(html: str, name: str) -> str:
    match = re.search(rf'<article class="env-card state-(\w+)" data-environment="{name}">(.*?)</article>', html,
                      re.S)
    assert match, f"no card for {name}"
    return match.group(1) + " " + match.group(2)


@pytest.fixture
def seeded(admin_client):
    S = JobRun.Status
    fine = environment_factory(name="fine")
    Environment.objects.filter(pk=fine.pk).update(needs_render=False)
    _run(fine, S.SUCCEEDED, sha="a" * 40, user=admin_client.user)

    broken = environment_factory(name="broken")
    Environment.objects.filter(pk=broken.pk).update(needs_render=False)
    _run(broken, S.SUCCEEDED, sha="b" * 40, minutes_ago=30)
    _run(broken, S.FAILED, minutes_ago=20)
    _run(broken, S.FAILED, minutes_ago=10)

    waiting = environment_factory(name="waiting")  # needs_render stays True (never rendered)
    warned = environment_factory(name="warned")
    Environment.objects.filter(pk=warned.pk).update(needs_render=False)
    _run(warned, S.WARNINGS, sha="c" * 40, warnings=3)

    report = AuditReport.objects.create(status=S.SUCCEEDED, evaluated_at=timezone.now(), compliant_count=1,
                                        non_compliant_count=2)
    AuditFinding.objects.create(report=report, control="snapshot-recent", scope="project", environment_name="fine",
                                result="COMPLIANT")
    AuditFinding.objects.create(report=report, control="snapshot-recent", scope="project",
                                environment_name="warned", result="NON_COMPLIANT")
    AuditFinding.objects.create(report=report, control="retention", scope="environment",
                                environment_name="warned", result="NON_COMPLIANT")
    LiveStatus.objects.create(environment=fine, fetched_at=timezone.now(), problem_count=0)
    LiveStatus.objects.create(environment=waiting, fetched_at=timezone.now(), problem_count=2)
    LiveStatus.objects.create(environment=broken, last_error="Unauthorized", last_error_at=timezone.now())
    return {"fine": fine, "broken": broken, "waiting": waiting, "warned": warned, "report": report}


def test_selector_states(seeded):
    cards = {card.name: card for card in selectors.environment_cards()}
    assert cards["fine"].state == selectors.OK
    assert cards["fine"].last_run.commit_sha == "a" * 40 and cards["fine"].last_run.by == "root"
    assert cards["broken"].state == selectors.FAILING and cards["broken"].failed_since_success == 2
    assert cards["broken"].live.state == selectors.UNKNOWN
    assert cards["waiting"].state == selectors.ATTENTION and cards["waiting"].last_run is None
    assert cards["waiting"].live.problem_count == 2
    assert cards["warned"].audit.non_compliant == 2 and cards["warned"].state == selectors.FAILING
    assert cards["fine"].audit.compliant == 1
    assert cards["fine"].monthly_cost_usd is not None
    assert selectors.summary(list(cards.values())) == "4 environments: 2 failing, 1 needs attention."


def test_index_shows_one_card_per_environment(seeded, admin_client):
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert "4 environments: 2 failing, 1 needs attention." in html
    fine = _card(html, "fine")
    assert fine.startswith("ok ") and "a" * 12 in fine and "by root" in fine and "Up to date" in fine
    assert "Compliant" in fine and "healthy" in fine and "estimated" in fine
    assert "Render and commit" not in fine  # nothing to render
    broken = _card(html, "broken")
    assert broken.startswith("failing ") and "2 since the last success" in broken and "unreachable" in broken
    waiting = _card(html, "waiting")
    assert waiting.startswith("attention ") and "Never rendered" in waiting and "Needs render" in waiting
    assert "Render and commit" in waiting and "2 problems" in waiting
    warned = _card(html, "warned")
    assert "2 non-compliant" in warned and '<span class="badge attention">3</span>' in warned
    # Each card links to the detail pages.
    env = seeded["warned"]
    for url in (reverse("admin:deployments_environment_change", args=[env.pk]),
                reverse("admin:costs_report", args=[env.pk]), reverse("admin:live_environment", args=[env.pk]),
                reverse("admin:snapshots_auditreport_change", args=[seeded["report"].pk])):
        assert url in warned


def test_index_without_environments(admin_client):
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert "No environments yet." in html


def test_home_redirects_to_the_dashboard_and_view_site_points_there(client, admin_client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == reverse("admin:index")
    html = admin_client.get(reverse("admin:deployments_environment_changelist")).content.decode()
    assert 'href="/">View site' in html


def test_labels_and_neutral_render_state(admin_client):
    env = environment_factory(name="labels")
    Environment.objects.filter(pk=env.pk).update(needs_render=False)
    html = admin_client.get(reverse("admin:deployments_environment_change", args=[env.pk])).content.decode()
    assert "TLS mode" in html and "GitOps tool" in html and "AWS account ID" in html
    assert "Tls mode" not in html and "Gitops tool" not in html
    assert "icon-no.svg" not in html  # "needs render: no" is not a red cross
    assert ">Render and commit<" not in html  # nothing to render
    changelist = admin_client.get(reverse("admin:deployments_environment_changelist")).content.decode()
    assert "icon-no.svg" not in changelist and "icon-yes.svg" not in changelist.split("id=\"result_list\"")[1]
    Environment.objects.filter(pk=env.pk).update(needs_render=True)
    html = admin_client.get(reverse("admin:deployments_environment_change", args=[env.pk])).content.decode()
    assert ">Render and commit<" in html and "Needs render" in html


@override_settings(GITOPS_BROWSE_URL="https://git.example.com/org/gitops/tree/main/{path}")
def test_project_page_links_and_hibernated_hosts(admin_client):
    # EKS: a hibernated project's folder is pruned (on Minikube it stays, stopped at zero replicas).
    env = eks_environment_factory(name="links", app_domain="links.example.com")
    project = project_factory(env, slug="shop", containers=("frontend",))
    html = admin_client.get(reverse("admin:projects_project_change", args=[project.pk])).content.decode()
    folder = f"environments/links/projects/proj-{project.pk}/"
    assert f'href="https://git.example.com/org/gitops/tree/main/{folder}"' in html
    assert "shop-frontend.links.example.com" in html
    assert f"environments__id__exact={env.pk}" in html
    assert reverse("admin:snapshots_snapshot_timeline", args=[project.pk]) in html
    assert reverse("admin:live_project", args=[project.pk]) in html
    Project.objects.filter(pk=project.pk).update(state=Project.State.HIBERNATED)
    html = admin_client.get(reverse("admin:projects_project_change", args=[project.pk])).content.decode()
    assert "shop-frontend.links.example.com" not in html and "none while hibernated" in html
    assert "git.example.com" not in html
    changelist = admin_client.get(reverse("admin:projects_project_changelist")).content.decode()
    assert "shop-frontend.links.example.com" not in changelist


DIFF = "".join(
    f"diff --git a/environments/e/f{i}.yaml b/environments/e/f{i}.yaml\nnew file mode 100644\n--- /dev/null\n"
    f"+++ b/environments/e/f{i}.yaml\n@@ -0,0 +1 @@\n+kind: <ConfigMap>\n" for i in range(70))


def test_diff_file_list_links_to_each_file():
    assert diff_paths(DIFF) == [f"environments/e/f{i}.yaml" for i in range(70)]
    listing, body = str(diff_file_list(DIFF)), str(diff_html(DIFF))
    assert "70 files changed" in listing and listing.count("<li>") == 70
    assert 'href="#diff-file-69"' in listing and 'id="diff-file-69"' in body
    assert "&lt;ConfigMap&gt;" in body and "<ConfigMap>" not in body
    assert diff_file_list(DIFF.split("diff --git")[1]) == ""  # one file: no list


def test_run_page_lists_files_above_a_long_diff(admin_client):
    env = environment_factory(name="difflist")
    run = _run(env, JobRun.Status.SUCCEEDED, sha="d" * 40)
    RenderRun.objects.filter(pk=run.pk).update(diff=DIFF)
    html = admin_client.get(reverse("admin:deployments_renderrun_change", args=[run.pk])).content.decode()
    assert html.index("70 files changed") < html.index('id="diff-file-0"')
    assert '<div class="form-row field-error_block' not in html  # no Error section on success
    assert "icon-no.svg" not in html and "Dry run" in html  # neutral words, not red crosses


def test_cached_estimate_follows_a_change_of_a_project_and_is_reused_otherwise(admin_client):
    from django.core.cache import cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from projects import services

    cache.clear()
    environment = eks_environment_factory(name="costly")
    project = project_factory(environment)

    def estimate():
        with CaptureQueriesContext(connection) as ctx:
            card = next(card for card in selectors.environment_cards() if card.name == "costly")
        return card.monthly_cost_usd, len(ctx)

    first, computed = estimate()
    again, cached = estimate()
    assert again == first and cached < computed  # the second card reads the cached estimate

    project.volume_size = "500Gi"  # a bigger volume costs more; the environment row itself is unchanged
    services.project_save(project=project, user=admin_client.user)
    changed, recomputed = estimate()
    assert changed > first and recomputed > cached  # recomputed, not the cached figure


def test_runs_of_all_environments_and_dry_runs_count_as_before_and_queries_do_not_grow(admin_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    S = JobRun.Status
    never = environment_factory(name="never")  # never succeeded: every failed run counts
    _run(never, S.FAILED, minutes_ago=50)
    _run(never, S.FAILED, minutes_ago=40)
    mixed = environment_factory(name="mixed")
    _run(mixed, S.FAILED, minutes_ago=45)  # before its success: not counted
    _run(mixed, S.NO_CHANGE, minutes_ago=35)
    everywhere = RenderRun.objects.create(status=S.FAILED, progress=100)  # a run of all environments
    RenderRun.objects.filter(pk=everywhere.pk).update(created_at=timezone.now() - timezone.timedelta(minutes=30))
    dry = _run(mixed, S.FAILED, minutes_ago=5)
    RenderRun.objects.filter(pk=dry.pk).update(dry_run=True)  # a preview never counts
    both = _run(mixed, S.WARNINGS, sha="d" * 40, minutes_ago=20)
    both.environments.add(never)  # newest run of both environments, one row each

    def cards():
        with CaptureQueriesContext(connection) as ctx:
            found = {card.name: card for card in selectors.environment_cards()}
        return found, len(ctx)

    cards()  # computes and caches each environment's cost estimate
    found, queries = cards()
    assert found["never"].last_run.pk == both.pk and found["mixed"].last_run.pk == both.pk
    assert found["never"].failed_since_success == 0 and found["mixed"].failed_since_success == 0
    RenderRun.objects.filter(pk=both.pk).delete()
    found, _ = cards()
    assert found["never"].last_run.pk == everywhere.pk and found["never"].failed_since_success == 3
    assert found["mixed"].last_run.pk == everywhere.pk and found["mixed"].failed_since_success == 1
    quiet = environment_factory(name="quiet")
    Environment.objects.filter(pk=quiet.pk).update(needs_render=False)
    for name in ("more-1", "more-2", "more-3"):
        _run(environment_factory(name=name), S.SUCCEEDED)
    cards()
    found, more_queries = cards()
    assert found["quiet"].last_run.pk == everywhere.pk and found["quiet"].failed_since_success == 1
    assert found["more-1"].failed_since_success == 0 and found["more-1"].last_run.status == S.SUCCEEDED
    assert more_queries == queries  # six environments read like two (estimates cached)
