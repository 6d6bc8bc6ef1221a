"""Equivalence classes of kustomization folders (deployments/validation/classes.py and their use in gate.py).

Real ``kubectl kustomize`` through a counting wrapper: the tests assert which folders were built, not time.
"""

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deployments.validation import tree_validate
from deployments.validation.classes import Refused, folder_shape
from deployments.validation.kustomize import tree_scan
from tests.deployments.validation.test_gate import (
    FIXTURES,
    REAL_KUBECTL,
    CountingKubectl,
    checked_count,
    write,
)

REPO = Path(__file__).resolve().parents[3]
KUSTOMIZATION = """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- namespace.yaml
- app.yaml
images:
- name: devserver
  newName: registry.example.com/devserver
  newTag: production
"""


def project_files(name: str, *, port: int = 8000, protocol: str = "TCP", replicas: str = "1",
                  widget_replicas: int = 3) -> dict[str, str]:
    return {
        "kustomization.yaml": KUSTOMIZATION,
        "namespace.yaml": f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n"
                          f"    tesslate.io/project: \"{name}\"\n",
        "app.yaml": f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: devserver:latest
        ports:
        - containerPort: {port}
          protocol: {protocol}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {name}
spec:
  selector:
    app: web
  ports:
  - port: {port}
    targetPort: {port}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: isolation
  namespace: {name}
spec:
  podSelector: {{}}
  policyTypes:
  - Ingress
---
apiVersion: example.com/v1
kind: Widget
metadata:
  name: gadget
  namespace: {name}
spec:
  port: {port}
  replicas: {widget_replicas}
""",
    }


def make_tree(root: Path, count: int, folder: str = "projects", **overrides) -> list[str]:
    """``count`` project folders under ``folder`` (one pure aggregate); ``overrides`` maps a project index to
    project_files keyword arguments."""
    names = [f"proj-{index:03d}" for index in range(count)]
    for index, name in enumerate(names):
        for file, text in project_files(name, port=8000 + index, **overrides.get(str(index), {})).items():
            write(root, f"{folder}/{name}/{file}", text)
    write(root, f"{folder}/kustomization.yaml", "resources:\n" + "".join(f"- {name}\n" for name in names))
    return names


@pytest.fixture
def first_samples(monkeypatch):
    """Sample the first members instead of random ones, so a test knows which folders are derived."""
    monkeypatch.setattr(random, "sample", lambda population, k: list(population)[:k])


def run(root: Path, kubectl: CountingKubectl, cache_dir: Path, **kwargs):
    messages: list[str] = []
    problems = tree_validate(root=root, kubectl=str(kubectl.path), crd_dir=FIXTURES / "crds",
                             progress=messages.append, cache_dir=cache_dir, **kwargs)
    return problems, messages


def built_folders(kubectl: CountingKubectl, root: Path) -> list[str]:
    """Folders built alone (a chunk is a scratch kustomization outside the tree and counts as '<chunk>')."""
    prefix = str(root.resolve()) + "/"
    return sorted(target[len(prefix):] if target.startswith(prefix) else "<chunk>" for target in kubectl.targets())


def shape_of(root: Path, folder: str):
    tree = tree_scan(root)
    kustomization = tree.kustomizations[folder]
    return folder_shape(root, folder, kustomization.file, kustomization.data)


# --- the equivalence proof ------------------------------------------------------------------------------------


def test_folders_of_one_template_share_a_shape_and_a_kept_value_splits_them(tmp_path):
    make_tree(tmp_path, 3)
    shapes = [shape_of(tmp_path, f"projects/proj-{index:03d}") for index in range(3)]
    assert len({shape.digest for shape in shapes}) == 1
    assert shapes[0].values != shapes[1].values
    # "Ingress" is a kind elsewhere in the tree's vocabulary? Here it is only a policy type; make it structural:
    (tmp_path / "projects/proj-002/extra.yaml").write_text(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: x\n")
    write(tmp_path, "projects/proj-002/kustomization.yaml", KUSTOMIZATION.replace("- app.yaml\n",
                                                                                   "- app.yaml\n- extra.yaml\n"))
    shape = shape_of(tmp_path, "projects/proj-002")
    assert (0, "Ingress") not in shape.table and (0, "Ingress") in shape.structural


@pytest.mark.parametrize("kustomization", [
    KUSTOMIZATION + "namePrefix: a-\n",
    KUSTOMIZATION + "namespace: other\n",
    KUSTOMIZATION + "commonLabels:\n  a: b\n",
    KUSTOMIZATION + "configMapGenerator:\n- name: c\n  literals: [a=b]\n",
    KUSTOMIZATION + "patches:\n- path: app.yaml\n",
    KUSTOMIZATION.replace("- app.yaml", "- sub"),
    KUSTOMIZATION.replace("- app.yaml", "- https://example.com/app.yaml"),
    KUSTOMIZATION.replace("- app.yaml", "- missing.yaml"),
    KUSTOMIZATION.replace("  newTag: production", "  newTag: production\n  extra: x"),
], ids=["namePrefix", "namespace", "commonLabels", "generator", "patches", "folder", "remote", "missing",
        "image-key"])
def test_the_proof_refuses_kustomizations_beyond_resources_and_images(tmp_path, kustomization):
    make_tree(tmp_path, 1)
    write(tmp_path, "projects/proj-000/sub/kustomization.yaml", "resources: []\n")
    write(tmp_path, "projects/proj-000/kustomization.yaml", kustomization)
    with pytest.raises(Refused):
        shape_of(tmp_path, "projects/proj-000")


@pytest.mark.parametrize("old, new", [
    ("replicas: 1", "replicas: [1"),          # not parseable
    ("replicas: 1", "replicas: 0755"),        # octal in YAML 1.1, decimal in 1.2
    ("replicas: 1", "replicas: 1.5"),         # a float
    ("protocol: TCP", "protocol: yes"),       # a boolean in YAML 1.1, a string in 1.2
    ("protocol: TCP", "protocol: 1_000"),     # an integer with underscores (read alike only by luck)
    ("protocol: TCP", "protocol: !!str TCP"),  # a tag
    ("app: web\n  template", "app: web\n    <<: {a: b}\n  template"),  # a merge key
    ("name: web\n  namespace", "name: &n web\n  namespace"),  # an anchor
    ("protocol: TCP", "protocol: 0o17"),      # an integer in YAML 1.2, a string in 1.1
    ("protocol: TCP", "protocol: 2024-01-01"),  # a date in YAML 1.1
], ids=["unparseable", "octal", "float", "yes", "underscore", "tag", "merge", "anchor", "0o", "date"])
def test_the_proof_refuses_resources_the_parsers_could_read_differently(tmp_path, old, new):
    make_tree(tmp_path, 1)
    app = tmp_path / "projects/proj-000/app.yaml"
    assert old in app.read_text()
    app.write_text(app.read_text().replace(old, new, 1))
    with pytest.raises(Refused):
        shape_of(tmp_path, "projects/proj-000")


def test_quoted_lookalikes_are_plain_strings_for_both_parsers(tmp_path):
    make_tree(tmp_path, 2)
    app = tmp_path / "projects/proj-001/app.yaml"
    app.write_text(app.read_text().replace("protocol: TCP", 'protocol: "true"'))
    assert "true" in shape_of(tmp_path, "projects/proj-001").values


# --- the gate -------------------------------------------------------------------------------------------------


def test_a_class_is_built_once_plus_samples_and_every_object_is_checked(tmp_path, first_samples):
    root, kubectl = tmp_path / "gitops", CountingKubectl(tmp_path)
    names = make_tree(root, 8)

    problems, messages = run(root, kubectl, tmp_path / "templates")

    assert problems == []
    assert checked_count(messages) == 8 * 5
    # The representative and two samples are built alone; the 5 others are derived, none of them built.
    assert built_folders(kubectl, root) == sorted(f"projects/{name}" for name in names[:3])
    assert any("5 folder(s) derived from 1 equivalence class(es)" in message for message in messages)


def test_a_member_that_differs_structurally_is_built_for_real(tmp_path, first_samples):
    root, kubectl = tmp_path / "gitops", CountingKubectl(tmp_path)
    make_tree(root, 8, **{"7": {"replicas": '"2"'}})  # a string where the others hold an integer

    problems, messages = run(root, kubectl, tmp_path / "templates")

    assert [(p.file, p.message) for p in problems] == [(
        "projects/proj-007/app.yaml",
        "apps/v1 Deployment proj-007/web: spec.replicas: expected integer, got string \"2\"")]
    assert checked_count(messages) == 8 * 5
    assert "<chunk>" in built_folders(kubectl, root) or "projects/proj-007" in built_folders(kubectl, root)
    assert any("4 folder(s) derived" in message for message in messages)


def test_a_derived_object_with_a_bad_value_fails_the_schema_check(tmp_path, first_samples):
    root, kubectl = tmp_path / "gitops", CountingKubectl(tmp_path)
    make_tree(root, 8, **{"6": {"widget_replicas": 0}})  # same shape; the Widget CRD wants replicas > 0

    problems, messages = run(root, kubectl, tmp_path / "templates")

    assert "projects/proj-006" not in built_folders(kubectl, root)  # derived, not built
    assert any("5 folder(s) derived" in message for message in messages)
    assert [(p.file, p.rule, p.message) for p in problems] == [(
        "projects/proj-006/app.yaml", "crd-schema", "example.com/v1 Widget proj-006/gadget: spec.replicas: 0 is "
                                                    "less than or equal to the minimum of 0")]


def test_a_sample_that_differs_from_the_template_is_reported_and_its_class_built(tmp_path, first_samples):
    root, kubectl = tmp_path / "gitops", CountingKubectl(tmp_path)
    templates = tmp_path / "templates"
    names = make_tree(root, 8)
    run(root, kubectl, templates)
    [stored] = list(templates.glob("*.template"))
    # A template that derives wrong objects (as if kustomize had changed how it builds these folders).
    import pickle
    identity, template = pickle.loads(stored.read_bytes())
    for obj in template:
        if obj["kind"] == "Service":
            obj["spec"]["type"] = "NodePort"
    stored.write_bytes(pickle.dumps((identity, template)))
    kubectl.log.unlink()

    problems, messages = run(root, kubectl, templates)

    assert problems == []
    assert any(message.startswith("Equivalence check failed") for message in messages)
    assert not any("derived from" in message for message in messages)
    assert checked_count(messages) == 8 * 5
    # The two samples alone, then the six other folders in a chunk: every folder built for real.
    assert built_folders(kubectl, root) == ["<chunk>", f"projects/{names[0]}", f"projects/{names[1]}"]
    assert not stored.exists()  # the wrong template is dropped


def test_a_stored_template_is_reused_by_a_fresh_process(tmp_path, first_samples, settings):
    root, kubectl = tmp_path / "gitops", CountingKubectl(tmp_path)
    templates = tmp_path / "templates"
    names = make_tree(root, 8)
    run(root, kubectl, templates)
    assert len(list(templates.glob("*.template"))) == 1
    kubectl.log.unlink()

    script = (
        "import random, sys\n"
        "random.sample = lambda population, k: list(population)[:k]\n"
        "from deployments.validation import tree_validate\n"
        "messages = []\n"
        f"problems = tree_validate(root={str(root)!r}, kubectl={str(kubectl.path)!r}, "
        f"crd_dir={str(FIXTURES / 'crds')!r}, cache_dir={str(templates)!r}, progress=messages.append)\n"
        "print(len(problems)); print(messages[-1])\n")
    completed = subprocess.run([sys.executable, "manage.py", "shell", "-c", script], cwd=REPO, capture_output=True,
                               text=True, check=False, env={**os.environ, "LOG_LEVEL": "WARNING"}, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    count, summary = completed.stdout.strip().splitlines()[-2:]

    assert count == "0"
    # Only the two samples were built; the representative was not needed, the 6 others were derived.
    assert built_folders(kubectl, root) == [f"projects/{names[0]}", f"projects/{names[1]}"]
    assert "from 2 build(s) and 6 folder(s) derived" in summary and "Validated 40 object(s)" in summary


def test_small_classes_and_changed_paths_are_built_for_real(tmp_path):
    root, kubectl = tmp_path / "gitops", CountingKubectl(tmp_path)
    make_tree(root, 3)  # a representative and two samples would be all of it: nothing to derive

    problems, messages = run(root, kubectl, tmp_path / "templates",
                             paths=["projects/proj-001/app.yaml"])

    assert problems == []
    assert not any("derived" in message for message in messages)
    assert built_folders(kubectl, root) == ["projects/proj-001"]
    assert REAL_KUBECTL


# --- the CRD cache --------------------------------------------------------------------------------------------


def test_parsed_crds_are_stored_and_a_fresh_load_does_not_parse_them(tmp_path, monkeypatch):
    from deployments.validation import schemas

    crds = tmp_path / "crds"
    crds.mkdir()
    (crds / "widgets.yaml").write_bytes((FIXTURES / "crds" / "example.com_widgets.yaml").read_bytes())
    cache = tmp_path / "cache"
    schemas._crd_catalog_cached.cache_clear()
    first = schemas.crd_catalog_load(crds, cache)
    assert [crd.kind for crd in first.kinds.values()] == ["Widget"]
    assert len(list(cache.glob("crds-*.pickle"))) == 1

    schemas._crd_catalog_cached.cache_clear()  # as in a fresh process
    monkeypatch.setattr(schemas.yaml, "load_all", lambda *args, **kwargs: pytest.fail("the CRDs were parsed again"))
    again = schemas.crd_catalog_load(crds, cache)
    assert again.kinds.keys() == first.kinds.keys()
    assert again.kinds[("example.com", "Widget")].schemas == first.kinds[("example.com", "Widget")].schemas

    monkeypatch.undo()
    (crds / "widgets.yaml").write_bytes((crds / "widgets.yaml").read_bytes() + b"\n")  # a changed file: parsed anew
    schemas._crd_catalog_cached.cache_clear()
    schemas.crd_catalog_load(crds, cache)
    assert len(list(cache.glob("crds-*.pickle"))) == 2


# --- a changed path in a fresh process ------------------------------------------------------------------------

INGRESS = """apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: {name}
spec:
  rules:
  - host: {host}.example.com
"""


def test_a_changed_path_in_a_fresh_process_neither_walks_nor_reads_the_tree(tmp_path, first_samples, settings):
    from deployments.validation import hosts, kustomize
    from deployments.validation.warm import validation_warm

    root, kubectl, cache = tmp_path / "gitops", CountingKubectl(tmp_path), tmp_path / "cache"
    names = make_tree(root, 40, folder="environments/dev/projects")
    for name in names:
        write(root, f"environments/dev/projects/{name}/ingress.yaml", INGRESS.format(name=name, host=name))
        kustomization = root / f"environments/dev/projects/{name}/kustomization.yaml"
        kustomization.write_text(kustomization.read_text().replace("- app.yaml\n", "- app.yaml\n- ingress.yaml\n"))
    settled = time.time() - 60  # folder listings are kept once their mtime is older than the settle time
    for folder, _, _ in os.walk(root):
        os.utime(folder, (settled, settled))
    problems, _ = run(root, kubectl, cache)
    assert problems == []
    settings.VALIDATION_CACHE_DIR = str(cache)
    validation_warm(root, compile_validators=False)  # a worker's warm-up: reads the Ingress sources, stores all
    assert {"listings.pickle", "kustomizations.pickle", "ingress-sources.pickle"} <= {
        path.name for path in cache.iterdir()}

    def fresh_process() -> None:
        kubectl.log.unlink(missing_ok=True)
        for store in (kustomize._LISTING_CACHE, kustomize._KUSTOMIZATION_CACHE, hosts._SOURCE_CACHE):
            store.clear()
        for stats in (kustomize.listing_stats, hosts.source_stats):
            for key in stats:
                stats[key] = 0

    fresh_process()
    changed = "environments/dev/projects/proj-007/ingress.yaml"
    (root / changed).write_text(INGRESS.format(name="proj-007", host="proj-031"))  # proj-031's host

    problems, messages = run(root, kubectl, cache, paths=[changed])

    # Nothing listed or parsed again: folder listings, kustomizations and other projects' hosts come from the store.
    assert kustomize.listing_stats == {"listed": 0, "reused": kustomize.listing_stats["reused"], "parsed": 0}
    assert hosts.source_stats == {"read": 0}
    assert built_folders(kubectl, root) == ["environments/dev/projects/proj-007"]
    assert [(p.rule, p.file) for p in problems] == [
        ("ingress-host-duplicate", "environments/dev/projects/proj-031/ingress.yaml")]

    # A new project folder changes its parent's mtime: that folder is listed again, and the new one read.
    fresh_process()
    for file, text in project_files("proj-new", port=9000).items():
        write(root, f"environments/dev/projects/proj-new/{file}", text)
    aggregate = root / "environments/dev/projects/kustomization.yaml"
    aggregate.write_text(aggregate.read_text() + "- proj-new\n")
    (root / changed).write_text(INGRESS.format(name="proj-007", host="proj-007"))
    problems, _ = run(root, kubectl, cache, paths=[changed, "environments/dev/projects/proj-new",
                                                    "environments/dev/projects/kustomization.yaml"])
    assert problems == []
    # The projects folder and the new one, by the scan and by the host check (too young to be kept: their mtimes
    # are within the settle time), and nothing else.
    assert kustomize.listing_stats["listed"] == 4
    assert kustomize.listing_stats["parsed"] == 2  # the aggregate and the new project's kustomization
    assert built_folders(kubectl, root) == ["<chunk>"]  # proj-007 and proj-new, one build


def test_shapes_from_worker_processes_equal_shapes_made_here(tmp_path, monkeypatch):
    from deployments.validation import classes

    make_tree(tmp_path, 6, **{"3": {"replicas": '"2"'}})
    tree = tree_scan(tmp_path)
    folders = [f"projects/proj-{index:03d}" for index in range(6)]
    items = [(folder, tree.kustomizations[folder].file, tree.kustomizations[folder].data) for folder in folders]
    here = classes.folder_shapes(tmp_path, items, workers=1)
    monkeypatch.setattr(classes, "POOL_MIN_FOLDERS", 2)
    there = classes.folder_shapes(tmp_path, items, workers=2)

    assert [(shape.digest, shape.values) for shape in there] == [(shape.digest, shape.values) for shape in here]
    assert len({shape.digest for shape in here}) == 2  # proj-003 holds a string where the others hold an integer
    assert there[0].table is None  # lean: the parent recomputes a representative's table
    full = classes.full_shape(tmp_path, *items[0], there[0])
    assert (full.table, full.structural) == (here[0].table, here[0].structural)


def test_a_value_that_is_also_structural_is_kept_so_another_value_there_is_another_shape(tmp_path):
    make_tree(tmp_path, 2)
    for name in ("proj-000", "proj-001"):
        write(tmp_path, f"projects/{name}/extra.yaml", "apiVersion: networking.k8s.io/v1\nkind: Ingress\n"
                                                       "metadata:\n  name: x\n")
        write(tmp_path, f"projects/{name}/kustomization.yaml",
              KUSTOMIZATION.replace("- app.yaml\n", "- app.yaml\n- extra.yaml\n"))
    app = tmp_path / "projects/proj-001/app.yaml"
    app.write_text(app.read_text().replace("  - Ingress\n", "  - Egress\n"))
    first, second = shape_of(tmp_path, "projects/proj-000"), shape_of(tmp_path, "projects/proj-001")
    assert (0, "Ingress") in first.structural and (0, "Ingress") not in first.table  # a kind: kept everywhere
    assert (0, "Egress") in second.table  # renamable where no kind spells it
    assert first.digest != second.digest
