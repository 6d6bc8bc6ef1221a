"""deployments/runs/ (request, execute, recovery), deployments/tasks.py and the render_gitops command, on a real
bare remote with real kubectl."""

import io
import threading
import time
from datetime import timedelta

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.utils import timezone
from rq.job import Job, JobStatus

from deployments import runs, services, tasks
from deployments.locks import repository_lock_key
from deployments.models import Environment, RenderRun, Secret
from tests.deployments.runfixtures import demo_load_complete, git, queued_run, sealed_secrets_certificate
from tests.factories import environment_factory, node_group_factory, project_factory

MARKER = "MARKER-9f1c2e7a-never-in-git"


@pytest.fixture
def demo():
    return demo_load_complete()


@pytest.fixture
def alice(db):
    return get_user_model().objects.create_user("alice", "alice@example.com", "pw-alice-123456",
                                                first_name="Alice", last_name="Admin")


def _run(environments, user=None, reason="test render", **kwargs) -> RenderRun:
    ids = None if environments is None else [env.pk for env in environments]
    run = queued_run(environment_ids=ids, user=user, reason=reason)
    return runs.render_run_execute(run_id=run.pk, **kwargs)


def _trailers(message: str) -> dict[str, str]:
    lines = [line for line in message.strip().splitlines() if ": " in line]
    return dict(line.split(": ", 1) for line in lines)


# --- the run service ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_run_commits_the_environment_with_trailers_author_and_progress(gitops, demo, alice):
    minikube = demo["minikube"]
    seen: list[tuple[int, str]] = []
    run = _run([minikube], user=alice, reason="First render of minikube", progress=lambda p, m: seen.append((p, m)))

    assert run.status == RenderRun.Status.SUCCEEDED, run.error
    assert run.commit_sha and run.commit_sha == gitops.head()
    assert run.progress == 100 and run.started_at and run.finished_at and run.finished_at >= run.started_at
    files = gitops.files()
    assert run.files_added == len([f for f in files if not f.startswith(".")]) or run.files_added == len(files)
    assert run.files_changed == 0 and run.files_deleted == 0
    assert any(f.startswith("environments/minikube/") for f in files)
    assert not any(f.startswith("environments/aws-production/") for f in files)
    assert "+apiVersion" in run.diff and "environments/minikube/" in run.diff

    message = gitops.message()
    assert message.startswith("Render minikube: First render of minikube")
    trailers = _trailers(message)
    assert trailers["Portal-Run"] == str(run.pk)
    assert trailers["Changed-By"] == "alice"
    assert trailers["Environments"] == "minikube"
    assert trailers["Reason"] == "First render of minikube"
    assert gitops.author() == "Alice Admin <alice@example.com>"

    # Progress went up step by step, and was saved as it went (the log holds the steps).
    percents = [p for p, _ in seen]
    assert percents == sorted(percents) and percents[-1] == 100 and len(set(percents)) > 3
    assert "Reading the snapshot." in run.log and f"Committed {run.commit_sha[:12]}" in run.log
    minikube.refresh_from_db()
    demo["aws-production"].refresh_from_db()
    assert minikube.needs_render is False
    assert demo["aws-production"].needs_render is True  # not rendered by this run


@pytest.mark.django_db
def test_second_run_without_changes_is_no_change_and_commits_nothing(gitops, demo):
    first = _run([demo["minikube"]])
    assert first.status == RenderRun.Status.SUCCEEDED, first.error
    commits = gitops.commits()

    second = _run([demo["minikube"]])
    assert second.status == RenderRun.Status.NO_CHANGE, second.error
    assert second.commit_sha == "" and second.diff == ""
    assert (second.files_added, second.files_changed, second.files_deleted) == (0, 0, 0)
    assert gitops.commits() == commits


@pytest.mark.django_db
def test_a_change_gives_a_commit_with_only_that_change(gitops, demo):
    minikube = demo["minikube"]
    _run([minikube])
    minikube.image_tag = "v2.0.1"
    minikube.save()
    run = _run([minikube], reason="New image tag")
    assert run.status == RenderRun.Status.SUCCEEDED, run.error
    assert run.files_added == 0 and run.files_changed >= 1
    assert "v2.0.1" in run.diff
    assert len(gitops.commits()) == 2


