"""The validation gate (deployments/validation/) on small hand-written trees (tests/fixtures/validation/).

Everything is real: `kubectl kustomize`, kubernetes-validate's schemas and the upstream CRDs that the test plugin
points settings.CRD_SCHEMA_DIR at (tests that need them skip, saying so, where that folder is absent).
"""

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from deployments.validation import TreeValidationError, ValidationProblem, tree_validate, tree_validate_or_raise

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "validation"
REAL_KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"

P1 = "proj-3f0c1a52-6b1e-4c1f-9a55-0d2b7f4e8a10"
P2 = "proj-8d2e4b61-0a7c-4e3d-b1f2-5c6a7d8e9f01"
P3 = "proj-c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"
MINIKUBE_PROJECTS = "environments/minikube/projects"
AWS_PLATFORM = "environments/aws-production/platform"
AWS_PROJECT = f"environments/aws-production/projects/{P3}"
# Objects in the fixture tree: platform base (4) in two overlays, StorageClass, 2 projects × 4, aws platform
# custom resources (6), restored project (4), Flux entry point (3), Argo CD entry point (3).
FIXTURE_OBJECTS = 33


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "gitops"
    shutil.copytree(FIXTURES / "tree", root)
    return root


@pytest.fixture
def crds(settings) -> Path:
    folder = settings.CRD_SCHEMA_DIR
    if not folder or not Path(folder).is_dir():
        pytest.skip(f"the upstream CRD schemas folder is absent (CRD_SCHEMA_DIR={folder!r}); CRD checks cannot run")
    return Path(folder)


@pytest.fixture
def widget_crds(tmp_path) -> Path:
    """A CRD folder holding only the hand-written Widget CRD (needs no upstream files)."""
    folder = tmp_path / "crds"
    folder.mkdir()
    shutil.copy(FIXTURES / "crds" / "example.com_widgets.yaml", folder)
    return folder


class CountingKubectl:
    """A kubectl wrapper that logs each call's arguments, then runs the real kubectl."""

    def __init__(self, folder: Path) -> None:
        self.log = folder / "kubectl-calls"
        self.path = folder / "kubectl-counting"
        self.path.write_text(f'#!/bin/sh\necho "$@" >> "{self.log}"\nexec "{REAL_KUBECTL}" "$@"\n')
        self.path.chmod(0o755)

    def targets(self) -> list[str]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [line.split(" ", 1)[1] for line in lines]


@pytest.fixture
def counting_kubectl(tmp_path) -> CountingKubectl:
    return CountingKubectl(tmp_path)


def edit(root: Path, path: str, old: str, new: str) -> None:
    file = root / path
    text = file.read_text()
    assert old in text, f"{old!r} not in {path}"
    file.write_text(text.replace(old, new, 1))


def write(root: Path, path: str, text: str) -> None:
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)


def validate(root: Path, **kwargs) -> tuple[list[ValidationProblem], list[str]]:
    messages: list[str] = []
    kwargs.setdefault("kubectl", REAL_KUBECTL)
    problems = tree_validate(root=root, progress=messages.append, **kwargs)
    return problems, messages


def checked_count(messages: list[str]) -> int:
    found = [re.search(r"Validated (\d+) object", message) for message in messages]
    return int([match for match in found if match][-1].group(1))


# --- a valid tree ---------------------------------------------------------------------------------------------


def test_the_valid_fixture_tree_passes_with_every_object_checked(tree, crds, settings, counting_kubectl):
    settings.KUBECTL = str(counting_kubectl.path)  # defaults come from settings: KUBECTL, CRD_SCHEMA_DIR, version
    messages: list[str] = []

    assert tree_validate(root=tree, progress=messages.append) == []
    tree_validate_or_raise(root=tree)

    assert checked_count(messages) == FIXTURE_OBJECTS
    assert not any("not checked" in message for message in messages)
    # Only the five top-level roots are built; platform/base and the projects are covered through them.
    assert len(counting_kubectl.targets()) == 2 * 5


