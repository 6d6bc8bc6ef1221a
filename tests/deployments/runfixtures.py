"""Fixtures and helpers shared by the render run tests (test_runs, test_admin_runs, test_workers).

Everything is real: a bare git remote in tmp_path, the git CLI, kubectl (optionally behind a wrapper script
that fails or sleeps on demand), Redis and PostgreSQL.
"""

import datetime
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import django_rq
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.environment import redis_flush_own

REAL_KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@dataclass
class GitOpsRemote:
    remote: Path
    workdir: Path

    def head(self) -> str | None:
        result = subprocess.run(["git", "rev-parse", "--verify", "-q", "refs/heads/main"], cwd=self.remote,
                                capture_output=True, text=True)
        return result.stdout.strip() or None

    def commits(self) -> list[str]:
        if self.head() is None:
            return []
        return git(self.remote, "rev-list", "main").split()

    def message(self, rev: str = "main") -> str:
        return git(self.remote, "log", "-1", "--format=%B", rev)

    def author(self, rev: str = "main") -> str:
        return git(self.remote, "log", "-1", "--format=%an <%ae>", rev).strip()

    def files(self, rev: str = "main") -> list[str]:
        return git(self.remote, "ls-tree", "-r", "--name-only", rev).split()

    def show(self, path: str, rev: str = "main") -> str:
        return git(self.remote, "show", f"{rev}:{path}")

    def log_patch(self) -> str:
        return git(self.remote, "log", "-p", "--all")


@pytest.fixture
def gitops(settings, tmp_path) -> GitOpsRemote:
    """A fresh, empty bare remote and working-copy location for this test."""
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    settings.GITOPS_REMOTE_URL = str(remote)
    settings.GITOPS_REPO_DIR = tmp_path / "work"
    settings.GITOPS_BRANCH = "main"
    settings.GITOPS_AUTO_RENDER = True
    settings.SECRETS_MANAGER_SYNC = False
    return GitOpsRemote(remote=remote, workdir=tmp_path / "work")


@dataclass
class KubectlSwitch:
    """A kubectl wrapper controlled by marker files: `fail` makes it fail, `sleep` makes it sleep first."""

    path: Path
    markers: Path

    def fail(self, on: bool = True) -> None:
        self._set("fail", on)

    def sleep(self, on: bool = True) -> None:
        self._set("sleep", on)

    def _set(self, name: str, on: bool) -> None:
        marker = self.markers / name
        if on:
            marker.write_text("1")
        else:
            marker.unlink(missing_ok=True)

    @property
    def sleeping_pid_file(self) -> Path:
        return self.markers / "sleeping.pid"

    def calls(self) -> int:
        log = self.markers / "calls"
        return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.fixture
def kubectl(settings, tmp_path) -> KubectlSwitch:
    markers = tmp_path / "kubectl-markers"
    markers.mkdir()
    script = tmp_path / "kubectl-wrapper"
    script.write_text(
        "#!/bin/sh\n"
        f'M="{markers}"\n'
        'echo "$@" >> "$M/calls"\n'
        'if [ -f "$M/fail" ]; then echo "error: simulated kustomize failure (test wrapper)" >&2; exit 1; fi\n'
        'if [ -f "$M/sleep" ]; then echo $$ > "$M/sleeping.pid"; sleep 300; fi\n'
        f'exec "{REAL_KUBECTL}" "$@"\n'
    )
    script.chmod(0o755)
    settings.KUBECTL = str(script)
    return KubectlSwitch(path=script, markers=markers)


@pytest.fixture
def gitops_queue():
    """The real `gitops` queue on the tests' own Redis database (tests/environment.py), empty before and after."""
    queue = django_rq.get_queue("gitops")
    redis_flush_own(queue.connection)
    yield queue
    redis_flush_own(queue.connection)


def sealed_secrets_certificate() -> str:
    """A self-signed RSA certificate, as `kubeseal --fetch-cert` returns the controller's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sealed-secret")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365)).sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def queued_run(*, environment_ids, user, reason, dry_run=False):
    """A queued run that nobody enqueued (the test executes it): render_run_request(enqueue=False)."""
    from deployments import runs

    return runs.render_run_request(environment_ids=environment_ids, user=user, reason=reason, dry_run=dry_run,
                                   enqueue=False, absorb=False).run


def demo_load_complete() -> dict:
    """The demo, with the Sealed Secrets certificate a minikube cluster's controller would give: every secret
    reaches its cluster, so a render of it succeeds without warnings. Returns {name: Environment}."""
    from deployments import services
    from deployments.models import Environment
    from projects.demo import demo_load

    demo_load()
    for environment in Environment.objects.filter(kind=Environment.Kind.MINIKUBE):
        environment.sealed_secrets_certificate = sealed_secrets_certificate()
        services.environment_save(environment=environment)
    Environment.objects.update(needs_render=True)
    from deployments.models import RenderRun

    RenderRun.objects.all().delete()  # the certificate upload requested a render; the tests start from none
    return {env.name: env for env in Environment.objects.all()}