@pytest.mark.django_db
def test_author_falls_back_to_portal_invalid_and_system(gitops):
    env = environment_factory()
    bob = get_user_model().objects.create_user("bob", "", "pw-bob-1234567")
    run = _run([env], user=bob)
    assert run.status == RenderRun.Status.SUCCEEDED, run.error
    assert gitops.author() == "bob <bob@portal.invalid>"
    env.image_tag = "v3"
    env.save()
    run = _run([env], user=None, reason="")
    assert run.status == RenderRun.Status.SUCCEEDED, run.error
    trailers = _trailers(gitops.message())
    assert trailers["Changed-By"] == "system" and trailers["Portal-Run"] == str(run.pk)
    assert gitops.author().endswith("<system@portal.invalid>")


@pytest.mark.django_db
def test_validation_failure_fails_the_run_with_file_and_rule_and_commits_nothing(gitops, kubectl, demo):
    minikube = demo["minikube"]
    kubectl.fail()
    run = _run([minikube])

    assert run.status == RenderRun.Status.FAILED
    assert run.commit_sha == ""
    assert run.error_file.endswith(("kustomization.yaml", "kustomization.yml")), run.error_file
    assert "[kustomize-build]" in run.error and "simulated kustomize failure" in run.error
    assert "Validation failed" in run.log
    assert gitops.head() is None  # nothing reached the remote
    assert kubectl.calls() >= 1
    minikube.refresh_from_db()
    assert minikube.needs_render is True  # the flag taken at the start is given back

    kubectl.fail(False)
    again = _run([minikube])
    assert again.status == RenderRun.Status.SUCCEEDED, again.error
    assert gitops.head() == again.commit_sha


@pytest.mark.django_db
def test_a_change_made_while_the_run_runs_keeps_needs_render(gitops):
    env = environment_factory()
    changed = []

    def progress(percent, message):
        # Once the snapshot is taken, an admin changes the environment again (as a concurrent request would).
        if percent >= 10 and not changed:
            node_group_factory(env)
            runs.environments_mark_dirty(environment_ids=[env.pk])
            changed.append(True)

    run = _run([env], progress=progress)
    assert changed
    assert run.status == RenderRun.Status.SUCCEEDED, run.error
    env.refresh_from_db()
    assert env.needs_render is True, "a change after the snapshot must not be marked rendered"

    run = _run([env])
    env.refresh_from_db()
    assert run.status in (RenderRun.Status.SUCCEEDED, RenderRun.Status.NO_CHANGE) and env.needs_render is False


@pytest.mark.django_db
def test_secret_values_never_reach_the_run_or_git(gitops, demo, settings):
    minikube = demo["minikube"]
    minikube.sealed_secrets_certificate = sealed_secrets_certificate()
    minikube.full_clean()
    minikube.save()
    for number, secret in enumerate(Secret.objects.all()):
        services.secret_store_value(secret=secret, value=f"{MARKER}-{number}")

    run = _run([minikube, demo["aws-production"]])
    assert run.status == RenderRun.Status.SUCCEEDED, run.error
    assert Secret.objects.filter(environment=minikube, sealed_value="").count() == 0
    for text in (run.log, run.diff, run.error, run.reason, gitops.log_patch()):
        assert MARKER not in text
    assert "kind: SealedSecret" in run.diff and "encryptedData" in run.diff
    assert "kind: ExternalSecret" in run.diff
    assert "minikube: Sealed Secrets:" in run.log


