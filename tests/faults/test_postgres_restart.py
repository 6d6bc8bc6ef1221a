"""PostgreSQL restarted under a running portal (gunicorn with persistent connections + an RQ worker): the next
requests and the next job succeed without restarting either process (settings: CONN_MAX_AGE with
CONN_HEALTH_CHECKS=True, so a connection the server dropped is replaced before it is used)."""

import subprocess

import pytest
import requests

from tests.faults.stack import _wait

pytestmark = [pytest.mark.slow, pytest.mark.faults]


def _change_and_wait(stack, session, env_id, tag) -> tuple[str, str]:
    before = stack.sql("SELECT coalesce(max(id), 0) FROM deployments_renderrun")[0][0]
    response = stack.post_form(session, f"/admin/deployments/environment/{env_id}/change/",
                               {"image_tag": tag, "_continue": "Save and continue editing"})
    assert response.status_code == 200 and "ships this change to git" in response.text, response.text[-3000:]
    run_id = stack.sql("SELECT id FROM deployments_renderrun WHERE id > %s ORDER BY id", before)[0][0]

    def finished():
        rows = stack.sql("SELECT status, commit_sha, error FROM deployments_renderrun WHERE id = %s", run_id)
        return rows[0] if rows[0][0] not in ("queued", "running") else None

    status, commit_sha, error = _wait(finished, f"run {run_id}", timeout=240, every=0.5)
    assert status in ("succeeded", "warnings"), (error, stack.log("worker")[-3000:])
    return commit_sha, tag


def test_postgres_restart_the_portal_and_the_worker_reconnect_by_themselves(stack):
    stack.start_portal({"CONN_MAX_AGE": "600"})
    stack.create_superuser()
    env_id = int(stack.shell("from tests.factories import environment_factory, project_factory; "
                             "env = environment_factory(name='pg-fault', image_tag='v1.0.0'); "
                             "project_factory(env, slug='shop'); print(env.pk)").strip())
    session = stack.login()
    # Both processes hold a database connection from before the restart.
    _change_and_wait(stack, session, env_id, "v2.0.0")
    for _ in range(8):  # every gunicorn thread has one
        assert session.get(stack.url + "/admin/deployments/environment/", timeout=60).status_code == 200
    web_pid, worker_pid = stack.web.pid, stack.worker.pid

    stack.pg.restart()

    # The very next requests succeed (no 500 from a dead connection), the session survived, /ready says so.
    for path in ["/admin/", "/admin/deployments/environment/", f"/admin/deployments/environment/{env_id}/change/",
                 "/admin/deployments/renderrun/", "/ready"] * 3:
        response = session.get(stack.url + path, timeout=60)
        assert response.status_code == 200, (path, response.status_code, stack.log("web")[-3000:])
    # The next job on the same worker succeeds too.
    commit_sha, _ = _change_and_wait(stack, session, env_id, "v3.0.0")
    assert (stack.web.pid, stack.worker.pid) == (web_pid, worker_pid)
    assert stack.web.poll() is None and stack.worker.poll() is None
    head = subprocess.run(["git", "-C", str(stack.repo_dir), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert head == commit_sha
    assert "v3.0.0" in subprocess.run(["git", "-C", str(stack.repo_dir), "show", head], capture_output=True,
                                      text=True, check=True).stdout
    assert "Internal Server Error" not in stack.log("web")
    assert requests.get(stack.url + "/ready", timeout=10).status_code == 200
