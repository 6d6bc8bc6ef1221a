"""The change-safety check (deployments/validation/change_safety.py) and the gate's ingress-host-duplicate rule.

Table-driven: each row is an object at HEAD, the same object as the portal would now write it, and the rule id
the API server's refusal maps to (None: the change is allowed). Then the gate itself on a real tree with real
``kubectl kustomize``: a shrinking volume and a duplicated host are refused, an allowed change passes.
"""

import copy
from pathlib import Path

import pytest
import yaml

from deployments.validation import tree_validate
from deployments.validation.change_safety import RULES, change_safety_check, quantity_value

NS = "proj-3f0c1a52-6b1e-4c1f-9a55-0d2b7f4e8a10"


def pvc(size="2Gi", storage_class="tesslate-block-storage", **spec):
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "project-storage", "namespace": NS},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                     "resources": {"requests": {"storage": size}}, **spec}}


def storage_class(**fields):
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "tesslate-block-storage"},
            "provisioner": "ebs.csi.aws.com", "parameters": {"type": "gp3", "encrypted": "true"},
            "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": True,
            **fields}


def deployment(selector=None, replicas=1, image="tesslate-devserver:latest"):
    selector = selector or {"matchLabels": {"tesslate.io/component": "dev-container"}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "dev-web", "namespace": NS},
            "spec": {"replicas": replicas, "selector": selector,
                     "template": {"metadata": {"labels": selector["matchLabels"]},
                                  "spec": {"containers": [{"name": "dev", "image": image}]}}}}


def statefulset(**spec):
    base = {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "replicas": 1,
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                                      "spec": {"resources": {"requests": {"storage": "1Gi"}}}}],
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db"}]}}}
    base.update(spec)
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": NS}, "spec": base}


def service(**spec):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dev-web", "namespace": NS},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}], **spec}}


def job(command="migrate"):
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate", "namespace": "tesslate"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "m", "image": "x:1", "command": [command]}]}}}}


def binding(role="tesslate-project-manager"):
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "tesslate-project-manager"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "tesslate-backend-sa", "namespace": "tesslate"}]}


def config_map(data, immutable=None):
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tesslate-config", "namespace": "tesslate"},
           "data": data}
    if immutable is not None:
        obj["immutable"] = immutable
    return obj


def volume_snapshot(content="proj-x-snap-0123456789abcdef0"):
    return {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
            "metadata": {"name": "restore-snap-0123456789abcdef0", "namespace": NS},
            "spec": {"volumeSnapshotClassName": "tesslate-ebs-snapshots",
                     "source": {"volumeSnapshotContentName": content}}}


def snapshot_content(handle="snap-0123456789abcdef0"):
    return {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
            "metadata": {"name": "proj-x-snap"},
            "spec": {"deletionPolicy": "Retain", "driver": "ebs.csi.aws.com", "source": {"snapshotHandle": handle},
                     "volumeSnapshotRef": {"name": "restore", "namespace": NS}}}


def with_(obj, path, value):
    obj = copy.deepcopy(obj)
    target = obj
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    return obj


