"""The portal's rq worker warms the validation gate's caches in its parent process, so the child forked for each
job inherits them instead of re-reading the whole tree (deployments.worker, deployments.validation.warm)."""

import logging
import re
import tempfile
from pathlib import Path

import pytest
from django.conf import settings
from django_rq.workers import get_worker_class
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rq.worker import Worker

from deployments import worker as worker_module
from deployments.validation import kustomize
from deployments.validation.hosts import _SOURCE_CACHE
from deployments.validation.warm import validation_warm
from deployments.worker import GitOpsWorker, mirror_tree

INGRESS = """apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  rules:
  - host: a.example.com
"""


def test_the_configured_worker_is_the_warming_forking_worker():
    assert get_worker_class() is GitOpsWorker
    assert issubclass(GitOpsWorker, Worker)
    assert mirror_tree() == Path(str(settings.GITOPS_REPO_DIR) + ".validate") / "tree"


def test_kubectl_warm_runs_kubectl_once_and_names_what_is_wrong(tmp_path):
    assert 0 < kustomize.kubectl_warm(settings.KUBECTL) < 60
    with pytest.raises(FileNotFoundError, match=r"settings\.KUBECTL"):
        kustomize.kubectl_warm(str(tmp_path / "no-kubectl"))
    broken = tmp_path / "kubectl"
    broken.write_text("#!/bin/sh\necho \"error: unable to find one of 'kustomization.yaml' in directory '$2'\" >&2\n"
                      "exit 1\n")
    broken.chmod(0o755)
    with pytest.raises(RuntimeError) as caught:
        kustomize.kubectl_warm(str(broken))
    # kubectl's own words, without the scratch folder's path
    assert str(caught.value) == "kubectl kustomize failed: unable to find one of 'kustomization.yaml' in directory '.'"


def test_kubectl_warm_does_not_wait_for_a_hanging_kubectl(tmp_path, monkeypatch):
    hanging = tmp_path / "kubectl"
    hanging.write_text("#!/bin/sh\nexec sleep 30\n")
    hanging.chmod(0o755)
    monkeypatch.setattr(kustomize, "WARM_TIMEOUT_SECONDS", 1)
    with pytest.raises(RuntimeError, match=r"^kubectl kustomize of an empty kustomization did not finish within 1 s$"):
        kustomize.kubectl_warm(str(hanging))


def test_the_worker_runs_kubectl_at_its_start_only_and_reports_a_broken_one(tmp_path, settings, caplog,
                                                                             monkeypatch):
    settings.GITOPS_REPO_DIR = str(tmp_path / "repo")
    runs = []
    real = worker_module.kubectl_warm
    monkeypatch.setattr(worker_module, "kubectl_warm", lambda kubectl: runs.append(kubectl) or real(kubectl))
    worker = GitOpsWorker.__new__(GitOpsWorker)  # _warm needs no queue or connection
    with caplog.at_level(logging.INFO, logger="deployments.worker"):
        worker._warm("start")
        worker._warm("after a job")
    assert runs == [settings.KUBECTL]
    started, after_job = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Validation caches")]
    assert re.search(r"^Validation caches warm \(start\): .*, kubectl \d+\.\d\d s$", started)
    assert "kubectl" not in after_job

    caplog.clear()
    settings.KUBECTL = str(tmp_path / "no-kubectl")
    with caplog.at_level(logging.INFO, logger="deployments.worker"):
        worker._warm("start")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"kubectl does not run; a render run with Kubernetes manifests to validate will fail: "
                        f"kubectl not found: {settings.KUBECTL!r} (settings.KUBECTL)"]
    assert any(r.getMessage().startswith("Validation caches warm (start): schemas") for r in caplog.records)


def test_warm_reads_every_kustomization_and_ingress_source_once(tmp_path):
    tree = tmp_path / "tree"
    folder = tree / "environments" / "dev" / "projects" / "proj-1"
    folder.mkdir(parents=True)
    (folder / "kustomization.yaml").write_text("resources:\n- web.yaml\n")
    (folder / "web.yaml").write_text(INGRESS)
    (tree / "environments" / "dev" / "projects" / "kustomization.yaml").write_text("resources:\n- proj-1\n")
    timings = validation_warm(tree, compile_validators=False)
    assert set(timings) == {"schemas", "state", "kustomizations", "hosts", "record"}
    assert str(folder / "kustomization.yaml") in kustomize._KUSTOMIZATION_CACHE
    assert _SOURCE_CACHE[str(folder / "web.yaml")][1] == [("", "web", ("a.example.com",))]