# --- kustomize builds -----------------------------------------------------------------------------------------


def test_a_missing_resource_is_a_build_problem_naming_the_root(tree, crds):
    (tree / "platform/base/configmap.yaml").unlink()

    problems, _ = validate(tree)

    assert {(p.file, p.rule) for p in problems} == {
        ("environments/minikube/platform/kustomization.yaml", "kustomize-build"),
        (f"{AWS_PLATFORM}/kustomization.yaml", "kustomize-build"),
    }
    for problem in problems:
        assert "configmap.yaml" in problem.message
        assert problem.message.startswith(f"kustomize build of {problem.file.rsplit('/', 1)[0]}/ failed")
        assert str(tree) not in problem.message and str(tree.resolve()) not in problem.message


def test_a_broken_project_names_its_folder_and_the_other_projects_are_still_checked(tree, crds):
    (tree / MINIKUBE_PROJECTS / P2 / "network-policy.yaml").unlink()
    edit(tree, f"{MINIKUBE_PROJECTS}/{P1}/file-manager.yaml", "replicas: 1", "replicas: one")

    problems, _ = validate(tree)

    build = [p for p in problems if p.rule == "kustomize-build"]
    assert len(build) == 1
    assert build[0].file == f"{MINIKUBE_PROJECTS}/kustomization.yaml"
    assert f"in {MINIKUBE_PROJECTS}/{P2}/" in build[0].message and "network-policy.yaml" in build[0].message
    assert str(tree.resolve()) not in build[0].message
    schema = [p for p in problems if p.rule == "kubernetes-schema"]
    assert [(p.file, p.message) for p in schema] == [(
        f"{MINIKUBE_PROJECTS}/{P1}/file-manager.yaml",
        f"apps/v1 Deployment {P1}/file-manager: spec.replicas: expected integer, got string \"one\"",
    )]


def test_an_object_defined_twice_across_aggregated_folders_fails_like_kustomize(tree, crds):
    storage_class = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: shared\nprovisioner: x\n"
    for project in (P1, P2):
        write(tree, f"{MINIKUBE_PROJECTS}/{project}/storageclass.yaml", storage_class)
        edit(tree, f"{MINIKUBE_PROJECTS}/{project}/kustomization.yaml", "- namespace.yaml",
             "- namespace.yaml\n- storageclass.yaml")
    # kustomize itself refuses the aggregate: the gate's chunked build must not let it through.
    whole = subprocess.run([REAL_KUBECTL, "kustomize", str(tree / MINIKUBE_PROJECTS)], capture_output=True, text=True,
                           check=False)
    assert whole.returncode != 0 and "already registered id" in whole.stderr

    problems, _ = validate(tree)

    assert len(problems) == 1
    assert problems[0].rule == "kustomize-build"
    assert problems[0].file.startswith(MINIKUBE_PROJECTS) and problems[0].file.endswith("storageclass.yaml")
    assert "StorageClass shared is defined more than once" in problems[0].message


def test_a_big_aggregate_is_built_in_chunks_and_still_checked_completely(tmp_path, counting_kubectl):
    root = tmp_path / "gitops"
    projects = [f"proj-{index:04d}" for index in range(150)]
    for project in projects:
        write(root, f"projects/{project}/kustomization.yaml", f"namespace: {project}\nresources:\n- objects.yaml\n")
        write(root, f"projects/{project}/objects.yaml", "\n---\n".join(
            f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-{n}\ndata:\n  key: value\n"
            for n in range(4)))
    write(root, "projects/kustomization.yaml", "resources:\n" + "".join(f"- {p}\n" for p in projects))
    edit(root, "projects/proj-0149/objects.yaml", "  key: value\n", "  key: 7\n")

    problems, messages = validate(root, kubectl=str(counting_kubectl.path), crd_dir="")

    assert [(p.file, p.rule, p.message) for p in problems] == [(
        "projects/proj-0149/objects.yaml", "kubernetes-schema",
        "v1 ConfigMap proj-0149/settings-0: data.key: expected string, got integer 7")]
    assert checked_count(messages) == 600
    targets = counting_kubectl.targets()
    assert 2 <= len(targets) <= 3  # 150 folders: chunks of at most 100 folders / ~500 objects, not 150 builds
    assert all(not target.startswith(str(root)) for target in targets)  # scratch kustomizations, outside the tree