CASES = [
    # id, object at HEAD, new object, expected rule (None: allowed), fragment of the message
    ("pvc-shrink", pvc("2Gi"), pvc("1Gi"), "pvc-shrink", "shrinks from 2Gi to 1Gi"),
    ("pvc-shrink-units", pvc("2Gi"), pvc("2000Mi"), "pvc-shrink", "create a new volume and restore"),
    ("pvc-same-size-other-spelling", pvc("1Gi"), pvc("1024Mi"), None, ""),
    ("pvc-grow", pvc("2Gi"), pvc("5Gi"), None, ""),
    ("pvc-storage-class", pvc(), pvc(storage_class="gp2"), "immutable-field", "spec.storageClassName changes"),
    ("pvc-data-source-added", pvc(), pvc(dataSource={"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot",
                                                       "name": "restore-snap-1"}),
     "immutable-field", "spec.dataSource changes from (not set)"),
    ("pvc-access-modes", pvc(), with_(pvc(), ("spec", "accessModes"), ["ReadWriteMany"]), "immutable-field",
     "spec.accessModes"),
    ("pvc-volume-name", pvc(), pvc(volumeName="pv-1"), "immutable-field", "spec.volumeName"),
    ("pvc-label-change", pvc(), with_(pvc(), ("metadata", "labels"), {"a": "b"}), None, ""),
    ("sc-provisioner", storage_class(), storage_class(provisioner="k8s.io/minikube-hostpath"), "immutable-field",
     "provisioner changes from ebs.csi.aws.com to k8s.io/minikube-hostpath"),
    ("sc-parameters", storage_class(), storage_class(parameters={"type": "gp3", "encrypted": "false"}),
     "immutable-field", "parameters changes"),
    ("sc-reclaim", storage_class(), storage_class(reclaimPolicy="Retain"), "immutable-field", "reclaimPolicy"),
    ("sc-binding-mode", storage_class(), storage_class(volumeBindingMode="Immediate"), "immutable-field",
     "volumeBindingMode"),
    ("sc-expansion-toggle", storage_class(), storage_class(allowVolumeExpansion=False), None, ""),
    ("deployment-selector", deployment(), deployment({"matchLabels": {"app": "web"}}), "immutable-field",
     "apps/v1 Deployment spec.selector is immutable"),
    ("deployment-image-and-replicas", deployment(), deployment(replicas=3, image="x:2"), None, ""),
    ("statefulset-service-name", statefulset(), statefulset(serviceName="db2"), "immutable-field",
     "spec.serviceName"),
    ("statefulset-claim-templates", statefulset(), statefulset(volumeClaimTemplates=[]), "immutable-field",
     "spec.volumeClaimTemplates"),
    ("statefulset-replicas", statefulset(), statefulset(replicas=3), None, ""),
    ("job-template", job(), job("migrate-again"), "immutable-field", "batch/v1 Job spec.template is immutable"),
    ("service-cluster-ip", service(clusterIP="None"), service(), "immutable-field", "spec.clusterIP changes"),
    ("service-type", service(), service(type="LoadBalancer"), "service-type-change",
     "create a second Service of the new type"),
    ("service-type-default-spelled-out", service(), service(type="ClusterIP"), None, ""),
    ("binding-role-ref", binding(), binding("cluster-admin"), "immutable-field", "roleRef is immutable"),
    ("immutable-config-map", config_map({"A": "1"}, True), config_map({"A": "2"}, True), "immutable-field",
     "immutable: true cannot change its data"),
    ("mutable-config-map", config_map({"A": "1"}), config_map({"A": "2"}), None, ""),
    ("volume-snapshot-source", volume_snapshot(), volume_snapshot("other"), "immutable-field", "spec.source"),
    ("snapshot-content-handle", snapshot_content(), snapshot_content("snap-0fedcba987654321f"), "immutable-field",
     "VolumeSnapshotContent spec.source is immutable"),
]


def run_check(old_docs, new_docs, *, old_path="a.yaml", new_path="a.yaml", extra_new=None, replacements=()):
    base = {old_path: yaml.safe_dump_all(old_docs).encode()}
    new = {new_path: yaml.safe_dump_all(new_docs).encode(), **(extra_new or {})}
    return change_safety_check(changed=sorted({old_path, new_path}), read_new=new.get, read_base=base.get,
                               list_new=lambda folder: sorted(p for p in new if p.startswith(folder)),
                               replacements=replacements)