def test_warm_without_a_mirror_loads_only_the_schemas(tmp_path):
    assert set(validation_warm(tmp_path / "missing", compile_validators=False)) == {"schemas"}
    assert set(validation_warm(None, compile_validators=False)) == {"schemas"}


def _two_projects(tmp_path, second_host="b.example.com"):
    tree = tmp_path / "tree"
    projects = tree / "environments" / "dev" / "projects"
    for number, host in ((1, "a.example.com"), (2, second_host)):
        folder = projects / f"proj-{number}"
        folder.mkdir(parents=True)
        (folder / "kustomization.yaml").write_text("resources:\n- web.yaml\n")
        (folder / "web.yaml").write_text(INGRESS.replace("a.example.com", host).replace("name: web",
                                                                                        f"name: web-{number}"))
    (projects / "kustomization.yaml").write_text("resources:\n- proj-1\n- proj-2\n")
    return tree, projects


def test_warm_records_the_state_it_verified_only_when_the_state_held_still(tmp_path):
    from deployments.validation import trust

    tree, _ = _two_projects(tmp_path)
    validation_warm(tree, compile_validators=False, state=lambda: "s1")
    assert trust.verified_state(tree) == "s1"
    states = iter(["s2", "s3"])  # written while it was being read: nothing is trusted
    validation_warm(tree, compile_validators=False, state=lambda: next(states))
    assert trust.verified_state(tree) is None
    validation_warm(tree, compile_validators=False, state=lambda: None)  # unmarked: being written
    assert trust.verified_state(tree) is None


def test_a_change_from_the_verified_state_reads_only_the_changed_files_and_is_still_checked(tmp_path, monkeypatch):
    """In place of a stat of every file, only the changed paths are read again; the host check still sees the
    unchanged project's Ingress (from the kept caches) and the changed one (read anew)."""
    from deployments.validation import tree_validate, trust

    tree, projects = _two_projects(tmp_path)
    validation_warm(tree, compile_validators=False, state=lambda: "s1")
    changed = projects / "proj-2" / "web.yaml"
    changed.write_text(changed.read_text().replace("b.example.com", "a.example.com"))

    def no_full_scan(root):
        raise AssertionError("the whole tree was read again")

    monkeypatch.setattr(kustomize, "tree_scan", no_full_scan)
    stats = []
    real_stat = kustomize.os.stat
    monkeypatch.setattr(kustomize.os, "stat", lambda path, *a, **k: stats.append(str(path)) or real_stat(path, *a, **k))
    messages = []
    problems = tree_validate(root=tree, paths=["environments/dev/projects/proj-2/web.yaml"], unchanged_since="s1",
                             progress=messages.append)
    assert [problem.rule for problem in problems] == ["ingress-host-duplicate"]
    assert str(projects / "proj-1" / "web.yaml") not in stats  # trusted: not even a stat
    # The run's log says so (the last line of a validation).
    assert messages[-1].endswith("Cached states of unchanged files: trusted (unchanged since the worker's warm-up "
                                 "checked them).")
    assert trust.trust_active() is None  # only during that validation
    monkeypatch.undo()

    # Another state (the mirror was written by someone else since): every entry is checked, the whole tree read.
    monkeypatch.setattr(kustomize, "tree_scan", no_full_scan)
    with pytest.raises(AssertionError, match="whole tree"):
        tree_validate(root=tree, paths=["environments/dev/projects/proj-2/web.yaml"], unchanged_since="s0")
    monkeypatch.undo()
    messages.clear()
    tree_validate(root=tree, paths=["environments/dev/projects/proj-2/web.yaml"], unchanged_since="s0",
                  progress=messages.append)
    assert messages[-1].endswith("Cached states of unchanged files: checked one by one.")


