"""The GitOps remote, served by ``git daemon``, fails under a running portal (gunicorn + an RQ worker):

1. unreachable (the daemon is gone: connection refused) — the run fails with kind "remote" and a clear error on
   its page; nothing is committed; the change stays in the model, marked for render;
2. read-only (the daemon serves fetches but refuses pushes) — the next run (started by the recovery, as the
   scheduler would) renders and commits, the push is refused: the run fails with a clear error, and the commit is
   kept locally under refs/portal/unpushed;
3. back (pushes allowed) — the next run pushes the kept commit: the remote has exactly it, nothing is lost.

Function-level versions (no processes, a renamed directory / a pre-receive hook): tests/deployments/git/
test_safety.py (test_remote_unreachable_at_push_keeps_the_commit_and_the_next_run_pushes_it and the tests after
it)."""

import subprocess

import pytest

from tests.faults.stack import _stop, _wait
from tests.portalserver import free_port

pytestmark = [pytest.mark.slow, pytest.mark.faults]


class GitDaemon:
    def __init__(self, base):
        self.base, self.port, self.process = base, free_port(), None
        self.remote = base / "remote.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.remote)], check=True)

    @property
    def url(self) -> str:
        return f"git://127.0.0.1:{self.port}/remote.git"

    def start(self, *, writable: bool) -> None:
        args = ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={self.base}", "--listen=127.0.0.1",
                f"--port={self.port}", "--informative-errors"]
        if writable:
            args.append("--enable=receive-pack")
        self.process = subprocess.Popen([*args, str(self.base)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        _wait(lambda: subprocess.run(["git", "ls-remote", self.url], capture_output=True).returncode == 0,
              "git daemon to serve")

    def stop(self) -> None:
        _stop(self.process)

    def head(self) -> str:
        return subprocess.run(["git", "-C", str(self.remote), "rev-parse", "main"], capture_output=True, text=True,
                              check=True).stdout.strip()


def _git(stack, *args) -> str:
    result = subprocess.run(["git", "-C", str(stack.repo_dir), *args], capture_output=True, text=True)
    return result.stdout.strip()


def _last_run(stack, after: int):
    def finished():
        rows = stack.sql("SELECT id, status, error_kind, error, commit_sha FROM deployments_renderrun WHERE id > %s "
                         "ORDER BY id DESC LIMIT 1", after)
        return rows[0] if rows and rows[0][1] not in ("queued", "running") else None

    return _wait(finished, f"a run after #{after} to finish", timeout=240, every=0.5)


def _max_run(stack) -> int:
    return stack.sql("SELECT coalesce(max(id), 0) FROM deployments_renderrun")[0][0]


def test_remote_unreachable_then_read_only_then_back(stack):
    daemon = GitDaemon(stack.base)
    daemon.start(writable=True)
    try:
        stack.start_portal({"GITOPS_REMOTE_URL": daemon.url, "GITOPS_SOURCE_URL": daemon.url,
                            "GITOPS_PUSH_RETRIES": "1"})
        stack.create_superuser()
        env_id = int(stack.shell("from tests.factories import environment_factory, project_factory; "
                                 "env = environment_factory(name='remote-fault', image_tag='v1.0.0'); "
                                 "project_factory(env, slug='shop'); print(env.pk)").strip())
        session = stack.login()
        edit = f"/admin/deployments/environment/{env_id}/change/"

        # A first run reaches the remote.
        before = _max_run(stack)
        assert stack.post_form(session, edit, {"image_tag": "v2.0.0", "_continue": "1"}).status_code == 200
        run_id, status, _, error, first = _last_run(stack, before)
        assert status in ("succeeded", "warnings"), (error, stack.log("worker")[-3000:])
        assert daemon.head() == first

        # 1. Unreachable: the run fails visibly, nothing is committed, the change waits in the model.
        daemon.stop()
        before = _max_run(stack)
        assert stack.post_form(session, edit, {"image_tag": "v3.0.0", "_continue": "1"}).status_code == 200
        run_id, status, kind, error, sha = _last_run(stack, before)
        assert (status, kind, sha) == ("failed", "remote", ""), (status, kind, error)
        page = session.get(stack.url + f"/admin/deployments/renderrun/{run_id}/change/", timeout=60)
        assert page.status_code == 200 and "Remote unreachable or refused" in page.text
        assert "127.0.0.1" in error or "remote" in error.lower(), error
        assert _git(stack, "rev-parse", "-q", "--verify", "refs/portal/unpushed") == ""
        assert stack.sql("SELECT image_tag, needs_render FROM deployments_environment WHERE id = %s",
                         env_id) == [("v3.0.0", True)]

        # 2. Read-only: the recovery's run commits, the push is refused, the commit is kept locally.
        daemon.start(writable=False)
        before = _max_run(stack)
        output = stack.manage("recover_runs")
        assert "new runs for environments left dirty: [" in output, output
        run_id, status, kind, error, _ = _last_run(stack, before)
        assert (status, kind) == ("failed", "remote"), (status, kind, error)
        kept = _git(stack, "rev-parse", "-q", "--verify", "refs/portal/unpushed")
        assert len(kept) == 40 and "refs/portal/unpushed" in error, error
        assert daemon.head() == first  # the remote is untouched
        assert "v3.0.0" in _git(stack, "show", kept)
        page = session.get(stack.url + f"/admin/deployments/renderrun/{run_id}/change/", timeout=60)
        assert page.status_code == 200 and "refs/portal/unpushed" in page.text

        # 3. Back: the next run pushes the kept commit; nothing lost, nothing left over.
        daemon.stop()
        daemon.start(writable=True)
        before = _max_run(stack)
        output = stack.manage("recover_runs")
        run_id, status, kind, error, sha = _last_run(stack, before)
        assert status in ("succeeded", "warnings", "no_change"), (status, kind, error)
        assert daemon.head() == kept
        assert _git(stack, "rev-parse", "-q", "--verify", "refs/portal/unpushed") == ""
        assert stack.sql("SELECT needs_render FROM deployments_environment WHERE id = %s", env_id) == [(False,)]
        assert stack.worker.poll() is None and stack.web.poll() is None
    finally:
        daemon.stop()
