"""The admin around render runs: actions, preview pages, the read-only run pages and auto-render on saves."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from deployments import runs, services, tasks
from deployments.models import Environment, NodeGroup, RenderRun, Secret
from projects.models import Container, Project
from tests.deployments.runfixtures import demo_load_complete, queued_run
from tests.factories import environment_factory, project_factory

pytestmark = pytest.mark.django_db

MARKER = "MARKER-4b7d0c11-not-on-any-page"


@pytest.fixture
def root(db):
    return get_user_model().objects.create_superuser("root", "root@example.com", "a-long-test-password")


@pytest.fixture
def admin_client(client, root):
    client.force_login(root)
    return client


@pytest.fixture
def demo():
    return demo_load_complete()


def _messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]] if response.context else []


def _environment_post_data(client, environment) -> dict:
    """The change form's current values, inlines included, as the browser would post them back."""
    response = client.get(reverse("admin:deployments_environment_change", args=[environment.pk]))
    form = response.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        if value is None:
            continue
        if isinstance(value, bool):
            if value:
                data[name] = "on"
            continue
        data[name] = value
    for formset in response.context["inline_admin_formsets"]:
        fs = formset.formset
        data[f"{fs.prefix}-TOTAL_FORMS"] = str(len(fs.forms))
        data[f"{fs.prefix}-INITIAL_FORMS"] = str(fs.initial_form_count())
        data[f"{fs.prefix}-MIN_NUM_FORMS"] = "0"
        data[f"{fs.prefix}-MAX_NUM_FORMS"] = "1000"
        for inline_form in fs.forms:
            for name, field in inline_form.fields.items():
                value = inline_form.initial.get(name, field.initial)
                if name == fs.fk.name:
                    value = environment.pk
                elif name == inline_form._meta.model._meta.pk.name:
                    value = inline_form.instance.pk
                if value is None or name in ("value", "generate", "DELETE"):
                    continue
                key = inline_form.add_prefix(name)
                if isinstance(value, bool):
                    if value:
                        data[key] = "on"
                    continue
                data[key] = getattr(value, "pk", value)
    return data


# --- actions and run pages ----------------------------------------------------------------------


def test_render_and_commit_action_queues_one_run_and_links_to_it(admin_client, gitops, gitops_queue, demo, root,
                                                                  django_capture_on_commit_callbacks):
    ids = [demo["minikube"].pk, demo["aws-production"].pk]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:deployments_environment_changelist"),
                                     {"action": "render_and_commit", "_selected_action": ids}, follow=True)
    assert response.status_code == 200
    run = RenderRun.objects.get()
    assert run.status == RenderRun.Status.QUEUED and run.triggered_by == root
    assert set(run.environments.values_list("pk", flat=True)) == set(ids)
    assert gitops_queue.job_ids == [runs.render_run_job_id(run.pk)]
    run_url = reverse("admin:deployments_renderrun_change", args=[run.pk])
    assert any(run_url in message and "aws-production, minikube" in message for message in _messages(response))

    # The worker's job runs it; the run page shows the log, the committed diff and the commit.
    assert tasks.render_run_job(run.pk) == RenderRun.Status.SUCCEEDED
    run.refresh_from_db()
    page = admin_client.get(run_url).content.decode()
    assert run.commit_sha in page
    assert '<pre id="run-log" class="run-log">' in page and "Reading the snapshot." in page
    assert '<span class="diff-add">+apiVersion' in page
    assert 'data-finished="1"' in page


def test_run_pages_are_read_only(admin_client, gitops):
    env = environment_factory()
    run = queued_run(environment_ids=[env.pk], user=None, reason="read only")
    change_url = reverse("admin:deployments_renderrun_change", args=[run.pk])
    assert admin_client.get(reverse("admin:deployments_renderrun_add")).status_code == 403
    assert admin_client.get(reverse("admin:deployments_renderrun_delete", args=[run.pk])).status_code == 403
    assert admin_client.post(reverse("admin:deployments_renderrun_delete", args=[run.pk]),
                             {"post": "yes"}).status_code == 403
    page = admin_client.get(change_url)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    admin_client.post(change_url, {"reason": "rewritten", "status": "succeeded"})
    run.refresh_from_db()
    assert run.reason == "read only" and run.status == RenderRun.Status.QUEUED
    listing = admin_client.get(reverse("admin:deployments_renderrun_changelist"))
    assert listing.status_code == 200
    assert "delete_selected" not in listing.content.decode()