@pytest.mark.django_db
def test_run_for_all_environments_prunes_a_deleted_environment(gitops):
    keep, doomed = environment_factory(), environment_factory()
    run = _run(None, reason="everything")
    assert run.status == RenderRun.Status.SUCCEEDED, run.error
    assert any(f.startswith(f"environments/{doomed.name}/") for f in gitops.files())
    assert _trailers(gitops.message())["Environments"].startswith("all (")

    doomed_name = doomed.name
    doomed.delete()
    run = _run(None, reason="environment deleted")
    assert run.status == RenderRun.Status.SUCCEEDED, run.error
    assert run.files_deleted > 0
    files = gitops.files()
    assert not any(f"/{doomed_name}/" in f"/{f}" for f in files)
    assert any(f.startswith(f"environments/{keep.name}/") for f in files)


@pytest.mark.django_db
def test_render_run_job_is_a_thin_wrapper(gitops):
    env = environment_factory()
    run = queued_run(environment_ids=[env.pk], user=None, reason="job")
    assert tasks.render_run_job(run.pk) == RenderRun.Status.SUCCEEDED
    # A second delivery of the same job changes nothing.
    assert tasks.render_run_job(run.pk) == RenderRun.Status.SUCCEEDED
    assert len(gitops.commits()) == 1


@pytest.mark.django_db
def test_create_refuses_unknown_or_empty_environment_lists():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        queued_run(environment_ids=[], user=None, reason="")
    with pytest.raises(ValidationError):
        queued_run(environment_ids=[987654], user=None, reason="")
    assert not RenderRun.objects.exists()


@pytest.mark.django_db
def test_environment_preview_of_a_never_rendered_environment(gitops):
    env = environment_factory()
    project_factory(env)
    preview = runs.environment_preview(environment_ids=[env.pk])
    assert preview.added and not preview.changed and not preview.deleted
    assert all(path in preview.diff for path in preview.added[:5])
    assert gitops.head() is None  # nothing committed or pushed
    assert not RenderRun.objects.exists()


# --- requests collapse into one run -------------------------------------------------------------


@pytest.mark.django_db
def test_a_burst_of_requests_gives_one_run_and_one_job(gitops, gitops_queue, django_capture_on_commit_callbacks,
                                                        alice):
    env, other = environment_factory(), environment_factory()
    with django_capture_on_commit_callbacks(execute=True):
        results = [runs.render_run_request(environment_ids=[env.pk], user=alice, reason=f"Changed thing {n}")
                   for n in range(5)]
    assert [created for _, created in results] == [True, False, False, False, False]
    run = results[0][0]
    assert {r.pk for r, _ in results} == {run.pk}
    run.refresh_from_db()
    assert "Changed thing 0" in run.reason and "Changed thing 4" in run.reason
    assert run.log.count("Request absorbed from alice") == 4
    assert gitops_queue.job_ids == [runs.render_run_job_id(run.pk)]

    with django_capture_on_commit_callbacks(execute=True):
        wider, created = runs.render_run_request(environment_ids=[env.pk, other.pk], user=None, reason="both")
        covered, created_again = runs.render_run_request(environment_ids=[other.pk], user=None, reason="other")
    assert created and wider.pk != run.pk
    assert not created_again and covered.pk == wider.pk  # {other} is covered by the queued {env, other} run

    # Once a run has started it no longer absorbs: a later change needs a run that reads a later snapshot.
    RenderRun.objects.filter(pk=run.pk).update(status=RenderRun.Status.RUNNING)
    with django_capture_on_commit_callbacks(execute=True):
        later, created = runs.render_run_request(environment_ids=[env.pk], user=None, reason="later")
    assert later.pk == wider.pk and not created  # the queued {env, other} run covers env too
    RenderRun.objects.filter(pk=wider.pk).update(status=RenderRun.Status.SUCCEEDED)
    with django_capture_on_commit_callbacks(execute=True):
        newest, created = runs.render_run_request(environment_ids=[env.pk], user=None, reason="newest")
    assert created and newest.pk not in (run.pk, wider.pk)
    assert sorted(gitops_queue.job_ids) == sorted(runs.render_run_job_id(pk) for pk in (run.pk, wider.pk, newest.pk))
    env.refresh_from_db()
    assert env.needs_render is True