def test_a_change_that_adds_files_from_the_verified_state_reads_the_tree_again(tmp_path):
    from deployments.validation import tree_validate

    tree, projects = _two_projects(tmp_path)
    validation_warm(tree, compile_validators=False, state=lambda: "s1")
    folder = projects / "proj-3"
    folder.mkdir()
    (folder / "kustomization.yaml").write_text("resources:\n- web.yaml\n")
    (folder / "web.yaml").write_text(INGRESS.replace("name: web", "name: web-3"))
    (projects / "kustomization.yaml").write_text("resources:\n- proj-1\n- proj-2\n- proj-3\n")
    problems = tree_validate(root=tree, paths=["environments/dev/projects/kustomization.yaml",
                                               "environments/dev/projects/proj-3/kustomization.yaml",
                                               "environments/dev/projects/proj-3/web.yaml"], unchanged_since="s1")
    assert [problem.rule for problem in problems] == ["ingress-host-duplicate"]
    assert "proj-3" in problems[0].message or "proj-1" in problems[0].message


def test_warm_after_a_change_checks_only_the_paths_that_changed(tmp_path, monkeypatch):
    """After a job, the worker's warm-up gets the paths its commit changed (mirror_changes) and checks only those:
    the other files are not even stat'ed, the changed one is read anew, and the new state is the verified one."""
    from deployments.validation import trust

    tree, projects = _two_projects(tmp_path)
    validation_warm(tree, compile_validators=False, state=lambda: "s1")
    changed = projects / "proj-2" / "web.yaml"
    changed.write_text(changed.read_text().replace("b.example.com", "c.example.com"))
    asked = []

    def changes(old, new):
        asked.append((old, new))
        return ["environments/dev/projects/proj-2/web.yaml"]

    stats = []
    real_stat = kustomize.os.stat
    monkeypatch.setattr(kustomize.os, "stat", lambda path, *a, **k: stats.append(str(path)) or real_stat(path, *a, **k))
    validation_warm(tree, compile_validators=False, state=lambda: "s2", changes=changes)
    monkeypatch.undo()
    assert asked == [("s1", "s2")]
    assert str(projects / "proj-1" / "web.yaml") not in stats and str(changed) in stats
    assert _SOURCE_CACHE[str(changed)][1] == [("", "web-2", ("c.example.com",))]
    assert trust.verified_state(tree) == "s2"
    # Unknown changes (None): every file is checked again.
    stats.clear()
    monkeypatch.setattr(kustomize.os, "stat", lambda path, *a, **k: stats.append(str(path)) or real_stat(path, *a, **k))
    validation_warm(tree, compile_validators=False, state=lambda: "s3", changes=lambda old, new: None)
    assert str(projects / "proj-1" / "web.yaml") in stats


HOSTS = ["a.example.com", "b.example.com", "c.example.com"]
SERVICE = """apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
  - port: 80
"""


def _projects_tree(root: Path, hosts: list[str], namespaced: list[int]) -> Path:
    """One project per host, each folder a kustomization (with a namespace or without) holding one Ingress (with
    a namespace of its own or without) and one Service."""
    tree = root / "tree"
    projects = tree / "environments" / "dev" / "projects"
    for number, host in enumerate(hosts):
        folder = projects / f"proj-{number}"
        folder.mkdir(parents=True)
        kind = namespaced[number % len(namespaced)]  # 0: none, 1: the kustomization's, 2: both (they differ)
        namespace = f"namespace: proj-{number}\n" if kind else ""
        (folder / "kustomization.yaml").write_text(f"{namespace}resources:\n- web.yaml\n- svc.yaml\n")
        ingress = INGRESS.replace("a.example.com", host).replace("name: web", f"name: web-{number}")
        if kind == 2:
            ingress = ingress.replace("metadata:\n", "metadata:\n  namespace: elsewhere\n")
        (folder / "web.yaml").write_text(ingress)
        (folder / "svc.yaml").write_text(SERVICE)
    (projects / "kustomization.yaml").write_text("resources:\n" + "".join(f"- proj-{n}\n" for n in range(len(hosts))))
    return tree


@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hosts=st.lists(st.sampled_from(HOSTS), min_size=2, max_size=5),
       namespaced=st.lists(st.integers(min_value=0, max_value=2), min_size=1, max_size=3),
       changed=st.integers(min_value=0, max_value=4), new_host=st.sampled_from([*HOSTS, "d.example.com", None]))