def test_run_list_shows_status_progress_and_short_sha(admin_client, gitops):
    env = environment_factory()
    done = runs.render_run_execute(run_id=queued_run(environment_ids=[env.pk], user=None,
                                                                 reason="first").pk)
    queued = queued_run(environment_ids=None, user=None, reason="<script>alert(1)</script>")
    page = admin_client.get(reverse("admin:deployments_renderrun_changelist")).content.decode()
    assert done.commit_sha[:12] in page and done.commit_sha not in page
    assert f'<progress value="{queued.progress}" max="100">' in page
    assert "all environments" in page and env.name in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    filtered = admin_client.get(reverse("admin:deployments_renderrun_changelist") + "?status__exact=queued")
    assert filtered.context["cl"].result_count == 1


def test_progress_endpoint_reports_status_and_log_tail(admin_client, client, gitops):
    env = environment_factory()
    run = queued_run(environment_ids=[env.pk], user=None, reason="progress")
    url = reverse("admin:deployments_renderrun_progress", args=[run.pk])
    data = admin_client.get(url).json()
    assert data == {"id": run.pk, "status": "queued", "status_display": "Queued", "progress": 0,
                    "finished": False, "commit_sha": "", "error_file": "", "log_tail": "",
                    "error_kind": "", "error_rule": "", "warning_count": 0}
    page = admin_client.get(reverse("admin:deployments_renderrun_change", args=[run.pk])).content.decode()
    assert f'data-url="{url}"' in page and 'data-finished="0"' in page and "fetch(box.dataset.url" in page
    assert '<noscript><meta http-equiv="refresh"' in page  # follows the run without JavaScript too

    runs.render_run_execute(run_id=run.pk)
    data = admin_client.get(url).json()
    assert data["status"] == "succeeded" and data["finished"] and data["progress"] == 100
    assert data["commit_sha"] and "Committed" in data["log_tail"]
    client.logout()
    assert admin_client.get(url).status_code == 302  # logged out: sent to the login page


def test_progress_endpoint_shows_a_dead_run_failed_once_the_scheduled_recovery_ran(admin_client, gitops):
    env = environment_factory()
    run = queued_run(environment_ids=[env.pk], user=None, reason="dead")
    RenderRun.objects.filter(pk=run.pk).update(status=RenderRun.Status.RUNNING, progress=40)
    url = reverse("admin:deployments_renderrun_progress", args=[run.pk])
    assert admin_client.get(url).json()["status"] == "running"  # loading a page repairs nothing by itself
    tasks.render_runs_recover_job()  # what the scheduler runs every RENDER_RECOVERY_INTERVAL seconds
    data = admin_client.get(url).json()
    assert data["status"] == "failed" and data["finished"] and data["error_kind"] == "orphaned"


def test_a_failed_run_page_shows_file_rule_and_error(admin_client, gitops, kubectl):
    env = environment_factory()
    kubectl.fail()
    run = runs.render_run_execute(run_id=queued_run(environment_ids=[env.pk], user=None,
                                                                reason="fails").pk)
    assert run.status == RenderRun.Status.FAILED
    page = admin_client.get(reverse("admin:deployments_renderrun_change", args=[run.pk])).content.decode()
    assert run.error_file in page and "kustomize-build" in page and "simulated kustomize failure" in page
    assert '<pre class="run-error">' in page


# --- preview ----------------------------------------------------------------------------------------


def test_preview_page_of_a_never_rendered_environment_commits_nothing(admin_client, gitops, demo):
    minikube = demo["minikube"]
    change_page = admin_client.get(reverse("admin:deployments_environment_change", args=[minikube.pk]))
    preview_url = reverse("admin:deployments_environment_preview", args=[minikube.pk])
    assert preview_url in change_page.content.decode()

    response = admin_client.get(preview_url)
    assert response.status_code == 200
    page = response.content.decode()
    preview = response.context["preview"]
    assert preview.added and not preview.changed and not preview.deleted
    assert f"{len(preview.added)} added, 0 changed, 0 deleted" in page
    assert '<span class="diff-add">+apiVersion' in page
    assert reverse("admin:deployments_environment_render", args=[minikube.pk]) in page
    assert gitops.head() is None and not RenderRun.objects.exists()