# --- built-in kinds -------------------------------------------------------------------------------------------


def test_an_unknown_field_in_a_deployment_names_the_file_and_the_field_path(tree, crds):
    edit(tree, "platform/base/backend.yaml", "        image: tesslate-backend:latest\n",
         "        image: tesslate-backend:latest\n        imagePullPolicyy: Always\n")

    problems, _ = validate(tree)

    # Built in both overlays, reported once: same file, same object, same field.
    assert problems == [ValidationProblem(
        "platform/base/backend.yaml", "kubernetes-schema",
        "apps/v1 Deployment tesslate/tesslate-backend: spec.template.spec.containers[0].imagePullPolicyy: "
        "unknown field (not in the schema)")]


def test_the_source_file_follows_the_namespace_the_kustomization_sets(tree, crds):
    # Both projects define Deployment file-manager; only the namespace tells them apart.
    edit(tree, f"{MINIKUBE_PROJECTS}/{P2}/file-manager.yaml", "claimName: project-storage", "claimName: 42")

    problems, _ = validate(tree)

    assert [(p.file, p.rule) for p in problems] == [(f"{MINIKUBE_PROJECTS}/{P2}/file-manager.yaml",
                                                     "kubernetes-schema")]
    assert f"Deployment {P2}/file-manager: spec.template.spec.volumes[0].persistentVolumeClaim.claimName: " \
           "expected string" in problems[0].message


def test_generated_and_prefixed_objects_map_to_their_kustomization(tmp_path):
    root = tmp_path / "gitops"
    write(root, "app/kustomization.yaml", "namespace: demo\nnamePrefix: web-\nresources:\n- service.yaml\n"
                                          "configMapGenerator:\n- name: settings\n  literals: [MODE=x]\n")
    write(root, "app/service.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: api\nspec:\n"
                                    "  ports:\n  - port: http\n")
    write(root, "overlay/kustomization.yaml", "resources:\n- ../app\nnameSuffix: -x\n")

    problems, _ = validate(root, crd_dir="")

    # Only the overlay is built (it includes app/); its Service is named web-api-x and comes from app/service.yaml.
    assert [(p.file, p.message) for p in problems] == [
        ("app/service.yaml", "v1 Service demo/web-api-x: spec.ports[0].port: expected integer, got string \"http\""),
    ]


def test_a_secret_value_is_never_echoed(tmp_path):
    root = tmp_path / "gitops"
    write(root, "kustomization.yaml", "resources:\n- secret.yaml\n")
    write(root, "secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\nstringData:\n"
                               "  PASSWORD: 12345678987654321\n")

    problems, _ = validate(root, crd_dir="")

    assert [(p.file, p.rule, p.message) for p in problems] == [
        ("secret.yaml", "kubernetes-schema", "v1 Secret app: stringData.PASSWORD: expected string, got integer")]


def test_removed_api_versions_and_unknown_kinds_are_problems(tree, crds):
    write(tree, f"{AWS_PROJECT}/extra.yaml",
          "apiVersion: apps/v1beta1\nkind: Deployment\nmetadata:\n  name: old\n---\n"
          "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: gadget\n")
    edit(tree, f"{AWS_PROJECT}/kustomization.yaml", "- restore.yaml", "- restore.yaml\n- extra.yaml")

    problems, _ = validate(tree)

    assert [(p.file, p.rule, p.message) for p in problems] == [
        (f"{AWS_PROJECT}/extra.yaml", "unknown-kind",
         f"apps/v1beta1 Deployment {P3}/old: not a kind of Kubernetes 1.32 (it has apps/v1)"),
        (f"{AWS_PROJECT}/extra.yaml", "unknown-kind",
         f"example.com/v1 Widget {P3}/gadget: neither a built-in kind of Kubernetes 1.32 nor defined by a known CRD"),
    ]


