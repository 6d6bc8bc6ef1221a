"""Runs that cannot get stuck (deployments/runs/request.py, recovery.py, jobs/queue.py, jobs/scheduler.py):
the enqueue result is what the user sees, dead runs never absorb, recovery is scheduled and converges."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from rq.job import Job

from deployments import runs, services, tasks
from deployments.models import Environment, RenderRun
from jobs import scheduler
from tests.deployments.runfixtures import queued_run
from tests.factories import environment_factory

pytestmark = pytest.mark.django_db

DOWN = "redis://127.0.0.1:1/0"


@pytest.fixture
def redis_down(settings):
    working = settings.RQ_QUEUES
    settings.RQ_QUEUES = {name: {**config, "URL": DOWN} for name, config in working.items()}
    yield lambda: setattr(settings, "RQ_QUEUES", working)
    settings.RQ_QUEUES = working


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "a-long-test-password")
    client.force_login(user)
    return client


@pytest.mark.django_db(transaction=True)
def test_a_save_while_redis_is_down_says_so_and_a_later_save_gets_a_live_run(
        admin_client, gitops, gitops_queue, redis_down):
    env = environment_factory()
    url = reverse("admin:deployments_nodegroup_add")
    data = {"environment": env.pk, "name": "extra", "hosts": "platform", "capacity_type": "ON_DEMAND",
            "instance_types": "t3.large", "min_size": 1, "desired_size": 1, "max_size": 2, "disk_size_gb": 50,
            "labels": "", "taints": ""}
    response = admin_client.post(url, data, follow=True)
    messages = [str(m) for m in response.context["messages"]]
    assert any("could not be queued" in m and "recovery job" in m for m in messages), messages
    dead = RenderRun.objects.get()
    assert dead.status == RenderRun.Status.QUEUED and "could not be reached" in dead.enqueue_error
    assert Environment.objects.get(pk=env.pk).needs_render is True  # the change is kept and marked

    # Redis is back: the next save is not swallowed by the dead run; it gets a run of its own that is queued.
    redis_down()
    response = admin_client.post(url, {**data, "name": "more"}, follow=True)
    live = RenderRun.objects.exclude(pk=dead.pk).get()
    assert live.enqueued_at is not None and not live.enqueue_error
    assert gitops_queue.job_ids == [runs.render_run_job_id(live.pk)]
    assert "could not be queued" not in " ".join(str(m) for m in response.context["messages"])

    # The scheduled recovery (no page involved) re-enqueues the dead one at once: Redis said no, no grace needed.
    assert tasks.render_runs_recover_job()["requeued"] == [dead.pk]
    assert Job.exists(runs.render_run_job_id(dead.pk), connection=gitops_queue.connection)
    dead.refresh_from_db()
    assert dead.requeue_count == 1 and dead.enqueue_error == ""


@pytest.mark.django_db(transaction=True)
def test_inline_jobs_never_leave_a_queued_run_that_absorbs_later_saves(gitops, settings):
    settings.REDIS_URL = ""
    env = environment_factory()
    leftover = queued_run(environment_ids=[env.pk], user=None, reason="left over by a dead process")
    RenderRun.objects.filter(pk=leftover.pk).update(created_at=timezone.now() - timedelta(minutes=10))
    request = runs.render_run_request(environment_ids=[env.pk], user=None, reason="a later save")
    assert request.created and request.run.pk != leftover.pk
    assert RenderRun.objects.get(pk=request.run.pk).status == RenderRun.Status.SUCCEEDED  # ran inline
    # Recovery fails the leftover (it can never run) instead of leaving it queued forever.
    result = runs.render_runs_recover()
    assert leftover.pk in result["failed"]
    assert RenderRun.objects.get(pk=leftover.pk).error_kind == RenderRun.ErrorKind.ENQUEUE


@pytest.mark.django_db(transaction=True)
def test_an_inline_job_that_crashes_before_recording_fails_its_run(gitops, settings, monkeypatch):
    settings.REDIS_URL = ""
    env = environment_factory()

    def crash(*, run_id, **kwargs):
        raise RuntimeError("crashed before the run started")

    monkeypatch.setattr(runs, "render_run_execute", crash)
    monkeypatch.setattr(tasks.runs, "render_run_execute", crash)
    request = runs.render_run_request(environment_ids=[env.pk], user=None, reason="crash")
    run = RenderRun.objects.get(pk=request.run.pk)
    assert request.ticket.handed_over is False and run.status == RenderRun.Status.FAILED
    assert "crashed" in run.error


def test_every_environment_left_dirty_by_a_killed_run_gets_a_new_run(gitops, gitops_queue,
                                                                      django_capture_on_commit_callbacks):
    envs = [environment_factory() for _ in range(3)]
    Environment.objects.update(needs_render=False)
    killed = queued_run(environment_ids=None, user=None, reason="render of everything, killed")
    RenderRun.objects.filter(pk=killed.pk).update(status=RenderRun.Status.RUNNING, started_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        result = tasks.render_runs_recover_job()
    assert result["failed"] == [killed.pk]
    assert set(Environment.objects.filter(needs_render=True).values_list("pk", flat=True)) >= {e.pk for e in envs}
    [retry] = result["requested"]
    retry_run = RenderRun.objects.get(pk=retry)
    assert set(retry_run.environments.values_list("pk", flat=True)) >= {e.pk for e in envs}
    assert gitops_queue.job_ids == [runs.render_run_job_id(retry)]
    # Once a run is pending, recovery requests nothing more.
    assert tasks.render_runs_recover_job()["requested"] == []


def test_an_environment_whose_last_run_failed_validation_is_not_retried_in_a_loop(gitops, gitops_queue):
    env = environment_factory()
    run = queued_run(environment_ids=[env.pk], user=None, reason="bad input")
    RenderRun.objects.filter(pk=run.pk).update(status=RenderRun.Status.FAILED,
                                               error_kind=RenderRun.ErrorKind.VALIDATION, finished_at=timezone.now())
    Environment.objects.filter(pk=env.pk).update(needs_render=True)
    assert runs.render_runs_recover()["requested"] == []


def test_the_scheduler_survives_a_redis_outage_and_enqueues_recovery_when_it_returns(gitops_queue, settings,
                                                                                    monkeypatch):
    settings.PORTAL_SCHEDULE = [{"name": "render-runs-recover", "func": "deployments.tasks.render_runs_recover_job",
                                 "queue": "gitops", "interval": 60}]
    settings.SCHEDULER_TICK = 0
    monkeypatch.setattr(scheduler, "OUTAGE_RETRY_SECONDS", 0.01)
    calls = {"n": 0}
    real = scheduler.build_scheduler

    def flaky_build(connection):
        built = real(connection)
        original = built.enqueue_jobs

        def enqueue_jobs():
            calls["n"] += 1
            if calls["n"] <= 3:  # Redis down for the first three ticks
                from redis.exceptions import ConnectionError as RedisConnectionError

                raise RedisConnectionError("down")
            return original()

        built.enqueue_jobs = enqueue_jobs
        return built

    monkeypatch.setattr(scheduler, "build_scheduler", flaky_build)
    scheduler.run_forever(max_loops=5)
    assert calls["n"] >= 4
    assert any(job.func_name == "deployments.tasks.render_runs_recover_job" for job in gitops_queue.jobs)


def test_a_secret_no_key_opens_is_named_in_the_run_and_marked_on_its_page(admin_client, gitops, settings):
    from tests.deployments.runfixtures import sealed_secrets_certificate

    env = environment_factory(sealed_secrets_certificate=sealed_secrets_certificate())
    secret = services.secret_set_value(
        secret=__import__("deployments.models", fromlist=["Secret"]).Secret(environment=env, key="API_TOKEN"),
        value="v-1")
    RenderRun.objects.all().delete()
    from deployments.models import Secret

    Secret.objects.filter(pk=secret.pk).update(ciphertext="gAAAAABnot-a-token-any-key-opens", sealed_for="")
    run = runs.render_run_execute(run_id=queued_run(environment_ids=[env.pk], user=None, reason="x").pk)
    assert run.status == RenderRun.Status.FAILED and "tesslate-app-secrets/API_TOKEN" in run.error
    assert "unreadable" in run.error and "Re-enter the value" in run.error

    page = admin_client.get(reverse("admin:deployments_secret_change", args=[secret.pk]))
    assert page.status_code == 200 and "unreadable — re-enter the value" in page.content.decode()
    response = admin_client.post(reverse("admin:deployments_secret_change", args=[secret.pk]), {
        "environment": env.pk, "secret_name": secret.secret_name, "key": secret.key, "description": "touched",
        "value": ""})
    assert response.status_code == 200  # the form comes back with a field error, not a 500
    assert "stored value is unreadable" in response.content.decode()
