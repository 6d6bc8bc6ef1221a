"""The pure renderer (deployments/rendering/): golden files, real `kubectl kustomize` builds, DOMAIN.md facts.

Set UPDATE_GOLDEN=1 to rewrite tests/golden/demo/ from the current renderer, then review the diff in git.
"""

import difflib
import functools
import hashlib
import os
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from jinja2.exceptions import SecurityError, UndefinedError

from deployments.models import Environment, NodeGroup, Secret
from deployments.rendering import (
    ContainerSnapshot,
    EnvironmentSnapshot,
    NodeGroupSnapshot,
    ProjectSnapshot,
    RenderUnit,
    TreeSnapshot,
    render_tree,
    secret_checksum_annotation,
    secret_versions_hash,
    snapshot_scopes,
    templating,
    tree_units,
    yamltext,
)
from deployments.rendering.yamltext import yaml_block, yaml_flow, yaml_scalar
from deployments.secrets import crypto
from deployments.selectors import environments_snapshot
from projects.demo import demo_container_id, demo_load, demo_project_id
from projects.models import Container, Project
from tests.factories import (
    container_factory,
    eks_environment_factory,
    environment_factory,
    node_group_factory,
    project_factory,
    secret_factory,
)

pytestmark = pytest.mark.django_db

GOLDEN_DIR = Path(__file__).resolve().parents[2] / "golden" / "demo"
SOURCE_URL = "https://git.example.com/tesslate/gitops.git"
BRANCH = "main"


# --- helpers ------------------------------------------------------------------------------------------------------

@pytest.fixture
def gitops_source(settings):
    settings.GITOPS_SOURCE_URL = SOURCE_URL
    settings.GITOPS_BRANCH = BRANCH


@pytest.fixture
def demo(gitops_source):
    demo_load()
    return environments_snapshot()


@pytest.fixture
def demo_tree(demo):
    return render_tree(demo)


def write_tree(tree: dict[str, bytes], root: Path) -> Path:
    for path, content in tree.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return root


def kustomization_roots(tree: dict[str, bytes]) -> list[str]:
    return sorted(path.rsplit("/", 1)[0] for path in tree if path.endswith("/kustomization.yaml"))


def kustomize(directory: Path) -> list[dict]:
    result = subprocess.run([django_settings.KUBECTL, "kustomize", str(directory)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


_BUILDS: dict[str, dict[str, list[dict]]] = {}


def build_all(tree: dict[str, bytes], tmp_path: Path) -> dict[str, list[dict]]:
    """Every kustomization root of the tree built with the real kubectl (cached per tree content)."""
    digest = hashlib.sha256(b"".join(path.encode() + b"\0" + content for path, content in tree.items())).hexdigest()
    if digest not in _BUILDS:
        root = write_tree(tree, tmp_path / f"tree-{digest[:12]}")
        roots = kustomization_roots(tree)
        with ThreadPoolExecutor(max_workers=2) as pool:
            built = list(pool.map(lambda rel: kustomize(root / rel), roots))
        _BUILDS[digest] = dict(zip(roots, built, strict=True))
    return _BUILDS[digest]


def find(objects: list[dict], kind: str, name: str, namespace: str | None = None) -> dict:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name
               and (namespace is None or o["metadata"].get("namespace") == namespace)]
    assert len(matches) == 1, f"expected one {kind} {name} in {namespace}, found {len(matches)}"
    return matches[0]


def kinds(objects: list[dict]) -> list[tuple[str, str]]:
    return sorted((o["kind"], o["metadata"]["name"]) for o in objects)


def container(pod_spec: dict, name: str) -> dict:
    return next(c for c in pod_spec["containers"] if c["name"] == name)


def project_dir(env: str, slug: str) -> str:
    return f"environments/{env}/projects/proj-{demo_project_id(env, slug)}"


def parse(tree: dict[str, bytes], path: str) -> list:
    return [doc for doc in yaml.safe_load_all(tree[path]) if doc is not None]


# --- YAML quoting -------------------------------------------------------------------------------------------------

QUOTING_TABLE = [
    "yes", "no", "on", "off", "y", "n", "Yes", "NO", "True", "false", "null", "Null", "~", "",
    "0123", "1e3", "1.5", ".5", "0x1F", "0o17", "1_000", "+1", "-1", "12:30:00", "2001-12-14", ".inf", "-.inf",
    ".NaN", "a: b", "a:", "#x", "x #y", "it's \"quoted\"", "'single'", "@at", "`tick", "*alias", "&anchor",
    "!tag", "%percent", "|", ">", "- dash", "-", "?", "[list]", "{map}", "a, b", " leading", "trailing ",
    "two\nlines", "tab\there", "back\\slash", "nul\0", "bell\x07", "del\x7f", "nel\x85", "ls\u2028", "bom\ufeff",
    "ünïcödé", "emoji 😀", "<<", "=", "http://example.com/a?b=c", "*.studio.example.com", "5Gi", "500m",
    "../../../platform/base", "./environments/x", "plain-value", "tesslate.io/project-id", "/health",
]


@pytest.mark.parametrize("value", QUOTING_TABLE)
def test_yaml_scalar_reads_back_as_the_same_string(value):
    text = yaml_scalar(value)
    assert "\n" not in text, "a scalar must stay on one line"
    loaded = yaml.safe_load(f"key: {text}\n")["key"]
    assert loaded == value and isinstance(loaded, str)
    # The same inside a sequence and as a mapping key.
    assert yaml.safe_load(f"- {text}\n") == [value]
    assert yaml.safe_load(f"{text}: 1\n") == {value: 1}


@pytest.mark.parametrize("value, expected", [
    ("plain-value", "plain-value"), ("yes", '"yes"'), ("", '""'), ("0123", '"0123"'), ("a: b", '"a: b"'),
    ("it's \"quoted\"", '"it\'s \\"quoted\\""'), (True, "true"), (False, "false"), (None, "null"), (8000, "8000"),
    (1.5, "1.5"), (1e-05, "1.0e-05"),
])
def test_yaml_scalar_output(value, expected):
    assert yaml_scalar(value) == expected
    assert yaml.safe_load(f"k: {yaml_scalar(value)}")["k"] == value


def test_yaml_scalar_refuses_collections():
    with pytest.raises(TypeError):
        yaml_scalar({"a": 1})
    with pytest.raises(TypeError):
        yaml_block({1: "not a string key"})


def test_yaml_scalars_survive_kustomize(tmp_path):
    """go-yaml (kustomize, Flux, Argo CD) reads the same strings back as PyYAML does.

    Control characters other than tab and newline are left out: kustomize reads them but its YAML writer refuses
    to write them back ("control characters are not allowed"), whatever the input's quoting.
    """
    values = {f"K{i}": value for i, value in enumerate(QUOTING_TABLE)
              if not any(ord(c) < 32 and c not in "\t\n" or 0x7f <= ord(c) <= 0x9f for c in value)}
    assert len(values) > 60
    (tmp_path / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: quoting\ndata:\n" + yaml_block(values, 2) + "\n",
        encoding="utf-8")
    (tmp_path / "kustomization.yaml").write_text("resources:\n- configmap.yaml\n")
    result = subprocess.run([django_settings.KUBECTL, "kustomize", str(tmp_path)], capture_output=True, text=True,
                            timeout=120, check=True)
    # kustomize's own writer leaves `<<` unquoted, which PyYAML's safe loader would take as a merge key;
    # BaseLoader reads every scalar as the string it is.
    (built,) = yaml.load(result.stdout, Loader=yaml.BaseLoader),
    assert built["data"] == values


def test_yaml_block_round_trips_nested_structures():
    value = {
        "name": "yes", "empty_map": {}, "empty_list": [], "number": 3, "flag": False, "nothing": None,
        "list": ["a", "0123", {"k": "v", "nested": {"deep": ["x"]}}, [1, 2], {}, []],
        "map": {"a: b": "#c", "list": [{"x": 1}, {"y": [{"z": "1e3"}]}]},
    }
    for indent in (0, 2, 6):
        text = yaml_block(value, indent)
        assert all(line.startswith(" " * indent) for line in text.splitlines())
        assert yaml.safe_load(text) == value
    assert yaml.safe_load(yaml_flow(["a", "b: c", "1"])) == ["a", "b: c", "1"]
    assert yaml.safe_load(yaml_flow({"a": "on", "b": 2})) == {"a": "on", "b": 2}


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.0, -0.0, 1.0, 1.5]),
                     st.sampled_from(["1", "true", "yes", "a", "", "0.0", "1.0"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.lists(inner, max_size=3).map(tuple),
    st.dictionaries(st.sampled_from(["a", "b", "1", "true"]), inner, max_size=3)), max_leaves=8)


