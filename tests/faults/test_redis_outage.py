"""Redis stopped under a running portal (gunicorn + an RQ worker), then started again empty.

While it is down the admin keeps serving, a change that requests a render is saved and says its run could not be
queued, ``/ready`` answers 503 naming Redis and ``/health`` 200. Once it is back, ``/ready`` answers 200 and the
recovery (``manage.py recover_runs``, what the scheduler runs) enqueues the run again; the same worker process
renders it and the change reaches git. Function-level versions: tests/deployments/runs/test_stuck_runs.py,
tests/portal/test_health.py."""

import subprocess

import pytest
import requests

from tests.faults.stack import _wait

pytestmark = [pytest.mark.slow, pytest.mark.faults]

PAGES = ["/admin/", "/admin/deployments/environment/", "/admin/deployments/renderrun/", "/admin/projects/project/",
         "/admin/governance/changerequest/"]


def _run_state(stack, run_id):
    return stack.sql("SELECT status, enqueue_error, commit_sha, error FROM deployments_renderrun WHERE id = %s",
                     run_id)[0]


def test_redis_down_the_admin_serves_the_change_waits_and_ships_after_recovery(stack):
    stack.start_portal()
    stack.create_superuser()
    env_id = int(stack.shell("from tests.factories import environment_factory, project_factory; "
                             "env = environment_factory(name='redis-fault', image_tag='v1.0.0'); "
                             "project_factory(env, slug='shop'); print(env.pk)").strip())
    session = stack.login()
    assert requests.get(stack.url + "/ready", timeout=10).status_code == 200

    stack.redis.stop()
    ready = requests.get(stack.url + "/ready", timeout=10)
    assert ready.status_code == 503 and ready.json()["failed"] == ["redis"], ready.text
    assert requests.get(stack.url + "/health", timeout=10).status_code == 200
    for path in PAGES + [f"/admin/deployments/environment/{env_id}/change/"]:
        assert session.get(stack.url + path, timeout=60).status_code == 200, path

    # A change that requests a render: saved, and the page says the run could not be queued.
    response = stack.post_form(session, f"/admin/deployments/environment/{env_id}/change/",
                               {"image_tag": "v2.0.0", "_continue": "Save and continue editing"})
    assert response.status_code == 200, response.text[:2000]
    assert "could not be queued" in response.text and "The change is kept" in response.text
    assert stack.sql("SELECT image_tag, needs_render FROM deployments_environment WHERE id = %s",
                     env_id) == [("v2.0.0", True)]
    (run_id,) = stack.sql("SELECT id FROM deployments_renderrun ORDER BY id DESC LIMIT 1")[0]
    status, enqueue_error, commit_sha, _ = _run_state(stack, run_id)
    assert status == "queued" and enqueue_error and not commit_sha
    page = session.get(stack.url + f"/admin/deployments/renderrun/{run_id}/change/", timeout=60)
    assert page.status_code == 200 and "Not queued yet" in page.text and "run-error" in page.text

    # Redis back (empty): ready again; the recovery enqueues the run; the worker that lived through it renders it.
    stack.redis.start()
    _wait(lambda: requests.get(stack.url + "/ready", timeout=10).status_code == 200, "/ready to answer 200")
    output = stack.manage("recover_runs")
    assert f"enqueued again: [{run_id}]" in output, output
    _wait(lambda: _run_state(stack, run_id)[0] not in ("queued", "running"), f"run {run_id} to finish",
          timeout=240, every=0.5)
    status, enqueue_error, commit_sha, error = _run_state(stack, run_id)
    assert status in ("succeeded", "warnings"), (error, stack.log("worker")[-3000:])
    assert stack.worker.poll() is None, "the worker exited while Redis was down"
    assert not enqueue_error and len(commit_sha) == 40
    head = subprocess.run(["git", "-C", str(stack.repo_dir), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert head == commit_sha
    tree = subprocess.run(["git", "-C", str(stack.repo_dir), "grep", "-l", "v2.0.0", head], capture_output=True,
                          text=True).stdout
    assert "environments/redis-fault/" in tree  # nothing lost: the change is in git
    assert stack.sql("SELECT needs_render FROM deployments_environment WHERE id = %s", env_id) == [(False,)]
    assert stack.sql("SELECT count(*) FROM deployments_renderrun WHERE status IN ('queued', 'running')") == [(0,)]
