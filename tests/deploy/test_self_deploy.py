"""The portal deploys itself: its image's entry points, its Kustomize manifests (built with kubectl kustomize and
checked by the portal's own validation gate) and `manage.py check --deploy` in the production configuration."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml
from django.conf import settings

from deployments.validation import tree_validate
from tests.portalserver import free_port

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "portal"
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"

PRODUCTION_ENV = {
    "PORTAL_IGNORE_DOTENV": "1", "DEBUG": "false", "SECRET_KEY": "p" * 20 + "-production-like-secret-key-" + "q" * 20,
    "ALLOWED_HOSTS": "gitops.example.com", "CSRF_TRUSTED_ORIGINS": "https://gitops.example.com",
    "PORTAL_ENCRYPTION_KEYS": "n1kJ2b6zqYxVhB7gVJ0p3m8Xq9sR4tU5wY6zA7bC8dE=", "BEHIND_TLS_PROXY": "true",
    "STATIC_MANIFEST": "true",
}


def _env(extra: dict) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "SECURE_", "SESSION_",
                                                                                   "CSRF_"))}
    env.update(extra)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _built() -> list[dict]:
    result = subprocess.run([settings.KUBECTL, "kustomize", str(MANIFESTS)], capture_output=True, text=True,
                            check=True, timeout=120)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _by_kind(docs, kind):
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def test_manifests_build_with_probes_secrets_by_reference_and_a_scalable_worker():
    docs = _built()
    kinds = {doc["kind"] for doc in docs}
    assert {"Namespace", "Deployment", "Service", "Ingress", "ConfigMap"} <= kinds
    assert "Secret" not in kinds  # referenced, never inlined
    assert all(doc["metadata"].get("namespace", "gitops-portal") == "gitops-portal" for doc in docs)
    deployments = _by_kind(docs, "Deployment")
    web, worker = deployments["gitops-portal-web"], deployments["gitops-portal-worker"]
    scheduler = deployments["gitops-portal-scheduler"]
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert worker["spec"]["template"]["spec"]["containers"][0]["args"] == ["worker"]
    assert worker["spec"]["replicas"] >= 2  # several workers share one Redis; the lock serializes git writes
    assert scheduler["spec"]["replicas"] == 1 and scheduler["spec"]["strategy"]["type"] == "Recreate"
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"] + pod.get("initContainers", []):
            assert c["image"] == "registry.example.com/tesslate/gitops-portal:0.1.0"
            refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in c["env"] if "valueFrom" in e}
            assert refs["DATABASE_URL"] == "portal-database" and refs["REDIS_URL"] == "portal-redis"
            assert refs["SECRET_KEY"] == refs["PORTAL_ENCRYPTION_KEYS"] == "portal-keys"
            assert not any("value" in e and "://" in str(e["value"]) for e in c["env"])
    config = _by_kind(docs, "ConfigMap")["gitops-portal-config"]["data"]
    assert config["DEBUG"] == "false" and not {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"} & set(config)
    service = _by_kind(docs, "Service")["gitops-portal"]
    ingress = _by_kind(docs, "Ingress")["gitops-portal"]
    assert service["spec"]["selector"] == web["spec"]["selector"]["matchLabels"]
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "gitops-portal"


def test_manifests_pass_the_portals_own_validation_gate(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(MANIFESTS, tree / "portal")
    assert tree_validate(root=tree) == []
    # The gate really looks: a broken copy is refused.
    broken = tree / "portal" / "worker.yaml"
    broken.write_text(broken.read_text().replace("replicas: 2", 'replicas: "two"'))
    problems = tree_validate(root=tree)
    assert problems and any("replicas" in str(problem) for problem in problems), problems


def test_check_deploy_is_clean_in_the_production_configuration():
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                            env=_env({**PRODUCTION_ENV, "DATABASE_URL": os.environ["DATABASE_URL"]}),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_dockerfile_is_slim_non_root_gunicorn_and_whitenoise():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert "collectstatic" in dockerfile
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "/app/deploy/entrypoint.sh"]' in dockerfile
    requirements = (ROOT / "requirements.txt").read_text()
    assert "gunicorn==" in requirements and "whitenoise==" in requirements
    assert "whitenoise.middleware.WhiteNoiseMiddleware" in settings.MIDDLEWARE


def test_entrypoint_roles(tmp_path):
    env = _env({"DATABASE_URL": os.environ["DATABASE_URL"], "REDIS_URL": os.environ["REDIS_URL"],
                "SECURE_SSL_REDIRECT": "false"})
    unknown = subprocess.run(["sh", str(ENTRYPOINT), "bogus"], env=env, capture_output=True, text=True, timeout=30)
    assert unknown.returncode == 64 and "usage:" in unknown.stderr
    listing = subprocess.run(["sh", str(ENTRYPOINT), "scheduler", "--list"], env=env, capture_output=True,
                             text=True, timeout=120)
    assert listing.returncode == 0 and "render-runs-recover" in listing.stdout, listing.stderr
    # The web role serves /health through gunicorn on the given port.
    port = free_port()
    log = tmp_path / "web.log"
    web = subprocess.Popen(["sh", str(ENTRYPOINT), "web"],
                           env={**env, "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1"}, stdout=log.open("wb"),
                           stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert web.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.3)
    finally:
        web.terminate()
        web.wait(timeout=30)