def test_an_unsupported_kubernetes_version_is_refused(tree):
    with pytest.raises(ValueError, match="no schemas for Kubernetes 1.99"):
        tree_validate(root=tree, kubernetes_version="1.99", crd_dir="")


def test_a_missing_kubectl_or_tree_is_an_error_not_a_pass(tree):
    with pytest.raises(FileNotFoundError, match="kubectl not found"):
        tree_validate(root=tree, kubectl=str(tree / "no-such-kubectl"), crd_dir="")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tree_validate(root=tree / "no-such-folder", kubectl=REAL_KUBECTL, crd_dir="")


# --- custom resources (upstream CRDs) -------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "old", "new", "expected"), [
    pytest.param("clusters/aws-production/platform.yaml", "      prune: true", "      prune: \"yes\"",
                 "argoproj.io/v1alpha1 Application argocd/platform: spec.syncPolicy.automated.prune: expected "
                 "boolean, got string \"yes\"", id="argocd-application"),
    pytest.param("clusters/aws-production/projects.yaml", "      revision: main", "      revision: [main]",
                 "argoproj.io/v1alpha1 ApplicationSet argocd/projects: spec.generators[0].git.revision: expected "
                 "string, got array", id="argocd-applicationset"),
    pytest.param(f"{AWS_PLATFORM}/secrets.yaml", "refreshInterval: 1h", "refreshInterval: 60",
                 "external-secrets.io/v1 ExternalSecret tesslate/tesslate-app-secrets: spec.refreshInterval: "
                 "expected string, got integer 60", id="externalsecret"),
    pytest.param(f"{AWS_PLATFORM}/secrets.yaml", "service: SecretsManager", "service: Vault",
                 "external-secrets.io/v1 SecretStore tesslate/aws-secrets-manager: spec.provider.aws.service: must "
                 "be one of \"SecretsManager\", \"ParameterStore\", \"CertificateManager\"; got string \"Vault\"",
                 id="secretstore"),
    pytest.param(f"{AWS_PROJECT}/restore.yaml", "snapshotHandle: snap-0123456789abcdef0", "snapshotHandle: 12",
                 # kustomize sets the namespace on custom resources even when cluster-scoped (the API server drops it).
                 f"snapshot.storage.k8s.io/v1 VolumeSnapshotContent {P3}/restore-c1d2e3f4-20250101-120000: "
                 "spec.source.snapshotHandle: expected string, got integer 12", id="volumesnapshotcontent"),
    pytest.param(f"{AWS_PROJECT}/restore.yaml", "volumeSnapshotContentName: restore", "volumeSnapshotContentNam: r",
                 f"snapshot.storage.k8s.io/v1 VolumeSnapshot {P3}/snap-c1d2e3f4-20250101-120000: "
                 "spec.source.volumeSnapshotContentNam: unknown field (not in the schema)", id="volumesnapshot"),
    pytest.param(f"{AWS_PLATFORM}/snapshots.yaml", "deletionPolicy: Retain", "deletionPolicy: Keep",
                 "snapshot.storage.k8s.io/v1 VolumeSnapshotClass tesslate/tesslate-ebs-snapshots: deletionPolicy: "
                 "must be one of \"Delete\", \"Retain\"; got string \"Keep\"", id="volumesnapshotclass"),
    pytest.param(f"{AWS_PLATFORM}/tls.yaml", "  - \"*.studio.example.com\"", "    wildcard: true",
                 "cert-manager.io/v1 Certificate tesslate/tesslate-wildcard-tls: spec.dnsNames: expected array, "
                 "got object", id="certificate"),
    pytest.param(f"{AWS_PLATFORM}/tls.yaml", "email: platform@example.com", "emails: platform@example.com",
                 "cert-manager.io/v1 ClusterIssuer tesslate/letsencrypt-dns01: spec.acme.emails: unknown field "
                 "(not in the schema)", id="clusterissuer"),
    pytest.param(f"{AWS_PLATFORM}/secrets.yaml", "encryptedData:", "encryptedDatas:",
                 "bitnami.com/v1alpha1 SealedSecret tesslate/postgres-secret: spec.encryptedDatas: unknown field "
                 "(not in the schema)", id="sealedsecret"),
    pytest.param("clusters/minikube/platform.yaml", "  prune: true", "  prune: \"true\"",
                 "kustomize.toolkit.fluxcd.io/v1 Kustomization flux-system/platform: spec.prune: expected boolean, "
                 "got string \"true\"", id="flux-kustomization"),
    pytest.param("clusters/minikube/source.yaml", "  interval: 1m", "  intervals: 1m",
                 "source.toolkit.fluxcd.io/v1 GitRepository flux-system/tesslate-gitops: spec.interval: required "
                 "field is missing", id="flux-gitrepository"),
])
def test_a_wrong_field_in_a_custom_resource_names_file_and_path(tree, crds, path, old, new, expected):
    edit(tree, path, old, new)

    problems, _ = validate(tree)

    assert problems, "the broken custom resource passed"
    assert {p.file for p in problems} == {path}
    assert {p.rule for p in problems} == {"crd-schema"}
    assert expected in [p.message for p in problems]