def test_preview_of_a_large_tree_diffs_one_page_of_files_and_lists_them_all(admin_client, gitops, demo,
                                                                             monkeypatch):
    from deployments import admin as deployments_admin

    monkeypatch.setattr(deployments_admin, "PREVIEW_PAGE_FILES", 3)
    minikube = demo["minikube"]
    url = reverse("admin:deployments_environment_preview", args=[minikube.pk])
    first = admin_client.get(url)
    preview = first.context["preview"]
    paths = preview.paths
    assert len(paths) > 6 and preview.diff_paths == paths[:3]
    diffed = [line[len("diff --git a/"):].split(" b/")[0] for line in preview.diff.splitlines()
              if line.startswith("diff --git ")]
    assert diffed == paths[:3]
    page = first.content.decode()
    assert all(path in page for path in paths)  # the file list is complete
    assert f"Diff of files 1–3 of {len(paths)}" in page and 'page=2"' in page
    second = admin_client.get(url + "?page=2").context["preview"]
    assert second.diff_paths == paths[3:6] and f"diff --git a/{paths[3]} " in second.diff
    assert admin_client.get(url + "?page=bogus").status_code == 200


def test_preview_action_shows_several_environments(admin_client, gitops, demo):
    ids = sorted(env.pk for env in demo.values())
    response = admin_client.post(reverse("admin:deployments_environment_changelist"),
                                 {"action": "preview_diff", "_selected_action": ids})
    assert response.status_code == 302
    page = admin_client.get(response["Location"])
    assert page.status_code == 200
    added = page.context["preview"].added
    assert any(p.startswith("environments/minikube/") for p in added)
    assert any(p.startswith("environments/aws-production/") for p in added)
    assert admin_client.get(reverse("admin:deployments_environment_preview_many") + "?ids=999999").status_code == 404


def test_preview_after_a_render_shows_only_the_change(admin_client, gitops, demo):
    minikube = demo["minikube"]
    runs.render_run_execute(run_id=queued_run(environment_ids=[minikube.pk], user=None, reason="").pk)
    minikube.image_tag = "v9.9.9"
    minikube.save()
    response = admin_client.get(reverse("admin:deployments_environment_preview", args=[minikube.pk]))
    preview = response.context["preview"]
    assert not preview.added and preview.changed and "v9.9.9" in preview.diff


def test_render_button_queues_a_run_and_opens_its_page(admin_client, gitops, gitops_queue, demo,
                                                       django_capture_on_commit_callbacks):
    minikube = demo["minikube"]
    url = reverse("admin:deployments_environment_render", args=[minikube.pk])
    assert admin_client.get(url).status_code == 405
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url)
    run = RenderRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:deployments_renderrun_change", args=[run.pk])
    assert list(run.environments.all()) == [minikube]
    assert gitops_queue.job_ids == [runs.render_run_job_id(run.pk)]


def test_environment_page_lists_its_runs_with_commits(admin_client, gitops, demo):
    minikube = demo["minikube"]
    mine = runs.render_run_execute(run_id=queued_run(environment_ids=[minikube.pk], user=None,
                                                                 reason="shipped it").pk)
    other = queued_run(environment_ids=[demo["aws-production"].pk], user=None, reason="not mine")
    page = admin_client.get(reverse("admin:deployments_environment_change", args=[minikube.pk])).content.decode()
    assert mine.commit_sha[:12] in page and "shipped it" in page
    assert reverse("admin:deployments_renderrun_change", args=[mine.pk]) in page
    assert reverse("admin:deployments_renderrun_change", args=[other.pk]) not in page


# --- auto-render on admin saves ----------------------------------------------------------------------


