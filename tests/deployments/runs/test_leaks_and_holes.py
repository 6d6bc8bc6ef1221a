"""No credential in manifests or error pages, the RQ dashboard for superusers only, 404 for malformed ids, and
the one explicit flow for renaming an environment (issue: the spine never deletes what it still renders)."""

import importlib

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.urls import clear_url_caches, reverse

from deployments import runs, services
from deployments.error_reports import SecretSafeExceptionReporterFilter
from deployments.models import Environment, RenderRun
from deployments.rendering import render_tree
from deployments.selectors import environments_snapshot
from tests.deployments.runfixtures import queued_run
from tests.factories import environment_factory, project_factory

pytestmark = pytest.mark.django_db
TOKEN = "ghp_TOKEN0123456789abcdef"


@pytest.fixture
def root(db):
    return get_user_model().objects.create_superuser("root", "root@example.com", "a-long-test-password")


@pytest.fixture
def staff(db):
    user = get_user_model().objects.create_user("staff", "staff@example.com", "a-long-test-password",
                                                is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["deployments", "projects"]))
    return user


def test_a_push_url_with_credentials_never_reaches_a_manifest(settings):
    environment_factory(gitops_tool=Environment.GitOpsTool.ARGOCD)
    environment_factory(gitops_tool=Environment.GitOpsTool.FLUX)
    for source in (f"https://ci-bot:{TOKEN}@git.example.com/platform/gitops.git",
                   f"https://{TOKEN}@git.example.com/platform/gitops.git"):
        settings.GITOPS_REMOTE_URL = source
        settings.GITOPS_SOURCE_URL = source  # what the default would be without GITOPS_SOURCE_URL
        tree = render_tree(environments_snapshot())
        text = b"".join(tree.values()).decode()
        assert TOKEN not in text and "ci-bot" not in text
        assert "https://git.example.com/platform/gitops.git" in text  # the repository, without the credential


def test_error_pages_censor_credentials_inside_url_settings(settings):
    settings.GITOPS_REMOTE_URL = f"https://ci-bot:{TOKEN}@git.example.com/gitops.git"
    settings.REDIS_URL = f"redis://:{TOKEN}@cache.internal:6379/0"
    reporter = SecretSafeExceptionReporterFilter()
    shown = repr(reporter.get_safe_settings())
    assert TOKEN not in shown and "git.example.com/gitops.git" in shown


def _reload_urls(settings, redis_url: str):
    import portal.urls

    settings.REDIS_URL = redis_url
    clear_url_caches()
    importlib.reload(portal.urls)
    clear_url_caches()


def test_the_rq_dashboard_is_for_superusers_and_absent_with_inline_jobs(client, settings, root, staff):
    working = settings.REDIS_URL
    try:
        _reload_urls(settings, working)
        client.force_login(staff)
        assert client.get("/admin/rq/").status_code == 403
        client.force_login(root)
        assert client.get("/admin/rq/").status_code == 200
        client.logout()
        assert client.get("/admin/rq/").status_code == 302  # to the login page

        _reload_urls(settings, "")
        client.force_login(root)
        assert client.get("/admin/rq/").status_code == 404
        assert client.get("/admin/django_rq/dashboard/").status_code == 404  # django-rq's own entry is off too
    finally:
        _reload_urls(settings, working)


def test_malformed_ids_answer_404_not_500(client, root, gitops):
    client.force_login(root)
    env = environment_factory()
    run = queued_run(environment_ids=[env.pk], user=None, reason="x")
    for url in ("/admin/deployments/environment/abc/render/", "/admin/deployments/environment/abc/preview/",
                "/admin/deployments/environment/abc/move/", "/admin/deployments/renderrun/abc/progress/",
                "/admin/deployments/renderrun/abc/change/", f"/admin/deployments/renderrun/{run.pk + 999}/progress/",
                "/admin/deployments/environment/99999999999999999999/move/"):
        response = client.post(url) if url.endswith("/render/") else client.get(url)
        assert response.status_code in (302, 404), (url, response.status_code)
        if response.status_code == 302:  # Django's own change view redirects unknown ids to the list
            assert response.url.startswith("/admin/")


def test_renaming_an_environment_is_refused_outside_the_move_flow(gitops):
    env = environment_factory(name="aws-production")
    project_factory(env)
    env.name = "aws-prod"
    with pytest.raises(ValidationError) as error:
        services.environment_save(environment=env)
    assert "Move or rename environment" in str(error.value) and "name" in error.value.message_dict
    env.refresh_from_db()
    env.gitops_tool = Environment.GitOpsTool.FLUX
    with pytest.raises(ValidationError) as error:
        services.environment_save(environment=env)
    assert "gitops_tool" in error.value.message_dict


def test_the_move_flow_removes_old_folders_in_the_commit_that_adds_the_new_ones(client, root, gitops,
                                                                               django_capture_on_commit_callbacks):
    env = environment_factory(name="aws-production")
    project = project_factory(env)
    first = runs.render_run_execute(run_id=queued_run(environment_ids=None, user=None, reason="first").pk)
    assert first.status == RenderRun.Status.SUCCEEDED, first.error
    client.force_login(root)
    url = reverse("admin:deployments_environment_move", args=[env.pk])
    page = client.get(url).content.decode()
    assert "environments/aws-production/" in page and "1 active project folder" in page

    wrong = client.post(url, {"name": "aws-prod", "gitops_tool": env.gitops_tool, "confirm": "nope"})
    assert wrong.status_code == 200 and "Type the environment" in wrong.content.decode()
    assert Environment.objects.get(pk=env.pk).name == "aws-production"

    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(url, {"name": "aws-prod", "gitops_tool": env.gitops_tool,
                                     "confirm": "aws-production"})
    assert response.status_code == 302
    run = RenderRun.objects.get(status=RenderRun.Status.QUEUED)
    assert run.allow_deletions and not run.environments.exists()  # all environments: prunes the old name
    run = runs.render_run_execute(run_id=run.pk)
    assert run.status == RenderRun.Status.SUCCEEDED, run.error
    files = gitops.files()
    assert not any(f.startswith(("environments/aws-production/", "clusters/aws-production/")) for f in files)
    assert any(f.startswith(f"environments/aws-prod/projects/proj-{project.pk}/") for f in files)
    assert len(gitops.commits()) == 2  # one commit removed the old folders and added the new ones


def test_a_render_request_with_a_garbage_id_list_is_a_clear_error(gitops):
    with pytest.raises(ValidationError, match="numbers"):
        runs.render_run_request(environment_ids=["abc"], user=None, reason="x")