def test_a_v1beta1_external_secret_is_a_version_not_served(tree, crds):
    edit(tree, f"{AWS_PLATFORM}/secrets.yaml", "apiVersion: external-secrets.io/v1\nkind: ExternalSecret",
         "apiVersion: external-secrets.io/v1beta1\nkind: ExternalSecret")

    problems, _ = validate(tree)

    assert [(p.file, p.rule) for p in problems] == [(f"{AWS_PLATFORM}/secrets.yaml", "crd-version")]
    assert "ExternalSecret tesslate/tesslate-app-secrets: version not served" in problems[0].message
    assert "served: external-secrets.io/v1" in problems[0].message


def test_an_old_flux_api_version_is_not_defined_by_the_crd(tree, crds):
    edit(tree, "clusters/minikube/source.yaml", "source.toolkit.fluxcd.io/v1", "source.toolkit.fluxcd.io/v1beta2")

    problems, _ = validate(tree)

    assert [(p.file, p.rule) for p in problems] == [("clusters/minikube/source.yaml", "crd-version")]
    assert "source.toolkit.fluxcd.io/v1beta2 is not defined by CRD gitrepositories.source.toolkit.fluxcd.io" \
        in problems[0].message


def test_without_crds_custom_resources_are_skipped_and_said_so(tree, tmp_path):
    edit(tree, f"{AWS_PLATFORM}/secrets.yaml", "refreshInterval: 1h", "refreshInterval: 60")
    edit(tree, "platform/base/configmap.yaml", "DEPLOYMENT_MODE: kubernetes", "DEPLOYMENT_MODE: [kubernetes]")

    for crd_dir in ("", tmp_path / "no-such-folder"):
        problems, messages = validate(tree, crd_dir=crd_dir)

        assert {(p.file, p.rule) for p in problems} == {("platform/base/configmap.yaml", "kubernetes-schema")}
        assert any(message.startswith("Custom resources are not checked") for message in messages)
        assert any("14 custom resource(s) not checked" in message for message in messages)


# --- custom resources: how OpenAPI v3 schemas are read (hand-written CRD) ---------------------------------------