def test_a_burst_of_admin_saves_gives_one_run_and_one_commit(admin_client, gitops, gitops_queue, demo,
                                                             django_capture_on_commit_callbacks):
    minikube = demo["minikube"]
    change_url = reverse("admin:deployments_environment_change", args=[minikube.pk])
    with django_capture_on_commit_callbacks(execute=True):
        for tag in ("v1", "v2", "v3"):
            data = _environment_post_data(admin_client, minikube)
            data["image_tag"] = tag
            response = admin_client.post(change_url, data)
            assert response.status_code == 302, response.context["adminform"].form.errors
        response = admin_client.post(reverse("admin:deployments_nodegroup_add"), {
            "environment": minikube.pk, "name": "extra", "hosts": "platform", "capacity_type": "ON_DEMAND",
            "instance_types": "t3.large", "min_size": 1, "desired_size": 1, "max_size": 2, "disk_size_gb": 50,
            "labels": "", "taints": "",
        })
        assert response.status_code == 302
        project = Project.objects.get(slug="landing-page")
        project_url = reverse("admin:projects_project_change", args=[project.pk])
        form = admin_client.get(project_url).context["adminform"].form
        containers = list(project.containers.all())
        data = {name: form.initial.get(name) for name in ("name", "slug", "environment", "owner", "state",
                                                           "volume_size", "restore_snapshot_id")}
        data["restore_snapshot_id"] = data["restore_snapshot_id"] or ""
        data.update({"containers-TOTAL_FORMS": len(containers) + 1, "containers-INITIAL_FORMS": len(containers),
                     "containers-MIN_NUM_FORMS": 0, "containers-MAX_NUM_FORMS": 1000})
        fields = ["directory", "role", "image", "port", "cpu_request", "cpu_limit", "memory_request",
                  "memory_limit", "data_volume_size", "start_command", "env_vars", "probe", "probe_path",
                  "startup_timeout_seconds"]
        for index, container in enumerate(containers):
            data[f"containers-{index}-id"] = container.pk
            data[f"containers-{index}-project"] = project.pk
            data.update({f"containers-{index}-{f}": getattr(container, f) for f in fields})
        new = len(containers)
        data.update({f"containers-{new}-{f}": v for f, v in dict(
            directory="api", role="backend", image="tesslate-devserver:latest", port=8000, cpu_request="100m",
            cpu_limit="1", memory_request="256Mi", memory_limit="1Gi", data_volume_size="1Gi", probe_path="/",
            startup_timeout_seconds=600).items()})
        data[f"containers-{new}-project"] = project.pk
        response = admin_client.post(project_url, data)
        assert response.status_code == 302, response.context and response.context["errors"]

    run = RenderRun.objects.get()  # five saves, one run
    assert run.status == RenderRun.Status.QUEUED and list(run.environments.all()) == [minikube]
    assert "Changed environment minikube" in run.reason and "Added node group minikube/extra" in run.reason
    assert "Changed project landing-page" in run.reason
    assert gitops_queue.job_ids == [runs.render_run_job_id(run.pk)]
    assert tasks.render_run_job(run.pk) == RenderRun.Status.SUCCEEDED
    assert len(gitops.commits()) == 1
    tree = gitops.files()
    assert any(f"proj-{project.pk}/" in f and "dev-api" in f for f in tree), "the inline's new container shipped"
    run.refresh_from_db()
    assert "v3" in run.diff
    minikube.refresh_from_db()
    assert minikube.needs_render is False


def test_saving_without_changes_requests_no_render(admin_client, gitops, demo):
    minikube = demo["minikube"]
    response = admin_client.post(reverse("admin:deployments_environment_change", args=[minikube.pk]),
                                 _environment_post_data(admin_client, minikube))
    assert response.status_code == 302
    assert not RenderRun.objects.exists()


def test_moving_a_project_renders_both_environments(admin_client, gitops, demo):
    project = project_factory(demo["minikube"], containers=())
    target = environment_factory()
    data = {"name": project.name, "slug": project.slug, "environment": target.pk, "owner": project.owner,
            "state": project.state, "volume_size": project.volume_size, "restore_snapshot_id": "",
            "containers-TOTAL_FORMS": 0, "containers-INITIAL_FORMS": 0, "containers-MIN_NUM_FORMS": 0,
            "containers-MAX_NUM_FORMS": 1000}
    response = admin_client.post(reverse("admin:projects_project_change", args=[project.pk]), data)
    assert response.status_code == 302
    run = RenderRun.objects.get()
    assert set(run.environments.values_list("name", flat=True)) == {"minikube", target.name}


