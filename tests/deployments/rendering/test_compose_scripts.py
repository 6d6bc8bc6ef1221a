"""The rendered server scripts of a Compose environment, run for real with bash: the backup's retention against a
temporary folder, and the pull-based deploy against a local git remote with the real `age` CLI.

`docker`, `aws` and `systemctl` are small stubs on PATH that record their arguments (no Docker daemon here).
"""

import gzip
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from deployments import services
from deployments.models import Environment, Secret
from deployments.rendering import render_tree
from deployments.selectors import environments_snapshot
from projects.demo import demo_load
from tests.factories import environment_factory, secret_factory

pytestmark = pytest.mark.django_db

DAY = 24 * 3600
DUMP = "-- PostgreSQL database dump\nCREATE TABLE notes (id integer);\n"


def stub(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!/usr/bin/env bash\nprintf '%s\\n' \"$*\" >> \"{bin_dir}/{name}.calls\"\n{body}\n")
    path.chmod(0o755)


def calls(bin_dir: Path, name: str) -> list[str]:
    path = bin_dir / f"{name}.calls"
    return path.read_text().splitlines() if path.exists() else []


def write_executable(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(0o755)
    return path


def age_backdate(path: Path, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(path, (when, when))


# --- backups ------------------------------------------------------------------------------------------------------

@pytest.fixture
def backup_script(settings, tmp_path):
    settings.GITOPS_SOURCE_URL, settings.GITOPS_BRANCH = "https://git.example.com/g.git", "main"
    demo_load()
    tree = render_tree(environments_snapshot())
    return write_executable(tmp_path / "tesslate-backup.sh",
                            tree["environments/single-server/scripts/tesslate-backup.sh"])


def run_backup(script: Path, tmp_path: Path, bin_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TESSLATE_BACKUP_DIR": str(tmp_path / "backups"),
           "TESSLATE_COMPOSE_FILE": str(tmp_path / "compose.yaml")}
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60)


def test_backup_dumps_compresses_uploads_and_keeps_the_retention_days(backup_script, tmp_path):
    bin_dir = tmp_path / "bin"
    (tmp_path / "dump.sql").write_text(DUMP)
    stub(bin_dir, "docker", f"cat {tmp_path / 'dump.sql'}")
    stub(bin_dir, "aws", "exit 0")
    backups = tmp_path / "backups"
    backups.mkdir()
    old = backups / "tesslate-single-server-20260101-030000.sql.gz"
    just_past = backups / "tesslate-single-server-20260102-030000.sql.gz"
    recent = backups / "tesslate-single-server-20260103-030000.sql.gz"
    other_env = backups / "tesslate-other-20200101-030000.sql.gz"
    unrelated = backups / "notes.txt"
    for path, age_seconds in ((old, 30 * DAY), (just_past, 7 * DAY + 3600), (recent, 7 * DAY - 3600),
                              (other_env, 90 * DAY), (unrelated, 90 * DAY)):
        path.write_bytes(b"x")
        age_backdate(path, age_seconds)

    result = run_backup(backup_script, tmp_path, bin_dir)
    assert result.returncode == 0, result.stderr
    # The demo keeps 7 days: older backups of this environment go, everything else stays.
    remaining = sorted(path.name for path in backups.iterdir())
    new = [name for name in remaining if name not in {recent.name, other_env.name, unrelated.name}]
    assert len(new) == 1 and new[0].startswith("tesslate-single-server-") and new[0].endswith(".sql.gz")
    assert not old.exists() and not just_past.exists()
    assert "retention 7 day(s): 2 old backup(s) deleted" in result.stderr
    assert gzip.decompress((backups / new[0]).read_bytes()).decode() == DUMP
    assert stat.S_IMODE((backups / new[0]).stat().st_mode) == 0o600

    (docker_call,) = calls(bin_dir, "docker")
    assert docker_call.startswith(f"compose --project-name tesslate-single-server --file {tmp_path}/compose.yaml "
                                  "exec -T postgres sh -c exec pg_dump")
    (aws_call,) = calls(bin_dir, "aws")
    assert aws_call == (f"s3 cp --only-show-errors --region eu-central-1 {backups / new[0]} "
                        f"s3://example-tesslate-backups/tesslate-backups/single-server/{new[0]}")


def test_a_failed_dump_leaves_no_file_and_deletes_nothing(backup_script, tmp_path):
    bin_dir = tmp_path / "bin"
    stub(bin_dir, "docker", "echo 'pg_dump: error: connection failed' >&2; exit 1")
    stub(bin_dir, "aws", "exit 0")
    backups = tmp_path / "backups"
    backups.mkdir()
    old = backups / "tesslate-single-server-20260101-030000.sql.gz"
    old.write_bytes(b"x")
    age_backdate(old, 30 * DAY)
    result = run_backup(backup_script, tmp_path, bin_dir)
    assert result.returncode != 0
    assert sorted(path.name for path in backups.iterdir()) == [old.name]  # no partial file, nothing pruned
    assert calls(bin_dir, "aws") == []


# --- the pull-based deploy ----------------------------------------------------------------------------------------

def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", "-c", "user.name=Portal", "-c", "user.email=portal@example.com",
                           "-c", "init.defaultBranch=main", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


class Server:
    """A GitOps remote, the portal's working copy of it, and a server's folders."""

    def __init__(self, tmp_path: Path, environment: Environment) -> None:
        self.root = tmp_path
        self.environment = environment
        self.origin = tmp_path / "origin.git"
        self.work = tmp_path / "work"
        self.bin = tmp_path / "bin"
        self.key = tmp_path / "age.key"
        self.systemd = tmp_path / "systemd"
        self.systemd.mkdir()
        git("init", "--bare", "--quiet", str(self.origin))
        git("clone", "--quiet", str(self.origin), str(self.work))
        stub(self.bin, "docker", "exit 0")
        stub(self.bin, "systemctl", "exit 0")

    def publish(self, message: str, *, force: bool = False) -> str:
        """Render the environment into the working copy, commit and push; returns the commit."""
        tree = render_tree(environments_snapshot(environment_ids=[self.environment.pk]))
        shutil.rmtree(self.work / "environments", ignore_errors=True)
        for path, content in tree.items():
            (self.work / path).parent.mkdir(parents=True, exist_ok=True)
            (self.work / path).write_bytes(content)
        git("add", "-A", cwd=self.work)
        git("commit", "--quiet", "-m", message, cwd=self.work)
        git("push", "--quiet", *(["--force"] if force else []), "origin", "HEAD:main", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def deploy(self, *args: str) -> subprocess.CompletedProcess:
        script = self.work / "environments" / self.environment.name / "scripts" / "tesslate-deploy.sh"
        env = {**os.environ, "PATH": f"{self.bin}:{os.environ['PATH']}",
               "TESSLATE_CHECKOUT": str(self.root / "checkout"), "TESSLATE_RUNTIME": str(self.root / "run"),
               "TESSLATE_STATE_DIR": str(self.root / "state"), "TESSLATE_AGE_IDENTITY": str(self.key),
               "TESSLATE_ALLOWED_SIGNERS": str(self.root / "no-signers"), "TESSLATE_SYSTEMD_DIR": str(self.systemd)}
        return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def server(settings, tmp_path):
    if not (shutil.which("age") and shutil.which("age-keygen")):
        pytest.skip("Debian's age CLI is not installed (apt-get install age)")
    settings.GITOPS_SOURCE_URL = str(tmp_path / "origin.git")
    settings.GITOPS_BRANCH = "main"
    key = tmp_path / "age.key"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True,
                               text=True).stdout.strip()
    environment = environment_factory(kind=Environment.Kind.COMPOSE, age_recipient=recipient)
    secret_factory(environment, key="SECRET_KEY", value="first-secret")
    secret_factory(environment, secret_name="postgres-secret", key="POSTGRES_PASSWORD", value="pg=pass word$1")
    return Server(tmp_path, environment)


def test_the_server_follows_the_repository(server):
    name = server.environment.name
    first = server.publish("first render")
    result = server.deploy()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == first
    assert (server.root / "state/deployed-revision").read_text().splitlines()[0] == first
    # Values decrypted into the runtime folder (tmpfs on the server), readable only by root.
    assert (server.root / "run/tesslate-app-secrets.env").read_text() == "SECRET_KEY=first-secret\n"
    assert (server.root / "run/postgres-secret.env").read_text() == "POSTGRES_PASSWORD=pg=pass word$1\n"
    assert stat.S_IMODE((server.root / "run/tesslate-app-secrets.env").stat().st_mode) == 0o600
    compose_dir = server.root / "checkout" / "environments" / name / "compose"
    assert calls(server.bin, "docker") == [
        f"compose --project-name tesslate-{name} --project-directory {compose_dir} "
        f"--file {compose_dir}/compose.yaml up --detach --remove-orphans"]
    assert sorted(path.name for path in server.systemd.iterdir()) == [
        "tesslate-backup.service", "tesslate-backup.timer", "tesslate-deploy.service", "tesslate-deploy.timer"]
    assert calls(server.bin, "systemctl") == ["daemon-reload", "enable --now tesslate-deploy.timer "
                                                                "tesslate-backup.timer"]

    # Nothing new: nothing applied.
    result = server.deploy()
    assert result.returncode == 0 and "is deployed already" in result.stderr
    assert len(calls(server.bin, "docker")) == 1

    # A rotation in the portal reaches the server with the next commit.
    secret = Secret.objects.get(environment=server.environment, key="SECRET_KEY")
    services.secret_store_value(secret=secret, value="rotated-secret")
    second = server.publish("rotate SECRET_KEY")
    result = server.deploy()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == second
    assert (server.root / "run/tesslate-app-secrets.env").read_text() == "SECRET_KEY=rotated-secret\n"
    assert len(calls(server.bin, "docker")) == 2
    assert calls(server.bin, "systemctl").count("daemon-reload") == 1  # the units did not change


def test_the_server_refuses_rewritten_history(server):
    server.publish("first render")
    assert server.deploy().returncode == 0
    # Someone force-pushes a branch that does not contain the deployed commit.
    git("checkout", "--quiet", "--orphan", "rewritten", cwd=server.work)
    server.publish("rewritten history", force=True)
    result = server.deploy()
    assert result.returncode != 0
    assert "does not descend from the deployed revision" in result.stderr
    assert len(calls(server.bin, "docker")) == 1


def test_a_value_encrypted_for_another_server_stops_the_deploy(server, tmp_path):
    server.publish("first render")
    subprocess.run(["age-keygen", "-o", str(tmp_path / "other.key")], check=True, capture_output=True)
    server.key = tmp_path / "other.key"  # the wrong server
    result = server.deploy()
    assert result.returncode != 0 and "cannot decrypt" in result.stderr
    assert calls(server.bin, "docker") == []
    assert not (server.root / "run").exists()
    assert "first-secret" not in result.stderr + result.stdout


def test_the_backup_target_names_where_the_script_uploads(settings):
    import fnmatch

    from deployments.compose import compose_backup_target

    settings.GITOPS_SOURCE_URL, settings.GITOPS_BRANCH = "https://git.example.com/g.git", "main"
    demo_load()
    target = compose_backup_target(Environment.objects.get(name="single-server"))
    assert (target.bucket, target.prefix, target.region) == (
        "example-tesslate-backups", "tesslate-backups/single-server/", "eu-central-1")
    assert fnmatch.fnmatch("tesslate-single-server-20260101-030000.sql.gz", target.object_pattern)
    script = render_tree(environments_snapshot())["environments/single-server/scripts/tesslate-backup.sh"].decode()
    assert f"S3_BUCKET={target.bucket}\n" in script and f"S3_PREFIX={target.prefix}\n" in script
    assert compose_backup_target(Environment.objects.get(name="minikube")) is None