WIDGET_OK = """apiVersion: example.com/v1
kind: Widget
metadata:
  name: ok
  labels: {team: platform}
spec:
  port: 80
  replicas: 1
  note: null
  config:
    mode: fast
    anything: {nested: [1, 2, 3]}
  labels: {a: b}
  template:
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: embedded}
    data: {x: y}
---
apiVersion: example.com/v1
kind: Widget
metadata:
  name: named-port
spec:
  port: http
"""


def widget_tree(root: Path, extra: str = "") -> Path:
    write(root, "kustomization.yaml", "namespace: widgets\nresources:\n- widgets.yaml\n")
    write(root, "widgets.yaml", WIDGET_OK + extra)
    return root


def test_openapi_extensions_are_read_like_the_api_server(tmp_path, widget_crds):
    root = widget_tree(tmp_path / "gitops")

    problems, messages = validate(root, crd_dir=widget_crds)

    assert problems == []
    assert checked_count(messages) == 2


@pytest.mark.parametrize(("spec", "expected"), [
    ("  port: [80]\n", "spec.port: expected integer or string, got array"),
    ("  port: 80\n  replicas: 0\n", "spec.replicas: 0 is less than or equal to the minimum of 0"),
    ("  port: 80\n  note: 5\n", "spec.note: expected string, got integer 5"),
    ("  port: 80\n  colour: red\n", "spec.colour: unknown field (not in the schema)"),
    ("  port: 80\n  config: {mode: 5}\n", "spec.config.mode: expected string, got integer 5"),
    ("  port: 80\n  labels: {a: 1}\n", "spec.labels.a: expected string, got integer 1"),
    ("  replicas: 2\n", "spec.port: required field is missing"),
])
def test_openapi_schema_problems(tmp_path, widget_crds, spec, expected):
    root = widget_tree(tmp_path / "gitops", f"---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n"
                                            f"  name: bad\nspec:\n{spec}")

    problems, _ = validate(root, crd_dir=widget_crds)

    assert [(p.file, p.rule, p.message) for p in problems] == [
        ("widgets.yaml", "crd-schema", f"example.com/v1 Widget widgets/bad: {expected}")]


def test_custom_resource_metadata_is_checked_as_object_meta(tmp_path, widget_crds):
    root = widget_tree(tmp_path / "gitops", "---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n"
                                            "  name: bad\n  labelz: {a: b}\nspec:\n  port: 1\n")

    problems, _ = validate(root, crd_dir=widget_crds)

    assert [p.message for p in problems] == [
        "example.com/v1 Widget widgets/bad: metadata.labelz: unknown field (not in the schema)"]


def test_unserved_and_undefined_versions_of_a_crd(tmp_path, widget_crds):
    root = widget_tree(tmp_path / "gitops", "---\napiVersion: example.com/v1alpha1\nkind: Widget\nmetadata:\n"
                                            "  name: old\n---\napiVersion: example.com/v2\nkind: Widget\n"
                                            "metadata:\n  name: future\n")

    problems, _ = validate(root, crd_dir=widget_crds)

    assert [(p.rule, p.message.split(" by CRD")[0]) for p in problems] == [
        ("crd-version", ("example.com/v1alpha1 Widget widgets/old: version not served: example.com/v1alpha1 is "
                         "deprecated and not served")),
        ("crd-version", "example.com/v2 Widget widgets/future: version not served: example.com/v2 is not defined"),
    ]