def test_deletes_request_renders(admin_client, gitops, demo):
    project = Project.objects.get(slug="landing-page")
    response = admin_client.post(reverse("admin:projects_project_delete", args=[project.pk]), {"post": "yes"})
    assert response.status_code == 302
    run = RenderRun.objects.get()
    assert list(run.environments.all()) == [demo["minikube"]] and "Deleted project landing-page" in run.reason
    RenderRun.objects.all().update(status=RenderRun.Status.SUCCEEDED)

    doomed = environment_factory()
    response = admin_client.post(reverse("admin:deployments_environment_delete", args=[doomed.pk]), {"post": "yes"})
    assert response.status_code == 302
    run = RenderRun.objects.get(status=RenderRun.Status.QUEUED)
    assert not run.environments.exists()  # all environments: prunes the deleted one's folders
    assert f"Deleted environment {doomed.name}" in run.reason

    groups = NodeGroup.objects.filter(environment=demo["aws-production"])
    # (Unprotected here: a protected environment's removal waits for approval, see tests/governance.)
    Environment.objects.filter(pk=demo["aws-production"].pk).update(protected=False)
    response = admin_client.post(reverse("admin:deployments_nodegroup_changelist"), {
        "action": "delete_selected", "_selected_action": list(groups.values_list("pk", flat=True)), "post": "yes"})
    assert response.status_code == 302 and not groups.exists()
    # A confirmed removal's run (deletions allowed) never absorbs ordinary changes: they get their own run.
    latest = RenderRun.objects.filter(status=RenderRun.Status.QUEUED).order_by("-pk").first()
    assert "Deleted node groups" in latest.reason and not latest.allow_deletions


def test_auto_render_off_only_marks_dirty(admin_client, gitops, demo, settings):
    settings.GITOPS_AUTO_RENDER = False
    secret = Secret.objects.filter(environment=demo["minikube"]).first()
    Environment.objects.update(needs_render=False)
    response = admin_client.post(reverse("admin:deployments_secret_change", args=[secret.pk]), {
        "environment": secret.environment_id, "secret_name": secret.secret_name, "key": secret.key,
        "description": "new description", "value": "", })
    assert response.status_code == 302
    assert not RenderRun.objects.exists()
    assert Environment.objects.get(pk=secret.environment_id).needs_render is True


def test_secret_values_never_show_on_run_or_preview_pages(admin_client, gitops, demo):
    for number, secret in enumerate(Secret.objects.all()):
        services.secret_store_value(secret=secret, value=f"{MARKER}-{number}")
    ids = [env.pk for env in demo.values()]
    preview = admin_client.get(reverse("admin:deployments_environment_preview_many") + "?ids="
                               + ",".join(map(str, ids))).content.decode()
    run = runs.render_run_execute(run_id=queued_run(environment_ids=ids, user=None, reason="").pk)
    assert run.status == RenderRun.Status.SUCCEEDED, run.error
    pages = [preview,
             admin_client.get(reverse("admin:deployments_renderrun_change", args=[run.pk])).content.decode(),
             admin_client.get(reverse("admin:deployments_renderrun_changelist")).content.decode(),
             admin_client.get(reverse("admin:deployments_renderrun_progress", args=[run.pk])).content.decode()]
    for page in pages:
        assert MARKER not in page
    assert "ExternalSecret" in pages[1]


def test_container_counts_stay_constant_on_the_project_list(admin_client, demo):
    # The project list keeps its constant number of queries with the auto-render mixin in place.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(reverse("admin:projects_project_changelist")).status_code == 200
        return len(ctx)

    before = count()
    for _ in range(5):
        project_factory(demo["minikube"], containers=("frontend", "backend"))
    assert count() == before
    assert Container.objects.count() > 10
    assert re.search(r"\d+ projects", admin_client.get(reverse("admin:projects_project_changelist"))
                     .content.decode())