@hypothesis_settings(max_examples=300, deadline=None)
@given(values=st.lists(st.one_of(st.lists(_VALUES, max_size=3), st.dictionaries(st.sampled_from(["k", "1"]),
                                                                                  _VALUES, max_size=3)),
                       min_size=1, max_size=6),
       indent=st.sampled_from([0, 2, 4]))
def test_yaml_block_remembers_blocks_without_mixing_equal_values_of_other_types(values, indent):
    """Values equal under == but of another type (1, 1.0, True; a list and a tuple) or order get their own text:
    every block matches a fresh emission and reads back as the value, in whatever order blocks are asked for."""
    for value in [*values, *reversed(values)]:
        lines: list[str] = []
        yamltext._emit(value, indent, lines)
        assert yaml_block(value, indent) == "\n".join(lines)
        assert yaml.safe_load(yaml_block(value, 0) or "null") == _as_loaded(value)


def _as_loaded(value):
    if isinstance(value, dict):
        return {key: _as_loaded(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_loaded(item) for item in value]
    return value


def test_yaml_block_of_subclasses_is_written_but_not_remembered():
    class Label(str):
        pass

    first = yaml_block({"a": Label("on")}, 2)
    assert first == '  a: "on"' and yaml_block({"a": "on"}, 2) == first
    assert not any(key[0] == b"" for key in yamltext._BLOCKS)  # nothing stored under an empty key
    assert all(isinstance(text, str) for text in yamltext._BLOCKS.values())


def test_templates_quote_every_expression_and_run_sandboxed():
    environment = templating.ENVIRONMENT
    # No filter needed: finalize quotes every expression; filters that emit YAML are not quoted twice.
    assert environment.from_string("v: {{ x }}").render(x="yes") == 'v: "yes"'
    assert environment.from_string("v: {{ x | yaml }}").render(x="0123") == 'v: "0123"'
    assert environment.from_string("v:\n{{ x | yaml_block(2) }}").render(x={"a": "on"}) == 'v:\n  a: "on"'
    with pytest.raises(UndefinedError):
        environment.from_string("{{ missing }}").render()
    with pytest.raises(SecurityError):
        environment.from_string("{{ x.__class__.__subclasses__() }}").render(x="")
    assert templating.TEMPLATES, "templates are compiled at import"
    assert len(templating.RENDERER_VERSION) == 64


# --- the demo tree ------------------------------------------------------------------------------------------------

AGE_PLACEHOLDER = b"<age ciphertext: encrypted anew by every demo load, so not compared>\n"


def golden_view(tree: dict[str, bytes]) -> dict[str, bytes]:
    """The tree as the golden files hold it: age ciphertexts (randomized, made when values are stored) replaced
    by a placeholder; tests/deployments/secrets/test_age.py decrypts the real ones."""
    return {path: AGE_PLACEHOLDER if path.endswith(".age") else content for path, content in tree.items()}


def test_demo_tree_matches_golden_files(demo_tree):
    demo_tree = golden_view(demo_tree)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        shutil.rmtree(GOLDEN_DIR, ignore_errors=True)
        write_tree(demo_tree, GOLDEN_DIR)
    golden = {path.relative_to(GOLDEN_DIR).as_posix(): path.read_bytes()
              for path in sorted(GOLDEN_DIR.rglob("*")) if path.is_file()}
    assert sorted(golden) == sorted(demo_tree), "the set of rendered files differs from tests/golden/demo/"
    for path, content in demo_tree.items():
        if content != golden[path]:
            diff = "".join(difflib.unified_diff(golden[path].decode().splitlines(True), content.decode().splitlines(
                True), f"golden/{path}", f"rendered/{path}"))
            pytest.fail(f"{path} differs from its golden file (UPDATE_GOLDEN=1 rewrites them):\n{diff}")


def test_demo_layout(demo, demo_tree):
    roots = kustomization_roots(demo_tree)
    assert roots == sorted([
        "clusters/aws-production", "clusters/minikube",
        "environments/aws-production/platform", "environments/aws-production/projects",
        project_dir("aws-production", "crm-dashboard"), project_dir("aws-production", "portfolio"),
        "environments/minikube/platform", "environments/minikube/projects",
        project_dir("minikube", "landing-page"), project_dir("minikube", "todo-app"),
        "platform/base",
    ])
    assert list(demo_tree) == sorted(demo_tree), "render_tree returns paths sorted"
    units = tree_units(demo)
    assert [unit.key for unit in units] == sorted(unit.key for unit in units)
    assert {unit.key for unit in units} >= {"shared:platform-base", "env:minikube:platform", "env:minikube:clusters",
                                            "env:minikube:projects-index",
                                            f"env:minikube:project:{demo_project_id('minikube', 'todo-app')}"}
    for unit in units:
        assert isinstance(unit, RenderUnit) and unit.directory.endswith("/")
        files = unit.render()
        assert files and all(path.startswith(unit.directory) for path in files)
        assert all(isinstance(content, bytes) for content in files.values())


def assert_valid_yaml_files(tree: dict[str, bytes]) -> None:
    """Every .yaml file parses, with no empty document; every document is an object (or a JSON patch)."""
    for path, content in tree.items():
        if not path.endswith(".yaml"):
            raise AssertionError(f"{path} is not a YAML file")
        documents = list(yaml.safe_load_all(content.decode("utf-8")))
        assert documents and all(doc is not None for doc in documents), f"{path} has an empty document"
        for doc in documents:
            if path.endswith("patches/ingress.yaml"):
                assert isinstance(doc, list) and all({"op", "path"} <= set(op) for op in doc)  # a JSON patch
            else:
                assert isinstance(doc, dict) and doc.get("apiVersion") and doc.get("kind"), path


def test_every_rendered_file_is_valid_yaml(demo_tree):
    # The Compose server's folder holds scripts, units and age files too (rendering/test_compose*.py,
    # secrets/test_age.py).
    kubernetes_tree = {path: content for path, content in demo_tree.items()
                       if not path.startswith("environments/single-server/")}
    assert all(path.endswith(".yaml") for path in kubernetes_tree)
    assert_valid_yaml_files(kubernetes_tree)


def test_every_kustomization_root_of_the_demo_builds(demo_tree, tmp_path):
    built = build_all(demo_tree, tmp_path)
    assert len(built) == 11
    for root, objects in built.items():
        assert objects, f"{root} built nothing"
    # The projects index builds every active project of its environment.
    for env, slugs in (("minikube", ["landing-page", "todo-app"]), ("aws-production", ["crm-dashboard", "portfolio"])):
        namespaces = {o["metadata"]["name"] for o in built[f"environments/{env}/projects"] if o["kind"] == "Namespace"}
        assert namespaces == {f"proj-{demo_project_id(env, slug)}" for slug in slugs}


@functools.cache
def _crd_schemas(crd_dir: str) -> dict[tuple[str, str, str], dict]:
    schemas = {}
    for path in sorted(Path(crd_dir).glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schemas[(crd["spec"]["group"], version["name"], crd["spec"]["names"]["kind"])] = (
                    version["schema"]["openAPIV3Schema"])
    return schemas


def _unknown_fields(value, schema: dict, path: str) -> list[str]:
    """Fields the API server would prune or reject (the CRD schema lists properties and allows no others)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    problems = []
    if isinstance(value, dict) and schema.get("type") == "object":
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            if properties is not None and key in properties:
                problems += _unknown_fields(item, properties[key], f"{path}.{key}")
            elif isinstance(additional, dict):
                problems += _unknown_fields(item, additional, f"{path}.{key}")
            elif properties is not None and not additional and (path or key not in ("apiVersion", "kind", "metadata")):
                problems.append(f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problems += _unknown_fields(item, schema["items"], f"{path}[{index}]")
    return problems


def assert_objects_validate(objects: list[dict]) -> None:
    """Built-in kinds against Kubernetes 1.32 (strict), custom resources against their upstream CRDs (served v1)."""
    import jsonschema
    import kubernetes_validate

    crd_dir = django_settings.CRD_SCHEMA_DIR
    crds = _crd_schemas(crd_dir) if crd_dir and Path(crd_dir).is_dir() else {}
    for obj in objects:
        group, _, version = obj["apiVersion"].rpartition("/")
        name = f"{obj['kind']} {obj['metadata']['name']}"
        if (group, version, obj["kind"]) in crds:
            schema = crds[(group, version, obj["kind"])]
            errors = [f"{list(e.path)}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(obj)]
            assert not errors, f"{name}: {errors}"
            assert not _unknown_fields(obj, schema, ""), f"{name}: unknown fields {_unknown_fields(obj, schema, '')}"
        elif "." in group and not group.endswith("k8s.io"):
            assert not crds, f"{name}: no served CRD version for {obj['apiVersion']}"
        else:
            try:
                kubernetes_validate.validate(obj, django_settings.KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name}: {exc.message} at {list(exc.path)}")


def test_built_demo_objects_validate_against_kubernetes_and_crd_schemas(demo_tree, tmp_path):
    if not (django_settings.CRD_SCHEMA_DIR and Path(django_settings.CRD_SCHEMA_DIR).is_dir()):
        pytest.skip("CRD_SCHEMA_DIR is not a folder: custom resources cannot be checked (built-ins still are below)")
    built = build_all(demo_tree, tmp_path)
    for root in ("environments/aws-production/platform", "environments/minikube/platform",
                 "environments/aws-production/projects", "environments/minikube/projects",
                 "clusters/aws-production", "clusters/minikube"):
        assert_objects_validate(built[root])


def test_render_is_deterministic(demo):
    first = render_tree(demo)
    again = render_tree(demo)
    fresh = render_tree(environments_snapshot())
    assert first == again == fresh
    assert [u.fingerprint for u in tree_units(demo)] == [u.fingerprint for u in tree_units(environments_snapshot())]
    for unit_a, unit_b in zip(tree_units(demo), tree_units(environments_snapshot()), strict=True):
        assert unit_a.render() == unit_b.render()


def test_no_secret_value_reaches_the_tree(demo_tree):
    everything = b"".join(demo_tree.values())
    for secret in Secret.objects.all():
        assert crypto.decrypt(secret.ciphertext).encode() not in everything
        assert secret.ciphertext.encode() not in everything


def test_tree_units_render_nothing_until_asked(demo, monkeypatch):
    calls = []
    original = templating.render_template
    for module in ("platform", "projects", "clusters"):
        monkeypatch.setattr(f"deployments.rendering.{module}.render_template",
                            lambda name, context: calls.append(name) or original(name, context))
    units = tree_units(demo)
    assert calls == []
    units[0].render()
    assert calls


def test_project_units_know_their_paths_without_rendering(demo, monkeypatch):
    """A preview lists never-rendered projects from unit.paths(): it must be exactly what render() returns, for
    every project of the demo, hibernating (with and without VolumeSnapshots), stopped, or without containers."""
    from dataclasses import replace

    from deployments.rendering.projects import ProjectEnvironment, project_paths, render_project

    units = [unit for unit in tree_units(demo) if unit.paths is not None]
    assert units and all(":project:" in unit.key for unit in units)
    calls = []
    original = templating.render_template
    monkeypatch.setattr("deployments.rendering.projects.render_template",
                        lambda name, context: calls.append(name) or original(name, context))
    listed = [unit.paths() for unit in units]
    assert calls == []  # no template was rendered to list them
    assert listed == [tuple(sorted(unit.render())) for unit in units]
    variants = 0
    for env in demo.environments:
        for tool in ("argocd", "flux"):  # a stopped project lists no Deployment file under Argo CD
            penv = replace(ProjectEnvironment.of(env), gitops_tool=tool)
            for project in env.projects:
                for variant in (replace(project, hibernation_stamp="20260101t000000z"),
                                replace(project, stopped=True), replace(project, containers=()),
                                replace(project, containers=project.containers[:1])):
                    assert project_paths(penv, variant) == tuple(sorted(render_project(penv, variant)))
                    variants += 1
    assert variants >= 16


def test_render_reads_no_file_and_no_database(demo, monkeypatch, django_assert_num_queries):
    units = tree_units(demo)

    def no_io(*args, **kwargs):
        raise AssertionError(f"render() opened a file: {args!r}")

    monkeypatch.setattr("builtins.open", no_io)
    monkeypatch.setattr("io.open", no_io)
    with django_assert_num_queries(0):
        rendered = [unit.render() for unit in units]
    assert sum(len(files) for files in rendered) == 75 + 20  # 20: the Compose server single-server


def test_unit_folders_nest_only_projects_under_their_index(demo):
    """The git writer owns files per unit: folders are disjoint, except that environments/<env>/projects/ (the
    index, which renders only its kustomization.yaml) contains the project folders."""
    units = tree_units(demo)
    for outer in units:
        for inner in units:
            if outer is not inner and inner.directory.startswith(outer.directory):
                assert outer.key.endswith(":projects-index") and ":project:" in inner.key, (outer.key, inner.key)
                assert [path.rsplit("/", 1)[-1] for path in outer.render()] == ["kustomization.yaml"]


# --- fingerprints -------------------------------------------------------------------------------------------------

def _fingerprints() -> dict[str, str]:
    return {unit.key: unit.fingerprint for unit in tree_units(environments_snapshot())}


def _changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}


def test_a_project_change_changes_only_that_project(demo):
    before = _fingerprints()
    todo = Project.objects.get(slug="todo-app")
    Container.objects.filter(project=todo, directory="frontend").update(port=4000)
    after = _fingerprints()
    assert _changed(before, after) == {f"env:minikube:project:{todo.id}"}


def test_a_secret_rotation_changes_the_platform_and_rolls_the_pods(demo, tmp_path):
    before = _fingerprints()
    platform_before = render_tree(environments_snapshot())
    secret = Secret.objects.get(environment__name="aws-production", key="SECRET_KEY")
    Secret.objects.filter(pk=secret.pk).update(version=secret.version + 1)
    after = _fingerprints()
    assert _changed(before, after) == {"env:aws-production:platform"}, "projects do not depend on secrets"
    tree = render_tree(environments_snapshot())
    changed = sorted(path for path in tree if tree[path] != platform_before[path])
    assert changed == ["environments/aws-production/platform/patches/tesslate-backend.yaml",
                       "environments/aws-production/platform/patches/tesslate-worker.yaml",
                       "environments/aws-production/platform/secrets.yaml"]


def test_an_environment_change_reaches_its_platform_and_projects_only(demo):
    before = _fingerprints()
    Environment.objects.filter(name="minikube").update(app_domain="studio.local")
    changed = _changed(before, _fingerprints())
    assert changed == {"env:minikube:platform", *(f"env:minikube:project:{demo_project_id('minikube', slug)}"
                                                  for slug in ("todo-app", "landing-page"))}


def test_the_source_url_changes_only_the_cluster_entry_points(demo, settings):
    before = _fingerprints()
    settings.GITOPS_SOURCE_URL = "https://git.example.org/other.git"
    # The Compose server's deploy script clones the same URL: its folder is its entry point.
    assert _changed(before, _fingerprints()) == {"env:minikube:clusters", "env:aws-production:clusters",
                                                 "env:single-server:compose"}


def test_equal_fingerprints_give_equal_bytes(demo):
    first = {unit.key: unit for unit in tree_units(demo)}
    Project.objects.filter(slug="todo-app").update(volume_size="10Gi")
    for unit in tree_units(environments_snapshot()):
        if unit.fingerprint == first[unit.key].fingerprint:
            assert unit.render() == first[unit.key].render()
        else:
            assert unit.render() != first[unit.key].render()


# --- DOMAIN.md facts: the platform --------------------------------------------------------------------------------

def test_platform_base_matches_studio(demo_tree, tmp_path):
    base = yaml.safe_load(demo_tree["platform/base/kustomization.yaml"])
    assert base["namespace"] == "tesslate"
    assert base["labels"] == [{"pairs": {"app.kubernetes.io/name": "tesslate-studio"}, "includeSelectors": True}]
    assert not {"commonLabels", "patchesStrategicMerge", "bases", "patchesJson6902"} & set(base)
    assert {image["name"] for image in base["images"]} == {"tesslate-backend", "tesslate-frontend",
                                                          "tesslate-devserver"}
    objects = build_all(demo_tree, tmp_path)["platform/base"]
    assert all(o["metadata"].get("namespace") in ("tesslate", None) for o in objects)
    assert all(o["metadata"]["labels"]["app.kubernetes.io/name"] == "tesslate-studio" for o in objects)
    config = find(objects, "ConfigMap", "tesslate-config")["data"]
    assert (config["DEPLOYMENT_MODE"], config["K8S_NAMESPACE_PER_PROJECT"], config["K8S_ENABLE_NETWORK_POLICIES"]) == (
        "kubernetes", "true", "true")
    assert config["K8S_HIBERNATION_IDLE_MINUTES"] == "10"

    backend = find(objects, "Deployment", "tesslate-backend")
    assert backend["spec"]["strategy"] == {"type": "RollingUpdate",
                                           "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = backend["spec"]["template"]["spec"]
    api = container(pod, "backend")
    assert api["ports"] == [{"name": "http", "containerPort": 8000}]
    assert api["startupProbe"] == {"httpGet": {"path": "/health", "port": 8000}, "initialDelaySeconds": 10,
                                   "periodSeconds": 5, "failureThreshold": 24}
    assert api["livenessProbe"] == {"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 10,
                                    "timeoutSeconds": 5, "failureThreshold": 3}
    assert (api["readinessProbe"]["periodSeconds"], api["readinessProbe"]["timeoutSeconds"]) == (5, 3)
    assert pod["serviceAccountName"] == "tesslate-backend-sa"
    frontend = find(objects, "Deployment", "tesslate-frontend")
    assert container(frontend["spec"]["template"]["spec"], "frontend")["ports"][0]["containerPort"] == 80
    worker = find(objects, "Deployment", "tesslate-worker")
    assert container(worker["spec"]["template"]["spec"], "worker")["image"] == "tesslate-backend:latest"
    assert find(objects, "Service", "tesslate-backend-service")["spec"]["ports"][0]["port"] == 8000
    assert find(objects, "Service", "tesslate-frontend-service")["spec"]["ports"][0]["port"] == 80

    cleanup = find(objects, "CronJob", "snapshot-cleanup")["spec"]
    assert (cleanup["schedule"], cleanup["concurrencyPolicy"], cleanup["jobTemplate"]["spec"]["activeDeadlineSeconds"]
            ) == ("0 3 * * *", "Replace", 600)
    assert find(objects, "CronJob", "namespace-reaper")["spec"]["schedule"] == "*/15 * * * *"

    ingress = find(objects, "Ingress", "tesslate-ingress")["spec"]
    assert ingress["ingressClassName"] == "nginx"
    routes = {p["path"]: p["backend"]["service"]["name"] for p in ingress["rules"][0]["http"]["paths"]}
    assert routes == {"/api": "tesslate-backend-service", "/ws": "tesslate-backend-service",
                      "/health": "tesslate-backend-service", "/": "tesslate-frontend-service"}

    rules = find(objects, "ClusterRole", "tesslate-project-manager")["rules"]
    allowed = {(group, resource): set(rule["verbs"]) for rule in rules
               for group in rule["apiGroups"] for resource in rule["resources"]}
    for group, resource in [("", "namespaces"), ("", "persistentvolumeclaims"), ("apps", "deployments"),
                            ("", "services"), ("networking.k8s.io", "ingresses"),
                            ("networking.k8s.io", "networkpolicies"), ("snapshot.storage.k8s.io", "volumesnapshots")]:
        assert {"create", "delete", "get", "list"} <= allowed[(group, resource)], (group, resource)
    binding = find(objects, "ClusterRoleBinding", "tesslate-project-manager")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "tesslate-backend-sa", "namespace": "tesslate"}]


def test_minikube_overlay(demo_tree, tmp_path):
    objects = build_all(demo_tree, tmp_path)["environments/minikube/platform"]
    for name, kind, path in (("tesslate-backend", "Deployment", ()), ("tesslate-worker", "Deployment", ()),
                             ("tesslate-frontend", "Deployment", ()),
                             ("snapshot-cleanup", "CronJob", ("jobTemplate", "spec")),
                             ("namespace-reaper", "CronJob", ("jobTemplate", "spec"))):
        spec = find(objects, kind, name)["spec"]
        for step in path:
            spec = spec[step]
        assert {c["imagePullPolicy"] for c in spec["template"]["spec"]["containers"]} == {"Never"}, name
    assert find(objects, "Deployment", "tesslate-backend")["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "tesslate-backend:latest")
    assert find(objects, "CronJob", "snapshot-cleanup")["spec"]["suspend"] is True
    assert "suspend" not in find(objects, "CronJob", "namespace-reaper")["spec"]
    storage = find(objects, "StorageClass", "tesslate-block-storage")
    assert storage["provisioner"] == "k8s.io/minikube-hostpath"
    assert not [o for o in objects if o["kind"] in ("VolumeSnapshotClass", "ClusterIssuer", "Certificate")]
    ingress = find(objects, "Ingress", "tesslate-ingress")["spec"]
    assert ingress["rules"][0]["host"] == "localhost" and "tls" not in ingress
    config = find(objects, "ConfigMap", "tesslate-config")["data"]
    assert config["APP_DOMAIN"] == "localhost" and config["K8S_STORAGE_CLASS"] == "tesslate-block-storage"
    # Minikube has no AWS: its Secrets arrive as SealedSecrets (none sealed yet in the demo: no certificate).
    sealed = find(objects, "SealedSecret", "tesslate-app-secrets", "tesslate")
    assert sealed["spec"]["encryptedData"] == {}
    assert not [o for o in objects if o["kind"] in ("ExternalSecret", "SecretStore")]


def test_eks_overlay(demo_tree, tmp_path):
    objects = build_all(demo_tree, tmp_path)["environments/aws-production/platform"]
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    backend = find(objects, "Deployment", "tesslate-backend")
    assert backend["spec"]["replicas"] == 2
    api = container(backend["spec"]["template"]["spec"], "backend")
    assert api["image"] == f"{registry}/tesslate-backend:production"
    assert api["imagePullPolicy"] == "Always", "the production tag moves with every release"
    assert api["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "4", "memory": "4Gi"}}
    assert api["envFrom"] == [{"configMapRef": {"name": "tesslate-config"}},
                              {"secretRef": {"name": "tesslate-app-secrets"}}]
    assert container(find(objects, "Deployment", "tesslate-frontend")["spec"]["template"]["spec"], "frontend")[
        "image"] == f"{registry}/tesslate-frontend:production"
    config = find(objects, "ConfigMap", "tesslate-config")["data"]
    assert config["K8S_DEVSERVER_IMAGE"] == f"{registry}/tesslate-devserver:production"
    assert (config["APP_DOMAIN"], config["K8S_SNAPSHOT_CLASS"], config["K8S_SNAPSHOT_RETENTION_DAYS"],
            config["K8S_MAX_SNAPSHOTS_PER_PROJECT"]) == ("studio.example.com", "tesslate-ebs-snapshots", "30", "5")

    storage = find(objects, "StorageClass", "tesslate-block-storage")
    assert storage["provisioner"] == "ebs.csi.aws.com"
    assert storage["parameters"] == {"type": "gp3", "fsType": "ext4", "encrypted": "true"}
    assert storage["volumeBindingMode"] == "WaitForFirstConsumer" and storage["allowVolumeExpansion"] is True
    snapshot_class = find(objects, "VolumeSnapshotClass", "tesslate-ebs-snapshots")
    assert (snapshot_class["driver"], snapshot_class["deletionPolicy"]) == ("ebs.csi.aws.com", "Retain")
    assert "suspend" not in find(objects, "CronJob", "snapshot-cleanup")["spec"]

    issuer = find(objects, "ClusterIssuer", "tesslate-letsencrypt-dns01")["spec"]["acme"]
    assert issuer["email"] == "platform@example.com"
    assert issuer["solvers"] == [{"dns01": {"cloudflare": {"apiTokenSecretRef": {
        "name": "cloudflare-api-token", "key": "api-token"}}}}]
    certificate = find(objects, "Certificate", "tesslate-wildcard-tls", "tesslate")["spec"]
    assert certificate["dnsNames"] == ["*.studio.example.com", "studio.example.com"]
    assert certificate["secretName"] == "tesslate-wildcard-tls"
    assert certificate["issuerRef"] == {"group": "cert-manager.io", "kind": "ClusterIssuer",
                                        "name": "tesslate-letsencrypt-dns01"}
    ingress = find(objects, "Ingress", "tesslate-ingress")["spec"]
    assert ingress["rules"][0]["host"] == "studio.example.com"
    assert ingress["tls"] == [{"hosts": ["studio.example.com"], "secretName": "tesslate-wildcard-tls"}]

    account = find(objects, "ServiceAccount", "tesslate-external-secrets", "tesslate")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == (
        "arn:aws:iam::123456789012:role/tesslate-external-secrets-aws-production")
    store = find(objects, "SecretStore", "aws-secrets-manager", "tesslate")
    assert store["apiVersion"] == "external-secrets.io/v1"
    assert store["spec"]["provider"]["aws"] == {"service": "SecretsManager", "region": "us-east-1", "auth": {
        "jwt": {"serviceAccountRef": {"name": "tesslate-external-secrets"}}}}
    external = find(objects, "ExternalSecret", "tesslate-app-secrets", "tesslate")
    assert external["apiVersion"] == "external-secrets.io/v1"
    assert external["spec"]["target"]["name"] == "tesslate-app-secrets"
    assert external["spec"]["secretStoreRef"] == {"kind": "SecretStore", "name": "aws-secrets-manager"}
    assert {(d["secretKey"], d["remoteRef"]["key"]) for d in external["spec"]["data"]} == {
        (key, f"tesslate/aws-production/tesslate-app-secrets/{key}")
        for key in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "LITELLM_API_BASE", "LITELLM_MASTER_KEY")}
    assert not [o for o in objects if o["kind"] == "SealedSecret"]

    # Rotation rolls the pods: the versions hash sits on the pod templates and on the ExternalSecret.
    expected = secret_versions_hash(list(environments_snapshot().environments[0].secrets))
    annotation = secret_checksum_annotation("tesslate-app-secrets")
    assert annotation == "checksum.tesslate.io/tesslate-app-secrets"
    for name in ("tesslate-backend", "tesslate-worker"):
        assert find(objects, "Deployment", name)["spec"]["template"]["metadata"]["annotations"][annotation] == expected
    assert external["metadata"]["annotations"]["checksum.tesslate.io/versions"] == expected


def test_secret_versions_hash_covers_keys_and_versions_never_values():
    from deployments.rendering import SecretSnapshot

    one = [SecretSnapshot("s", "A", 1, "sealed-x"), SecretSnapshot("s", "B", 2, "")]
    assert secret_versions_hash(one) == secret_versions_hash(list(reversed(one)))
    assert secret_versions_hash(one) == secret_versions_hash([SecretSnapshot("s", "A", 1, "other"),
                                                              SecretSnapshot("s", "B", 2, "sealed")])
    assert secret_versions_hash(one) != secret_versions_hash([SecretSnapshot("s", "A", 2, ""),
                                                              SecretSnapshot("s", "B", 2, "")])
    long_name = "a" * 100
    key = secret_checksum_annotation(long_name)
    prefix, name = key.split("/")
    assert len(name) <= 63 and name != long_name and key == secret_checksum_annotation(long_name)


# --- DOMAIN.md facts: projects ------------------------------------------------------------------------------------

PROJECT_ISOLATION = {
    "podSelector": {},
    "policyTypes": ["Ingress", "Egress"],
    "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "tesslate"}}},
        {"podSelector": {}},
    ]}],
    "egress": [
        {"to": [{"podSelector": {}}]},
        {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                 "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
         "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}],
         "ports": [{"protocol": "TCP", "port": 80}, {"protocol": "TCP", "port": 443}]},
    ],
}


def test_project_namespace_storage_and_workloads(demo_tree, tmp_path):
    project_id = str(demo_project_id("minikube", "todo-app"))
    namespace = f"proj-{project_id}"
    objects = build_all(demo_tree, tmp_path)[project_dir("minikube", "todo-app")]
    assert kinds(objects) == sorted([
        ("Namespace", namespace), ("NetworkPolicy", "project-isolation"),
        ("PersistentVolumeClaim", "project-storage"), ("PersistentVolumeClaim", "svc-db-data"),
        ("Deployment", "file-manager"), ("Deployment", "dev-frontend"), ("Deployment", "dev-backend"),
        ("Deployment", "svc-db"), ("Service", "dev-frontend"), ("Service", "dev-backend"), ("Service", "svc-db"),
        ("Ingress", "dev-frontend"), ("Ingress", "dev-backend"), ("SealedSecret", "svc-db-credentials"),
    ])
    assert all(o["metadata"].get("namespace") == namespace for o in objects if o["kind"] != "Namespace")
    standard = {"app.kubernetes.io/managed-by": "tesslate-portal", "tesslate.io/project-id": project_id,
                "tesslate.io/user-id": "user-alice"}
    assert find(objects, "Namespace", namespace)["metadata"]["labels"] == standard
    assert find(objects, "NetworkPolicy", "project-isolation")["spec"] == PROJECT_ISOLATION

    volume = find(objects, "PersistentVolumeClaim", "project-storage")["spec"]
    assert (volume["accessModes"], volume["resources"]["requests"]["storage"], volume["storageClassName"]) == (
        ["ReadWriteOnce"], "5Gi", "tesslate-block-storage")
    assert "dataSource" not in volume

    manager = find(objects, "Deployment", "file-manager")["spec"]["template"]
    assert manager["metadata"]["labels"]["tesslate.io/component"] == "file-manager"
    assert manager["metadata"]["labels"]["app"] == "file-manager"
    files = container(manager["spec"], "file-manager")
    assert files["image"] == "tesslate-devserver:latest" and files["imagePullPolicy"] == "Never"
    assert files["volumeMounts"] == [{"name": "project-storage", "mountPath": "/app"}]
    assert files["resources"] == {"requests": {"memory": "256Mi", "cpu": "50m"},
                                  "limits": {"memory": "1536Mi", "cpu": "1"}}
    assert (manager["spec"]["securityContext"]["runAsUser"], manager["spec"]["securityContext"]["fsGroup"]) == (
        1000, 1000)
    assert manager["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "project-storage"

    affinity = {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {
        "labelSelector": {"matchLabels": {"tesslate.io/project-id": project_id}},
        "topologyKey": "kubernetes.io/hostname"}}]}}
    for directory, port in (("frontend", 5173), ("backend", 8000)):
        deployment = find(objects, "Deployment", f"dev-{directory}")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels == {**standard, "app": "dev-container", "tesslate.io/component": "dev-container",
                          "tesslate.io/container-directory": directory,
                          "tesslate.io/container-id": str(demo_container_id("minikube", "todo-app", directory))}
        pod = deployment["spec"]["template"]["spec"]
        assert pod["affinity"] == affinity
        assert "nodeSelector" not in pod and "tolerations" not in pod, "minikube has no spot node group"
        dev = container(pod, "dev-server")
        assert dev["ports"] == [{"name": "http", "containerPort": port}]
        assert dev["volumeMounts"] == [{"name": "project-storage", "mountPath": "/app"}]
        assert dev["imagePullPolicy"] == "Never"
        service = find(objects, "Service", f"dev-{directory}")["spec"]
        assert service["ports"][0]["port"] == port
        assert service["selector"].items() <= labels.items()
        ingress = find(objects, "Ingress", f"dev-{directory}")
        assert ingress["spec"]["rules"][0]["host"] == f"todo-app-{directory}.localhost"
        assert ingress["spec"]["ingressClassName"] == "nginx" and "tls" not in ingress["spec"]
        assert ingress["metadata"]["annotations"] == {
            "nginx.ingress.kubernetes.io/proxy-http-version": "1.1",
            "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
            "nginx.ingress.kubernetes.io/proxy-send-timeout": "3600"}
        backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend == {"name": f"dev-{directory}", "port": {"number": port}}

    database = find(objects, "Deployment", "svc-db")
    assert database["spec"]["template"]["metadata"]["labels"]["tesslate.io/component"] == "service-container"
    assert database["spec"]["template"]["metadata"]["labels"]["tesslate.io/container-directory"] == "db"
    assert database["spec"]["strategy"] == {"type": "Recreate"}
    db = container(database["spec"]["template"]["spec"], "service")
    assert db["image"] == "postgres:16-alpine" and db["imagePullPolicy"] == "IfNotPresent"
    assert database["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "svc-db-data"
    data = find(objects, "PersistentVolumeClaim", "svc-db-data")["spec"]
    assert data["resources"]["requests"]["storage"] == "2Gi"
    assert find(objects, "Service", "svc-db")["spec"]["ports"][0]["port"] == 5432


def test_projects_on_eks_go_to_spot_nodes_with_tls(demo_tree, tmp_path):
    objects = build_all(demo_tree, tmp_path)[project_dir("aws-production", "crm-dashboard")]
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    for name in ("dev-frontend", "dev-backend", "file-manager", "svc-db"):
        pod = find(objects, "Deployment", name)["spec"]["template"]["spec"]
        assert "nodeSelector" not in pod, "spot nodes are a preference, never a requirement"
        assert pod["affinity"]["nodeAffinity"] == {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 50, "preference": {"matchExpressions": [
                {"key": "tesslate.io/workload-type", "operator": "In", "values": ["user-project"]}]}}]}, name
        assert pod["tolerations"] == [{"key": "tesslate.io/spot", "operator": "Equal", "value": "true",
                                       "effect": "PreferNoSchedule"}], name
    dev = container(find(objects, "Deployment", "dev-frontend")["spec"]["template"]["spec"], "dev-server")
    assert dev["image"] == f"{registry}/tesslate-devserver:production"
    assert dev["imagePullPolicy"] == "IfNotPresent"
    ingress = find(objects, "Ingress", "dev-frontend")["spec"]
    assert ingress["rules"][0]["host"] == "crm-dashboard-frontend.studio.example.com"
    assert ingress["tls"] == [{"hosts": ["crm-dashboard-frontend.studio.example.com"],
                               "secretName": "tesslate-wildcard-tls"}]
    assert not [o for o in objects if o["kind"] == "Ingress" and o["metadata"]["name"].startswith("svc-")]
    kustomization = yaml.safe_load(demo_tree[project_dir("aws-production", "crm-dashboard") + "/kustomization.yaml"])
    assert kustomization["images"] == [{"name": "tesslate-devserver", "newName": f"{registry}/tesslate-devserver",
                                        "newTag": "production"}]


def test_restored_project_gets_a_pre_provisioned_snapshot(demo_tree, tmp_path):
    namespace = f"proj-{demo_project_id('aws-production', 'portfolio')}"
    objects = build_all(demo_tree, tmp_path)[project_dir("aws-production", "portfolio")]
    content = next(o for o in objects if o["kind"] == "VolumeSnapshotContent")
    assert "namespace" not in content["metadata"], "VolumeSnapshotContent is cluster-scoped"
    snapshot = find(objects, "VolumeSnapshot", "restore-snap-0123456789abcdef0", namespace)
    assert content["apiVersion"] == snapshot["apiVersion"] == "snapshot.storage.k8s.io/v1"
    assert content["spec"] == {
        "deletionPolicy": "Retain", "driver": "ebs.csi.aws.com",
        "source": {"snapshotHandle": "snap-0123456789abcdef0"},
        "volumeSnapshotClassName": "tesslate-ebs-snapshots",
        "volumeSnapshotRef": {"name": snapshot["metadata"]["name"], "namespace": namespace},
    }
    assert snapshot["spec"] == {"volumeSnapshotClassName": "tesslate-ebs-snapshots",
                                "source": {"volumeSnapshotContentName": content["metadata"]["name"]}}
    volume = find(objects, "PersistentVolumeClaim", "project-storage")["spec"]
    assert volume["dataSource"] == {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot",
                                    "name": snapshot["metadata"]["name"]}
    crm = build_all(demo_tree, tmp_path)[project_dir("aws-production", "crm-dashboard")]
    assert not [o for o in crm if o["kind"] in ("VolumeSnapshot", "VolumeSnapshotContent")]


def test_only_active_projects_have_a_folder(demo, demo_tree):
    blog = Project.objects.get(slug="blog")
    assert blog.state == Project.State.HIBERNATED
    assert not [path for path in demo_tree if str(blog.id) in path]
    assert f"proj-{blog.id}" not in yaml.safe_load(
        demo_tree["environments/aws-production/projects/kustomization.yaml"])["resources"]
    landing = Project.objects.get(slug="landing-page")
    Project.objects.filter(pk=landing.pk).update(state=Project.State.DELETED)
    Project.objects.filter(pk=blog.pk).update(state=Project.State.ACTIVE)
    tree = render_tree(environments_snapshot())
    assert not [path for path in tree if str(landing.id) in path]
    assert f"environments/aws-production/projects/proj-{blog.id}/kustomization.yaml" in tree
    index = yaml.safe_load(tree["environments/minikube/projects/kustomization.yaml"])
    assert index["resources"] == [f"proj-{demo_project_id('minikube', 'todo-app')}"]


# --- DOMAIN.md facts: GitOps consumers ----------------------------------------------------------------------------

def test_argocd_entry_point(demo_tree, tmp_path):
    objects = [o for o in build_all(demo_tree, tmp_path)["clusters/aws-production"]
               if not o["metadata"]["name"].startswith(("addon-", "tesslate-addons-"))]  # test_workloads_addons.py
    assert kinds(objects) == [("AppProject", "tesslate-aws-production"),
                              ("Application", "tesslate-platform-aws-production"),
                              ("ApplicationSet", "tesslate-projects-aws-production")]
    assert all(o["metadata"]["namespace"] == "argocd" for o in objects)
    retry = {"limit": -1, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "5m"}}
    sync = {"automated": {"prune": True, "selfHeal": True}, "syncOptions": ["CreateNamespace=true"], "retry": retry}
    platform = find(objects, "Application", "tesslate-platform-aws-production")
    assert platform["metadata"]["finalizers"] == ["resources-finalizer.argocd.argoproj.io"]
    assert "annotations" not in platform["metadata"], "no sync waves: nothing would enforce them"
    assert platform["spec"]["source"] == {"repoURL": SOURCE_URL, "targetRevision": BRANCH,
                                          "path": "environments/aws-production/platform"}
    assert platform["spec"]["syncPolicy"] == sync
    assert platform["spec"]["project"] == "tesslate-aws-production"
    appset = find(objects, "ApplicationSet", "tesslate-projects-aws-production")["spec"]
    assert appset["generators"] == [{"git": {"repoURL": SOURCE_URL, "revision": BRANCH, "directories": [
        {"path": "environments/aws-production/projects/*"}]}}]
    template = appset["template"]
    assert template["metadata"]["finalizers"] == ["resources-finalizer.argocd.argoproj.io"]
    assert "annotations" not in template["metadata"]
    assert template["spec"]["syncPolicy"] == {**sync, "syncOptions": ["CreateNamespace=true",
                                                                      "RespectIgnoreDifferences=true"]}
    assert template["spec"]["source"]["path"] == "{{ .path.path }}"
    assert template["spec"]["destination"]["namespace"] == "{{ .path.basename }}"
    project = find(objects, "AppProject", "tesslate-aws-production")["spec"]
    assert project["sourceRepos"] == [SOURCE_URL]
    assert {(k["group"], k["kind"]) for k in project["clusterResourceWhitelist"]} >= {
        ("", "Namespace"), ("snapshot.storage.k8s.io", "VolumeSnapshotContent"), ("cert-manager.io", "ClusterIssuer"),
        ("storage.k8s.io", "StorageClass")}


def test_flux_entry_point(demo_tree, tmp_path):
    objects = [o for o in build_all(demo_tree, tmp_path)["clusters/minikube"]
               if o["kind"] not in ("HelmRepository", "HelmRelease")]  # the add-ons: test_workloads_addons.py
    assert kinds(objects) == [("GitRepository", "tesslate-gitops"), ("Kustomization", "tesslate-platform-minikube"),
                              ("Kustomization", "tesslate-projects-minikube")]
    assert all(o["metadata"]["namespace"] == "flux-system" for o in objects)
    source = find(objects, "GitRepository", "tesslate-gitops")
    assert source["apiVersion"] == "source.toolkit.fluxcd.io/v1"
    assert source["spec"]["url"] == SOURCE_URL and source["spec"]["ref"] == {"branch": BRANCH}
    platform = find(objects, "Kustomization", "tesslate-platform-minikube")
    projects = find(objects, "Kustomization", "tesslate-projects-minikube")
    for kustomization, path in ((platform, "./environments/minikube/platform"),
                                (projects, "./environments/minikube/projects")):
        spec = kustomization["spec"]
        assert kustomization["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
        assert spec["path"] == path and spec["prune"] is True and spec["wait"] is True
        assert spec["sourceRef"] == {"kind": "GitRepository", "name": "tesslate-gitops"}
        assert spec["interval"] and spec["timeout"]
    assert projects["spec"]["dependsOn"] == [{"name": "tesslate-platform-minikube"}]
    assert "dependsOn" not in platform["spec"]


# --- other environment shapes -------------------------------------------------------------------------------------

def test_sealed_secrets_carry_only_sealed_keys(gitops_source, tmp_path):
    environment = environment_factory(name="lab", app_domain="lab.example.com")
    sealed = secret_factory(environment, key="SECRET_KEY", secret_name="tesslate-app-secrets")
    secret_factory(environment, key="DATABASE_URL", secret_name="tesslate-app-secrets")
    other = secret_factory(environment, key="S3_REGION", secret_name="s3-credentials")
    Secret.objects.filter(pk=sealed.pk).update(sealed_value="AgBsealed+value/1==")
    Secret.objects.filter(pk=other.pk).update(sealed_value="AgBother==")
    tree = render_tree(environments_snapshot())
    assert_valid_yaml_files(tree)
    objects = build_all(tree, tmp_path)["environments/lab/platform"]
    app = find(objects, "SealedSecret", "tesslate-app-secrets", "tesslate")
    assert app["apiVersion"] == "bitnami.com/v1alpha1"
    assert app["spec"]["encryptedData"] == {"SECRET_KEY": "AgBsealed+value/1=="}
    assert app["spec"]["template"]["metadata"] == {"name": "tesslate-app-secrets", "namespace": "tesslate"}
    assert not {key for key in app["metadata"].get("annotations", {}) if key.startswith("sealedsecrets.bitnami.com")}
    assert find(objects, "SealedSecret", "s3-credentials", "tesslate")["spec"]["encryptedData"] == {
        "S3_REGION": "AgBother=="}
    backend = find(objects, "Deployment", "tesslate-backend")["spec"]["template"]
    assert backend["spec"]["containers"][0]["envFrom"] == [
        {"configMapRef": {"name": "tesslate-config"}}, {"secretRef": {"name": "s3-credentials"}},
        {"secretRef": {"name": "tesslate-app-secrets"}}]
    assert backend["metadata"]["annotations"]["checksum.tesslate.io/tesslate-app-secrets"] == (
        app["metadata"]["annotations"]["checksum.tesslate.io/versions"])
    assert app["metadata"]["annotations"]["checksum.tesslate.io/versions"] == secret_versions_hash(
        [next(s for s in environments_snapshot().environments[0].secrets if s.key == "SECRET_KEY")])
    assert_objects_validate(objects)


def test_letsencrypt_http01_environment(gitops_source, tmp_path):
    environment = eks_environment_factory(name="beta", app_domain="beta.example.com", image_tag="beta",
                                          tls_mode=Environment.TLSMode.LETSENCRYPT_HTTP01, storage_encrypted=False,
                                          secrets_manager_role_arn="arn:aws:iam::123456789012:role/custom-reader")
    node_group_factory(environment, name="spot", capacity_type=NodeGroup.CapacityType.SPOT,
                       hosts=NodeGroup.Hosts.BOTH, labels="", taints="tesslate.io/spot:NoSchedule")
    secret_factory(environment, key="SECRET_KEY")
    project = project_factory(environment, containers=("web",), slug="shop")
    container_factory(project, directory="cache", role=Container.Role.SERVICE, image="redis:7", port=6379)
    tree = render_tree(environments_snapshot())
    assert_valid_yaml_files(tree)
    built = build_all(tree, tmp_path)
    platform = built["environments/beta/platform"]
    issuer = find(platform, "ClusterIssuer", "tesslate-letsencrypt-http01")["spec"]["acme"]
    assert issuer["solvers"] == [{"http01": {"ingress": {"ingressClassName": "nginx"}}}]
    assert not [o for o in platform if o["kind"] == "Certificate"]
    ingress = find(platform, "Ingress", "tesslate-ingress")
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "tesslate-letsencrypt-http01"
    assert ingress["spec"]["tls"] == [{"hosts": ["beta.example.com"], "secretName": "tesslate-tls"}]
    assert find(platform, "StorageClass", "tesslate-block-storage")["parameters"]["encrypted"] == "false"
    account = find(platform, "ServiceAccount", "tesslate-external-secrets", "tesslate")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == (
        "arn:aws:iam::123456789012:role/custom-reader")
    objects = built[f"environments/beta/projects/proj-{project.id}"]
    web = find(objects, "Ingress", "dev-web")
    assert web["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "tesslate-letsencrypt-http01"
    assert web["spec"]["tls"] == [{"hosts": ["shop-web.beta.example.com"], "secretName": "dev-web-tls"}]
    pod = find(objects, "Deployment", "dev-web")["spec"]["template"]["spec"]
    # A taint without a value is tolerated with Exists; a group without labels adds no nodeSelector.
    assert pod["tolerations"] == [{"key": "tesslate.io/spot", "operator": "Exists", "effect": "NoSchedule"}]
    assert "nodeSelector" not in pod
    cache = container(find(objects, "Deployment", "svc-cache")["spec"]["template"]["spec"], "service")
    assert cache["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    for objects_ in built.values():
        assert_objects_validate(objects_)


def test_compose_environment_gets_its_own_folder_and_no_cluster_entry(gitops_source):
    environment = environment_factory(name="single-server", kind=Environment.Kind.COMPOSE)
    project_factory(environment, slug="site")
    snapshot = environments_snapshot(environment_ids=[environment.id])
    tree = render_tree(snapshot)
    compose_files = sorted(path for path in tree if not path.startswith("platform/base/"))
    assert compose_files and all(path.startswith("environments/single-server/") for path in compose_files)
    assert "environments/single-server/compose/compose.yaml" in tree
    assert not any(path.startswith("clusters/") for path in tree)
    assert [unit.key for unit in tree_units(snapshot)] == ["env:single-server:compose", "shared:platform-base"]
    assert snapshot_scopes(snapshot) == ("clusters/single-server/", "environments/single-server/", "platform/base/")


def test_environment_without_secrets_or_projects_builds(gitops_source, tmp_path):
    environment = environment_factory(name="empty", gitops_tool=Environment.GitOpsTool.ARGOCD)
    tree = render_tree(environments_snapshot(environment_ids=[environment.id]))
    assert_valid_yaml_files(tree)
    assert yaml.safe_load(tree["environments/empty/projects/kustomization.yaml"])["resources"] == []
    assert "environments/empty/platform/secrets.yaml" not in tree
    built = build_all(tree, tmp_path)
    assert built["environments/empty/projects"] == []
    backend = find(built["environments/empty/platform"], "Deployment", "tesslate-backend")["spec"]["template"]
    assert backend["spec"]["containers"][0]["envFrom"] == [{"configMapRef": {"name": "tesslate-config"}}]


# --- scopes and the snapshot --------------------------------------------------------------------------------------

def test_scopes_of_full_and_partial_snapshots(demo):
    assert demo.covers_all_environments
    assert snapshot_scopes(demo) == ("platform/base/", "clusters/", "environments/")
    minikube = Environment.objects.get(name="minikube")
    partial = environments_snapshot(environment_ids=[minikube.id])
    assert not partial.covers_all_environments and partial.environment_names == ("minikube",)
    assert partial.environment_ids == (minikube.id,)
    assert snapshot_scopes(partial) == ("clusters/minikube/", "environments/minikube/", "platform/base/")
    tree = render_tree(partial)
    assert tree and all(any(path.startswith(scope) for scope in snapshot_scopes(partial)) for path in tree)
    assert not [path for path in tree if "aws-production" in path]
    assert {path: content for path, content in render_tree(demo).items()
            if path.startswith(("platform/base/", "clusters/minikube/", "environments/minikube/"))} == tree
    nothing = environments_snapshot(environment_ids=[])
    assert nothing.environments == () and snapshot_scopes(nothing) == ("platform/base/",)


def _project_with_containers(environment, n: int) -> None:
    for _ in range(n):
        project = project_factory(environment, containers=("frontend", "backend"))
        container_factory(project, directory="db", role=Container.Role.DATABASE, image="postgres:16-alpine",
                          port=5432)


def test_snapshot_reads_in_a_constant_number_of_queries(gitops_source):
    environment = eks_environment_factory(name="scale")
    node_group_factory(environment, name="spot", capacity_type=NodeGroup.CapacityType.SPOT,
                       hosts=NodeGroup.Hosts.USER_PROJECTS, labels="tesslate.io/workload-type=user-project")
    secret_factory(environment, key="SECRET_KEY")
    other = environment_factory(name="other")
    _project_with_containers(environment, 5)
    with CaptureQueriesContext(connection) as small:
        snapshot = environments_snapshot()
    assert sum(len(env.projects) for env in snapshot.environments) == 5
    _project_with_containers(environment, 45)
    _project_with_containers(other, 5)
    with CaptureQueriesContext(connection) as large:
        snapshot = environments_snapshot()
    assert sum(len(env.projects) for env in snapshot.environments) == 55
    assert all(len(project.containers) == 3 for env in snapshot.environments for project in env.projects)
    assert len(small.captured_queries) == len(large.captured_queries) == 7


def test_snapshot_is_plain_immutable_data(demo):
    import dataclasses

    from django.db.models import Model

    def walk(value):
        assert not isinstance(value, Model)
        if dataclasses.is_dataclass(value):
            assert value.__dataclass_params__.frozen
            for field in dataclasses.fields(value):
                if field.name == "load_projects":  # the reader of a lazy snapshot; an eager one has none
                    assert getattr(value, field.name) is None
                    continue
                walk(getattr(value, field.name))
        elif isinstance(value, (list, dict, set)):
            pytest.fail(f"mutable {type(value).__name__} in the snapshot")
        elif isinstance(value, tuple):
            for item in value:
                walk(item)
        else:
            assert isinstance(value, (str, int, bool)), type(value)

    walk(demo)
    with pytest.raises(dataclasses.FrozenInstanceError):
        demo.repo_url = "x"
    assert (demo.repo_url, demo.branch) == (SOURCE_URL, BRANCH)
    assert demo.environment_names == ("aws-production", "minikube", "single-server")
    production = demo.environments[0]
    assert [p.slug for p in production.projects] == sorted(
        ["crm-dashboard", "portfolio"], key=lambda slug: str(demo_project_id("aws-production", slug)))
    assert [(g.name, g.labels, g.taints) for g in production.node_groups] == [
        ("primary", (), ()),
        ("spot", (("tesslate.io/workload-type", "user-project"),), (("tesslate.io/spot", "true", "PreferNoSchedule"),)),
    ]


# --- scale --------------------------------------------------------------------------------------------------------

def _synthetic_snapshot(projects: int) -> TreeSnapshot:
    def make(directory: str, role: str, image: str, port: int) -> ContainerSnapshot:
        return ContainerSnapshot(directory=directory, role=role, image=image, port=port, cpu_request="100m",
                                 cpu_limit="1", memory_request="256Mi", memory_limit="1Gi", data_volume_size="1Gi",
                                 uuid=str(uuid.uuid5(uuid.NAMESPACE_URL, directory)), start_command="", env_vars=(),
                                 probe="", probe_path="/", startup_timeout_seconds=600, credentials=())

    containers = (make("backend", "backend", "tesslate-devserver:latest", 8000),
                  make("db", "database", "postgres:16-alpine", 5432),
                  make("frontend", "frontend", "tesslate-devserver:latest", 5173))
    environment = EnvironmentSnapshot(
        id=1, name="scale", kind="eks", gitops_tool="argocd", app_domain="scale.example.com", ingress_class="nginx",
        ingress_controller_namespace="ingress-nginx",
        tls_mode="cert-manager-dns01", acme_email="ops@example.com", cloudflare_api_token_secret="cloudflare",
        storage_class_name="tesslate-block-storage", storage_provisioner="ebs-gp3", storage_encrypted=True,
        volume_snapshot_class="tesslate-ebs-snapshots", hibernation_idle_minutes=10, snapshot_retention_days=30,
        max_snapshots_per_project=5, image_registry="123456789012.dkr.ecr.us-east-1.amazonaws.com",
        image_tag="production", backend_replicas=2, backend_cpu_request="1", backend_cpu_limit="4",
        backend_memory_request="2Gi", backend_memory_limit="4Gi", backend_readiness_path="/health",
        datastore_mode="external", aws_account_id="123456789012",
        aws_region="us-east-1", eks_cluster_name="scale", secrets_manager_role_arn="", disabled_addons=(),
        node_groups=(NodeGroupSnapshot(name="spot", capacity_type="SPOT", hosts="user-projects",
                                       labels=(("tesslate.io/workload-type", "user-project"),),
                                       taints=(("tesslate.io/spot", "true", "PreferNoSchedule"),)),),
        secrets=(),
        projects=tuple(ProjectSnapshot(id=str(uuid.UUID(int=n)), slug=f"project-{n}", owner=f"user-{n}",
                                       volume_size="5Gi", restore_snapshot_id="", containers=containers)
                       for n in range(projects)),
    )
    return TreeSnapshot(repo_url=SOURCE_URL, branch=BRANCH, environments=(environment,), covers_all_environments=True)


def test_thousands_of_projects_render_in_seconds():
    snapshot = _synthetic_snapshot(2000)
    started = time.perf_counter()
    units = tree_units(snapshot)
    units_seconds = time.perf_counter() - started
    tree = render_tree(snapshot)
    seconds = time.perf_counter() - started
    print(f"\n2,000 projects x 3 containers: tree_units {units_seconds:.3f}s, render_tree {seconds:.2f}s, "
          f"{len(tree)} files")
    # Per project 8 files; the base 10, the overlay 13 (EKS: secrets.yaml holds the ClusterSecretStore even without
    # secrets), clusters/ 5, the projects index 1.
    assert len(units) == 2000 + 3 + 1 and len(tree) == 2000 * 8 + 10 + 13 + 5 + 1
    assert units_seconds < 2, "tree_units must stay cheap (hashing, no rendering)"
    # About 1.2 s on the 2-core CI machine; the bound leaves room for a busy machine, not for a slow renderer.
    assert seconds < 15