def test_a_crd_shipped_in_the_tree_makes_its_kind_known(tmp_path, widget_crds):
    root = tmp_path / "gitops"
    crd = (FIXTURES / "crds" / "example.com_widgets.yaml").read_text()
    write(root, "crds/kustomization.yaml", "resources:\n- gadgets.yaml\n")
    write(root, "crds/gadgets.yaml", crd.replace("widgets", "gadgets").replace("Widget", "Gadget")
          .replace("widget", "gadget"))
    write(root, "apps/kustomization.yaml", "namespace: apps\nresources:\n- gadgets.yaml\n")
    write(root, "apps/gadgets.yaml", "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: good\nspec:\n"
                                     "  port: 1\n---\napiVersion: example.com/v1\nkind: Gadget\nmetadata:\n"
                                     "  name: bad\nspec:\n  port: 1\n  colour: red\n")

    problems, _ = validate(root, crd_dir=widget_crds)

    assert [(p.file, p.rule, p.message) for p in problems] == [
        ("apps/gadgets.yaml", "crd-schema",
         "example.com/v1 Gadget apps/bad: spec.colour: unknown field (not in the schema)"),
    ]


# --- paths= ---------------------------------------------------------------------------------------------------


def test_paths_limit_the_builds_to_the_affected_roots(tree, crds, counting_kubectl):
    (tree / "platform/base/configmap.yaml").unlink()  # broken, but untouched by the change below
    edit(tree, f"{MINIKUBE_PROJECTS}/{P1}/file-manager.yaml", "replicas: 1", "replicas: one")

    problems, messages = validate(tree, kubectl=str(counting_kubectl.path),
                                  paths=[f"{MINIKUBE_PROJECTS}/{P1}/file-manager.yaml"])

    # Of the minikube projects aggregate only the changed project was built: one kubectl call, P1's 4 objects
    # (P2, unchanged, is not rebuilt).
    assert len(counting_kubectl.targets()) == 1
    assert checked_count(messages) == 4
    assert [(p.file, p.rule) for p in problems] == [(f"{MINIKUBE_PROJECTS}/{P1}/file-manager.yaml",
                                                     "kubernetes-schema")]

    problems, _ = validate(tree, kubectl=str(counting_kubectl.path))  # the whole tree finds the broken base too
    assert {p.rule for p in problems} == {"kubernetes-schema", "kustomize-build"}


def test_a_change_in_an_included_folder_builds_every_root_that_includes_it(tree, crds, counting_kubectl):
    problems, messages = validate(tree, kubectl=str(counting_kubectl.path),
                                  paths=["platform/base/configmap.yaml", "README.md"])

    assert problems == []
    built = {str(Path(target).resolve()) for target in counting_kubectl.targets()}
    assert built == {str((tree / "environments/minikube/platform").resolve()), str((tree / AWS_PLATFORM).resolve())}
    assert checked_count(messages) == 4 + 1 + 4 + 6


def test_paths_reach_plain_folders_and_deleted_or_absolute_paths(tree, crds, counting_kubectl):
    edit(tree, "clusters/aws-production/platform.yaml", "project: tesslate", "project: [tesslate]")

    problems, _ = validate(tree, kubectl=str(counting_kubectl.path), paths=[tree / "clusters/aws-production"])
    assert [(p.file, p.rule) for p in problems] == [("clusters/aws-production/platform.yaml", "crd-schema")]
    assert counting_kubectl.targets() == []  # a plain folder needs no build

    # A deleted project folder: the aggregate no longer lists it and its other folders did not change, so
    # nothing needs a build...
    shutil.rmtree(tree / MINIKUBE_PROJECTS / P2)
    edit(tree, f"{MINIKUBE_PROJECTS}/kustomization.yaml", f"- {P2}\n", "")
    deleted = [f"{MINIKUBE_PROJECTS}/{P2}/namespace.yaml", f"{MINIKUBE_PROJECTS}/kustomization.yaml"]
    problems, messages = validate(tree, kubectl=str(counting_kubectl.path), paths=deleted)
    assert problems == []
    assert checked_count(messages) == 0
    # ...but an aggregate that still lists the deleted folder is built, and fails.
    edit(tree, f"{MINIKUBE_PROJECTS}/kustomization.yaml", f"- {P1}\n", f"- {P1}\n- {P2}\n")
    problems, _ = validate(tree, kubectl=str(counting_kubectl.path), paths=deleted)
    assert [(p.file, p.rule) for p in problems] == [(f"{MINIKUBE_PROJECTS}/kustomization.yaml", "kustomize-build")]

    assert validate(tree, paths=[])[0] == []