@pytest.mark.parametrize(("old", "new", "rule", "fragment"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_change_safety_rules(old, new, rule, fragment):
    problems = run_check([old], [new])
    if rule is None:
        assert problems == []
    else:
        assert [p.rule for p in problems] == [rule], problems
        kind, name = new["kind"], new["metadata"]["name"]
        assert f"{kind} " in problems[0].message and name in problems[0].message
        assert fragment in problems[0].message
        assert problems[0].file == "a.yaml"


def test_every_rule_cites_a_kubernetes_field_and_says_what_to_do():
    for rule in RULES:
        assert rule.reference and rule.advice and rule.field
        assert any(api in rule.reference for api in ("v1", "storage.k8s.io", "apps", "batch", "rbac"))


def test_growing_a_volume_needs_a_storage_class_that_allows_expansion():
    minikube_class = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                      "metadata": {"name": "tesslate-block-storage"}, "provisioner": "k8s.io/minikube-hostpath"}
    project = f"environments/minikube/projects/{NS}/storage.yaml"
    classes = {"environments/minikube/platform/storage-class.yaml": yaml.safe_dump(minikube_class).encode(),
               # Another environment's class of the same name (another cluster) is not this volume's class.
               "environments/aws/platform/storage-class.yaml": yaml.safe_dump(storage_class()).encode()}
    problems = run_check([pvc("2Gi")], [pvc("5Gi")], old_path=project, new_path=project, extra_new=classes)
    assert [p.rule for p in problems] == ["pvc-expansion-not-allowed"]
    assert "StorageClass tesslate-block-storage does not set allowVolumeExpansion: true" in problems[0].message
    classes["environments/minikube/platform/storage-class.yaml"] = yaml.safe_dump(storage_class()).encode()
    assert run_check([pvc("2Gi")], [pvc("5Gi")], old_path=project, new_path=project, extra_new=classes) == []


def test_objects_are_matched_by_group_kind_namespace_and_name_even_across_files():
    problems = run_check([pvc("2Gi")], [pvc("1Gi")], old_path="old/storage.yaml", new_path="new/storage.yaml")
    assert [p.rule for p in problems] == ["pvc-shrink"] and problems[0].file == "new/storage.yaml"
    other_namespace = with_(pvc("1Gi"), ("metadata", "namespace"), "proj-other")
    assert run_check([pvc("2Gi")], [other_namespace]) == []  # another object: nothing to compare
    other_group = with_(deployment({"matchLabels": {"a": "b"}}), ("apiVersion",), "example.com/v1")
    assert run_check([deployment()], [other_group]) == []


def test_new_and_deleted_objects_and_confirmed_replacements_pass():
    assert run_check([], [pvc("1Gi")]) == []
    assert run_check([pvc("2Gi")], []) == []
    replacement = ("", "PersistentVolumeClaim", NS, "project-storage")
    assert run_check([pvc("2Gi")], [pvc("1Gi")], replacements=[replacement]) == []


def test_broken_yaml_and_non_objects_are_left_to_the_other_checks():
    base = {"a.yaml": b"- op: add\n  path: /spec/tls\n", "b.yaml": b"kind: [\n"}
    new = {"a.yaml": b"- op: remove\n  path: /spec/tls\n", "b.yaml": b"kind: ]\n"}
    assert change_safety_check(changed=["a.yaml", "b.yaml"], read_new=new.get, read_base=base.get) == []


@pytest.mark.parametrize(("text", "value"), [("1Gi", 2 ** 30), ("1024Mi", 2 ** 30), ("500m", 0.5), ("1e3", 1000),
                                             ("2", 2), ("1.5G", 1.5e9), ("x", None), ("１Gi", None)])
def test_quantity_value(text, value):
    result = quantity_value(text)
    assert (result is None) if value is None else float(result) == pytest.approx(value)


# --- the gate on a real tree -----------------------------------------------------------------------------------------

def _project(root: Path, env: str, namespace: str, host: str, size: str = "2Gi") -> None:
    folder = root / "environments" / env / "projects" / namespace
    folder.mkdir(parents=True)
    (folder / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- storage.yaml\n- web.yaml\n")
    (folder / "storage.yaml").write_text(yaml.safe_dump(with_(pvc(size), ("metadata", "namespace"), namespace)))
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": "dev-web", "namespace": namespace},
               "spec": {"ingressClassName": "nginx", "rules": [{"host": host, "http": {"paths": [{
                   "path": "/", "pathType": "Prefix",
                   "backend": {"service": {"name": "dev-web", "port": {"number": 80}}}}]}}]}}
    (folder / "web.yaml").write_text(yaml.safe_dump(ingress))


def _index(root: Path, env: str) -> None:
    folder = root / "environments" / env / "projects"
    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    (folder / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
        + "".join(f"- {name}\n" for name in names))


@pytest.fixture
def small_tree(tmp_path) -> Path:
    root = tmp_path / "gitops"
    for n, host in enumerate(["shop-api-v2.studio.example.com", "blog-web.studio.example.com"]):
        _project(root, "aws", f"proj-0000000{n}-0000-4000-8000-000000000000", host)
    _project(root, "other", "proj-00000009-0000-4000-8000-000000000000", "shop-api-v2.studio.example.com")
    _index(root, "aws")
    _index(root, "other")
    return root


def test_the_gate_refuses_two_ingresses_with_one_host_in_an_environment(small_tree):
    assert tree_validate(root=small_tree, crd_dir="") == []  # the same host in another environment is fine
    clash = "proj-00000002-0000-4000-8000-000000000000"
    _project(small_tree, "aws", clash, "shop-api-v2.studio.example.com")
    _index(small_tree, "aws")
    for paths in (None, [f"environments/aws/projects/{clash}", "environments/aws/projects/kustomization.yaml"]):
        problems = tree_validate(root=small_tree, crd_dir="", paths=paths)
        assert [p.rule for p in problems] == ["ingress-host-duplicate"], (paths, problems)
        message = problems[0].message
        assert "host shop-api-v2.studio.example.com is claimed by 2 Ingresses in environment aws" in message
        assert "proj-00000000-0000-4000-8000-000000000000/dev-web" in message and f"{clash}/dev-web" in message


def test_the_gate_compares_with_head_when_given_read_base(small_tree):
    path = "environments/aws/projects/proj-00000000-0000-4000-8000-000000000000/storage.yaml"
    head = {path: (small_tree / path).read_bytes()}
    (small_tree / path).write_text((small_tree / path).read_text().replace("2Gi", "1Gi"))
    problems = tree_validate(root=small_tree, crd_dir="", paths=[path], read_base=head.get)
    assert [(p.file, p.rule) for p in problems] == [(path, "pvc-shrink")]
    assert "PersistentVolumeClaim proj-00000000-0000-4000-8000-000000000000/project-storage" in problems[0].message
    # Without read_base (a first render, a preview) the check is skipped; growing on an expandable class passes.
    assert tree_validate(root=small_tree, crd_dir="", paths=[path]) == []
    (small_tree / path).write_text((small_tree / path).read_text().replace("1Gi", "3Gi"))
    assert tree_validate(root=small_tree, crd_dir="", paths=[path], read_base=head.get) == []


# --- the same rules in the model layer (admin, ORM with full_clean, services) -------------------------------------

@pytest.mark.django_db
def test_a_project_volume_cannot_shrink_nor_grow_without_expansion():
    from tests.factories import eks_environment_factory, environment_factory, field_errors, project_factory

    project = project_factory(eks_environment_factory(), volume_size="2Gi")
    project.volume_size = "1Gi"  # the issue's example
    errors = field_errors(project)
    assert errors["volume_size"] == [
        "The project volume cannot shrink from 2Gi to 1Gi: Kubernetes refuses to shrink a PersistentVolumeClaim "
        "(spec.resources.requests.storage). Keep 2Gi, or create a new volume and restore the data from a snapshot, "
        "then switch the workload to it (an explicit, confirmed replacement)."]
    project.volume_size = "3Gi"  # EBS gp3 allows expansion
    project.full_clean()
    minikube = project_factory(environment_factory(), volume_size="2Gi")
    minikube.volume_size = "3Gi"
    assert "does not allow volume expansion" in field_errors(minikube)["volume_size"][0]
    minikube.state = "hibernated"  # Minikube hibernation only stops the project: the volume stays
    assert "does not allow volume expansion" in field_errors(minikube)["volume_size"][0]
    minikube.state = "deleted"  # no volume in the cluster any more
    minikube.full_clean()


@pytest.mark.django_db
def test_a_service_volume_cannot_shrink():
    from tests.factories import container_factory, eks_environment_factory, field_errors, project_factory

    project = project_factory(eks_environment_factory(), containers=())
    database = container_factory(project, directory="db", role="database", image="postgres:16-alpine",
                                 data_volume_size="2Gi")
    database.data_volume_size = "1Gi"
    assert "The volume svc-db-data cannot shrink from 2Gi to 1Gi" in field_errors(database)["data_volume_size"][0]


@pytest.mark.django_db
def test_the_storage_class_of_an_environment_with_volumes_cannot_change():
    from tests.factories import eks_environment_factory, field_errors, project_factory

    environment = eks_environment_factory()
    environment.storage_encrypted = False
    environment.full_clean()  # no volumes yet
    environment.storage_encrypted = True
    project_factory(environment)
    environment.storage_class_name = "gp3-new"
    environment.storage_encrypted = False
    errors = field_errors(environment)
    assert "1 project volume(s)" in errors["storage_class_name"][0]
    assert "spec.storageClassName" in errors["storage_encrypted"][0]


def test_the_model_knows_which_rendered_storage_class_allows_expansion():
    from deployments.models import Environment
    from deployments.rendering.templating import render_template

    for provisioner, ebs in (("ebs-gp3", True), ("minikube-hostpath", False)):
        text = render_template("overlay/storage-class.yaml.j2", {"name": "c", "ebs": ebs, "encrypted": "true"})
        allowed = yaml.safe_load(text).get("allowVolumeExpansion") is True
        assert Environment(storage_provisioner=provisioner).volume_expansion_allowed is allowed