@pytest.mark.django_db
def test_auto_render_off_marks_dirty_without_a_run(gitops, settings):
    settings.GITOPS_AUTO_RENDER = False
    env = environment_factory()
    Environment.objects.filter(pk=env.pk).update(needs_render=False)
    assert runs.render_auto_request(environment_ids=[env.pk], user=None, reason="x") is None
    env.refresh_from_db()
    assert env.needs_render is True and not RenderRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_from_many_threads_give_one_run(gitops, gitops_queue):
    env = environment_factory()
    barrier = threading.Barrier(6)
    errors = []

    def request(number):
        try:
            barrier.wait(timeout=10)
            runs.render_run_request(environment_ids=[env.pk], user=None, reason=f"save {number}")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=request, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert RenderRun.objects.count() == 1
    run = RenderRun.objects.get()
    assert all(f"save {n}" in run.reason for n in range(6))
    assert gitops_queue.job_ids == [runs.render_run_job_id(run.pk)]


# --- dead workers and lost jobs -----------------------------------------------------------------


def _lock_from_another_session():
    """Hold the render lock from a separate PostgreSQL session, as a live worker elsewhere would."""
    params = connection.get_connection_params()
    session = psycopg.connect(**{k: v for k, v in params.items() if k in ("host", "port", "user", "password",
                                                                         "dbname")}, autocommit=True)
    session.execute("SELECT pg_advisory_lock(%s)", [repository_lock_key()])
    return session