# --- YAML and the exception -----------------------------------------------------------------------------------


def test_broken_yaml_in_a_plain_folder_is_a_problem_without_its_text(tree, crds):
    write(tree, "clusters/aws-production/broken.yaml",
          "apiVersion: v1\nkind: Secret\nstringData:\n  password: hunter2-do-not-print\n  other: [unclosed\n")

    problems, _ = validate(tree)

    assert [(p.file, p.rule) for p in problems] == [("clusters/aws-production/broken.yaml", "yaml")]
    assert problems[0].message.startswith("not valid YAML at line ")
    assert "hunter2" not in problems[0].message


def test_tree_validate_or_raise_carries_the_problems(tree, crds):
    for project in (P1, P2):
        edit(tree, f"{MINIKUBE_PROJECTS}/{project}/storage.yaml", "storage: 5Gi", "storage: {size: 5Gi}")

    with pytest.raises(TreeValidationError) as caught:
        tree_validate_or_raise(root=tree, kubectl=REAL_KUBECTL)

    problems = caught.value.problems
    assert [p.file for p in problems] == [f"{MINIKUBE_PROJECTS}/{P1}/storage.yaml",
                                          f"{MINIKUBE_PROJECTS}/{P2}/storage.yaml"]
    text = str(caught.value)
    assert text.startswith("2 validation problems in the GitOps tree:")
    assert (f"{MINIKUBE_PROJECTS}/{P2}/storage.yaml: [kubernetes-schema] v1 PersistentVolumeClaim "
            f"{P2}/project-storage: spec.resources.requests.storage: expected string or number, got object") in text


# --- scale ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_twenty_thousand_objects_validate_in_seconds(tmp_path, capsys):
    """2,000 project folders × 10 objects under one aggregate; prints the timings (they are not asserted)."""
    root = tmp_path / "gitops"
    folders = [f"proj-{index:05d}" for index in range(2000)]
    deployment = (FIXTURES / "tree" / MINIKUBE_PROJECTS / P1 / "file-manager.yaml").read_text()
    config_maps = "\n---\n".join(f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{n}\ndata:\n  k: v\n"
                                 for n in range(9))
    for folder in folders:
        write(root, f"projects/{folder}/kustomization.yaml", f"namespace: {folder}\nresources:\n- objects.yaml\n")
        write(root, f"projects/{folder}/objects.yaml", f"{deployment}---\n{config_maps}")
    write(root, "projects/kustomization.yaml", "resources:\n" + "".join(f"- {folder}\n" for folder in folders))
    broken = {"proj-00007": ("replicas: 1", "replicas: []"), "proj-01234": ("k: v", "k: 1"),
              "proj-01999": ("claimName: project-storage", "claimName: project-storage\n          claimNames: x")}
    for folder, (old, new) in broken.items():
        edit(root, f"projects/{folder}/objects.yaml", old, new)

    started = time.monotonic()
    problems, messages = validate(root, crd_dir="")
    elapsed = time.monotonic() - started

    assert checked_count(messages) == 20_000
    assert [(p.file, p.message.split(": ", 1)[1]) for p in problems] == [
        ("projects/proj-00007/objects.yaml", "spec.replicas: expected integer, got array"),
        ("projects/proj-01234/objects.yaml", "data.k: expected string, got integer 1"),
        ("projects/proj-01999/objects.yaml",
         "spec.template.spec.volumes[0].persistentVolumeClaim.claimNames: unknown field (not in the schema)"),
    ]
    with capsys.disabled():
        print(f"\n20,000 objects (2,000 folders): {elapsed:.1f} s for builds and schema checks; "
              + "; ".join(m for m in messages if m.startswith(("Building", "Validated"))))