def test_the_indexed_host_check_finds_what_reading_every_file_finds(hosts, namespaced, changed, new_host):
    """After the warm-up indexed the environment's host claims, a one-file change replays only the hosts it can
    touch: the problems are those of the same validation that reads every source file (no trusted state), for
    duplicates the change makes, removes or leaves as they were, with Ingresses with and without a namespace,
    and for a change of another file of a project's folder (new_host None: its Service), which builds the folder."""
    from unittest import mock

    from deployments.validation import tree_validate
    from deployments.validation.hosts import HostClaims

    changed %= len(hosts)
    with tempfile.TemporaryDirectory() as scratch:
        tree = _projects_tree(Path(scratch), hosts, namespaced)
        validation_warm(tree, compile_validators=False, state=lambda: "s1")
        if new_host is None:
            path = f"environments/dev/projects/proj-{changed}/svc.yaml"
            (tree / path).write_text(SERVICE.replace("port: 80", "port: 8080"))
        else:
            path = f"environments/dev/projects/proj-{changed}/web.yaml"
            (tree / path).write_text((tree / path).read_text().replace(hosts[changed], new_host))
        replay = HostClaims._add_changed_sources
        with mock.patch.object(HostClaims, "_add_changed_sources", autospec=True, side_effect=replay) as indexed:
            fast = tree_validate(root=tree, paths=[path], unchanged_since="s1")
        assert indexed.call_count == 1
        every = tree_validate(root=tree, paths=[path])
        assert [(p.file, p.rule, p.message) for p in fast] == [(p.file, p.rule, p.message) for p in every]


@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hosts=st.lists(st.sampled_from(HOSTS), min_size=2, max_size=5),
       edits=st.lists(st.tuples(st.integers(min_value=0, max_value=4),
                                st.sampled_from([*HOSTS, "d.example.com", "no ingress", "ingress in svc"])),
                      min_size=1, max_size=3),
       then=st.tuples(st.integers(min_value=0, max_value=4), st.sampled_from([*HOSTS, "e.example.com"])))
def test_the_host_index_after_a_job_equals_one_built_from_every_file(hosts, edits, then):
    """After a job rewrote files in place, the warm-up re-indexes only those files' host claims: the index (hosts,
    claiming files, folders, shared hosts) equals the one built from every file, whether a file changed its host,
    lost its Ingress or gained one; and the next change validated against it finds what reading every file finds."""
    from unittest import mock

    from deployments.validation import hosts as hosts_module
    from deployments.validation import tree_validate

    with tempfile.TemporaryDirectory() as scratch:
        tree = _projects_tree(Path(scratch), hosts, [0, 1, 2])
        validation_warm(tree, compile_validators=False, state=lambda: "s1")
        changed = []
        for number, edit in edits:
            folder = f"environments/dev/projects/proj-{number % len(hosts)}"
            if edit == "no ingress":
                path = f"{folder}/web.yaml"
                (tree / path).write_text(SERVICE.replace("name: web", f"name: web-gone-{number}"))
            elif edit == "ingress in svc":
                path = f"{folder}/svc.yaml"
                (tree / path).write_text(INGRESS.replace("name: web", f"name: svc-{number}"))
            else:
                path = f"{folder}/web.yaml"
                (tree / path).write_text(INGRESS.replace("a.example.com", edit).replace("name: web", f"name: {number}"))
            changed.append(path)
        key = (str(tree), "dev")
        with mock.patch.object(hosts_module, "_host_index", side_effect=AssertionError("indexed every file")):
            validation_warm(tree, compile_validators=False, state=lambda: "s2", changes=lambda old, new: list(changed))
        incremental, kept = hosts_module._HOSTS[key], hosts_module._FILES[key]
        assert kept[0] == "s2"
        hosts_module.source_files_remember(tree, "dev", "s2", kept[1])  # from every file
        assert hosts_module._HOSTS[key] == incremental and hosts_module._FILES[key][2] == kept[2]

        hosts_module._HOSTS[key], hosts_module._FILES[key] = incremental, kept  # what the warm-up left
        number, host = then
        path = f"environments/dev/projects/proj-{number % len(hosts)}/web.yaml"
        (tree / path).write_text(INGRESS.replace("a.example.com", host).replace("name: web", "name: then"))
        fast = tree_validate(root=tree, paths=[path], unchanged_since="s2")
        every = tree_validate(root=tree, paths=[path])
        assert [(p.file, p.rule, p.message) for p in fast] == [(p.file, p.rule, p.message) for p in every]