@pytest.mark.django_db(transaction=True)
def test_a_running_run_without_a_live_worker_is_marked_failed(gitops):
    env = environment_factory()
    Environment.objects.filter(pk=env.pk).update(needs_render=False)
    run = queued_run(environment_ids=[env.pk], user=None, reason="x")
    RenderRun.objects.filter(pk=run.pk).update(status=RenderRun.Status.RUNNING, started_at=timezone.now())

    # While some session holds the render lock, the run may be alive: it is left alone.
    session = _lock_from_another_session()
    try:
        assert runs.render_runs_recover()["failed"] == []
        run.refresh_from_db()
        assert run.status == RenderRun.Status.RUNNING
    finally:
        session.close()  # the "worker" dies: PostgreSQL releases its lock with the connection

    # The server ends the dead session's backend (and its lock) a moment after the connection closes.
    deadline = time.monotonic() + 10
    while not (failed := runs.render_runs_recover()["failed"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert failed == [run.pk]
    run.refresh_from_db()
    env.refresh_from_db()
    assert run.status == RenderRun.Status.FAILED and run.error == runs.ORPHANED_MESSAGE and run.finished_at
    assert env.needs_render is True


@pytest.mark.django_db(transaction=True)
def test_a_run_waits_queued_for_the_render_lock_and_then_renders(gitops):
    env = environment_factory()
    run = queued_run(environment_ids=[env.pk], user=None, reason="waits")
    session = _lock_from_another_session()  # another run is rendering
    results = []
    thread = threading.Thread(target=lambda: (results.append(runs.render_run_execute(run_id=run.pk)),
                                              connections.close_all()))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while "Waiting for the render lock" not in RenderRun.objects.get(pk=run.pk).log:
            assert time.monotonic() < deadline, "the run never reported that it waits"
            time.sleep(0.05)
        # Still queued while it waits, so requests keep collapsing into it.
        assert RenderRun.objects.get(pk=run.pk).status == RenderRun.Status.QUEUED
        assert runs.render_run_request(environment_ids=[env.pk], user=None, reason="joined")[0].pk == run.pk
    finally:
        session.close()
        thread.join(timeout=120)
    run.refresh_from_db()
    assert results and run.status == RenderRun.Status.SUCCEEDED, run.error
    assert run.log.splitlines()[0].endswith("Waiting for the render lock: another run is in progress.")
    assert "joined" in run.reason and gitops.head() == run.commit_sha


@pytest.mark.django_db(transaction=True)
def test_a_run_that_cannot_get_the_render_lock_in_time_fails(gitops, settings):
    settings.GITOPS_RUN_LOCK_TIMEOUT = 0.5
    env = environment_factory()
    run = queued_run(environment_ids=[env.pk], user=None, reason="times out")
    session = _lock_from_another_session()
    try:
        run = runs.render_run_execute(run_id=run.pk)
    finally:
        session.close()
    assert run.status == RenderRun.Status.FAILED and "render lock" in run.error
    assert gitops.head() is None


@pytest.mark.django_db
def test_the_next_run_fails_orphans_before_it_renders(gitops):
    env = environment_factory()
    orphan = queued_run(environment_ids=[env.pk], user=None, reason="orphan")
    RenderRun.objects.filter(pk=orphan.pk).update(status=RenderRun.Status.RUNNING)
    run = _run([env])
    orphan.refresh_from_db()
    assert orphan.status == RenderRun.Status.FAILED
    assert run.status == RenderRun.Status.SUCCEEDED and f"#{orphan.pk}" in run.log


@pytest.mark.django_db
def test_a_queued_run_whose_job_was_lost_is_enqueued_again(gitops, gitops_queue,
                                                             django_capture_on_commit_callbacks):
    env = environment_factory()
    run = queued_run(environment_ids=[env.pk], user=None, reason="lost")
    RenderRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    fresh = queued_run(environment_ids=[env.pk], user=None, reason="fresh")  # still in its grace time
    with django_capture_on_commit_callbacks(execute=True):
        assert runs.render_runs_recover()["requeued"] == [run.pk]
    assert Job.exists(runs.render_run_job_id(run.pk), connection=gitops_queue.connection)
    assert not Job.exists(runs.render_run_job_id(fresh.pk), connection=gitops_queue.connection)
    assert runs.render_runs_recover()["requeued"] == []  # the job exists now


@pytest.mark.django_db
def test_redis_down_at_commit_time_leaves_a_queued_run_that_recovery_enqueues(
        gitops, gitops_queue, settings, caplog, django_capture_on_commit_callbacks):
    env = environment_factory()
    working = settings.RQ_QUEUES
    settings.RQ_QUEUES = {name: {**config, "URL": "redis://127.0.0.1:1/0"} for name, config in working.items()}
    with django_capture_on_commit_callbacks(execute=True):
        run, created = runs.render_run_request(environment_ids=[env.pk], user=None, reason="while Redis is down")
    assert created and RenderRun.objects.get(pk=run.pk).status == RenderRun.Status.QUEUED
    # Not raised: recorded on the run, which stays queued and retryable, and shown to whoever asked.
    assert "could not be reached" in RenderRun.objects.get(pk=run.pk).enqueue_error
    assert gitops_queue.job_ids == []

    settings.RQ_QUEUES = working
    RenderRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    with django_capture_on_commit_callbacks(execute=True):
        assert runs.render_runs_recover()["requeued"] == [run.pk]
    assert gitops_queue.job_ids == [runs.render_run_job_id(run.pk)]


@pytest.mark.django_db
def test_a_queued_run_whose_job_failed_is_enqueued_again_then_given_up(gitops, gitops_queue,
                                                                       django_capture_on_commit_callbacks):
    env = environment_factory()
    run = queued_run(environment_ids=[env.pk], user=None, reason="worker died while waiting")
    RenderRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    job_id = runs.render_run_job_id(run.pk)

    def fail_the_job():
        # What rq records for a job whose worker died (abandoned) or whose horse crashed before the run started.
        job = Job.fetch(job_id, connection=gitops_queue.connection)
        gitops_queue.remove(job)
        job.set_status(JobStatus.FAILED)

    with django_capture_on_commit_callbacks(execute=True):
        runs.render_run_enqueue(run=run)
    assert runs.render_runs_recover()["requeued"] == []  # its job is queued: alive
    for attempt in range(runs.REQUEUE_LIMIT):
        fail_the_job()
        with django_capture_on_commit_callbacks(execute=True):
            assert runs.render_runs_recover()["requeued"] == [run.pk], attempt
        assert Job.fetch(job_id, connection=gitops_queue.connection).get_status() == JobStatus.QUEUED
    fail_the_job()
    assert runs.render_runs_recover()["requeued"] == []
    run.refresh_from_db()
    assert run.status == RenderRun.Status.FAILED and "lost or failed" in run.error


# --- the management command ---------------------------------------------------------------------


@pytest.mark.django_db
def test_command_renders_and_commits_with_a_progress_bar(gitops, demo):
    out = io.StringIO()
    call_command("render_gitops", "--environment", "minikube", "--message", "From the shell", stdout=out)
    output = out.getvalue()
    run = RenderRun.objects.get()
    assert run.status == RenderRun.Status.SUCCEEDED and run.triggered_by is None and run.reason == "From the shell"
    assert f"committed {run.commit_sha}" in output
    assert "[" + "#" * 30 + "] 100%" in output and "%" in output.splitlines()[0]
    assert gitops.head() == run.commit_sha
    trailers = _trailers(gitops.message())
    assert trailers["Changed-By"] == "system" and trailers["Reason"] == "From the shell"

    out = io.StringIO()
    call_command("render_gitops", "--environment", "minikube", stdout=out)
    assert "no change" in out.getvalue()
    assert len(gitops.commits()) == 1


@pytest.mark.django_db
def test_command_dry_run_prints_the_diff_and_commits_nothing(gitops, demo):
    out = io.StringIO()
    call_command("render_gitops", "--environment", "minikube", "--dry-run", stdout=out)
    output = out.getvalue()
    run = RenderRun.objects.get()
    assert run.dry_run and run.status == RenderRun.Status.SUCCEEDED and run.commit_sha == ""
    assert "+++ b/environments/minikube/" in output or "environments/minikube/" in output
    assert "+apiVersion" in output and "nothing committed" in output
    assert gitops.head() is None
    demo["minikube"].refresh_from_db()
    assert demo["minikube"].needs_render is True  # a dry run takes no dirty flag


@pytest.mark.django_db
def test_command_full_rerenders_and_all_environments_by_default(gitops, demo):
    call_command("render_gitops", stdout=io.StringIO())
    run = RenderRun.objects.get()
    assert run.status == RenderRun.Status.SUCCEEDED, run.error
    files = gitops.files()
    assert any(f.startswith("environments/minikube/") for f in files)
    assert any(f.startswith("environments/aws-production/") for f in files)
    out = io.StringIO()
    call_command("render_gitops", "--full", stdout=out)
    assert "no change" in out.getvalue()  # a full re-render of the same data writes the same bytes


@pytest.mark.django_db
def test_command_failure_exits_non_zero_with_the_problems(gitops, kubectl, demo):
    kubectl.fail()
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="failed"):
        call_command("render_gitops", "--environment", "minikube", stdout=out, stderr=err)
    errors = err.getvalue()
    run = RenderRun.objects.get()
    assert run.status == RenderRun.Status.FAILED
    assert run.error_file in errors and "[kustomize-build]" in errors and "simulated kustomize failure" in errors
    assert gitops.head() is None


@pytest.mark.django_db
def test_command_refuses_an_unknown_environment(gitops, demo):
    with pytest.raises(CommandError, match="Unknown environment"):
        call_command("render_gitops", "--environment", "nope", stdout=io.StringIO())
    assert not RenderRun.objects.exists()


@pytest.mark.django_db
def test_a_large_diff_is_cut_at_a_file_boundary_by_the_git_writer(gitops, demo, settings):
    settings.GITOPS_DIFF_MAX_CHARS = 12000
    run = _run(None, reason="big first render")
    assert run.status == RenderRun.Status.SUCCEEDED
    assert run.diff.endswith("[diff truncated at 12000 characters]\n")
    kept = run.diff[: -len("[diff truncated at 12000 characters]\n")]
    assert len(kept) <= 12000 and kept.startswith("diff --git ")
    # The cut falls between files: the full diff continues with the next file's header right there.
    full = git(gitops.remote, "show", "--format=", "main", "--", ".", ":(exclude).tesslate-portal")
    assert full.startswith(kept) and full[len(kept):].startswith("diff --git ")
