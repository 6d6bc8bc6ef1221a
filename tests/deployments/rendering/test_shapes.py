"""The shape memo (deployments/rendering/shapes.py): projects that differ only in their names render once per run,
and what it writes is byte for byte what render_project writes, for every kind of value and every project."""

import hashlib
import uuid
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from deployments.rendering import render_tree, shapes, tree_units
from deployments.rendering.projects import ProjectEnvironment, render_project
from deployments.rendering.snapshot import VolumeRestoreSnapshot
from deployments.selectors import environments_snapshot
from projects.demo import demo_load

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(settings):
    settings.GITOPS_SOURCE_URL = "https://git.example.com/tesslate/gitops.git"
    settings.GITOPS_BRANCH = "main"
    demo_load()
    return environments_snapshot()


def _kubernetes_projects(snapshot):
    """(ProjectEnvironment, project) of every project of the demo's Kubernetes environments (Minikube with Sealed
    Secrets, EKS with External Secrets, a restore and a hibernation), under Argo CD and Flux."""
    pairs = []
    for env in snapshot.environments:
        if not env.is_kubernetes:
            continue
        for tool in ("argocd", "flux"):
            penv = replace(ProjectEnvironment.of(env), gitops_tool=tool)
            pairs += [(penv, project) for project in env.projects]
    assert len(pairs) >= 8
    return pairs


def _named(project, project_id: str, slug: str, owner: str, container_ids: list[str]):
    containers = tuple(replace(container, uuid=container_ids[index % len(container_ids)])
                       for index, container in enumerate(project.containers))
    return replace(project, id=project_id, slug=slug, owner=owner, containers=containers)


def _counting(monkeypatch) -> list:
    calls = []
    original = shapes.render_project

    def counted(penv, project):
        calls.append(project.id)
        return original(penv, project)
    monkeypatch.setattr(shapes, "render_project", counted)
    return calls


# Values of every YAML class: plain words, digit starts (quoted), reserved words (quoted), words that need escapes,
# empty text, and UUIDs starting with a digit or a letter (upper case: not an id the memo replaces).
WORDS = ["p1", "web-app", "a", "Z", "x.y", "a_b", "1p", "0", "12345", "1e3", "yes", "No", "null", "on", "TRUE", "y",
         "", "user: 1", "a b", "-x", "_x", "x:", "ü", 'say "hi"', "back\\slash", "tab\there", "# x"]
IDS = st.one_of(st.uuids().map(str), st.uuids().map(lambda value: str(value).upper()), st.sampled_from(WORDS))


@given(data=st.data())
@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_memo_writes_what_render_project_writes(demo, data):
    """Any sequence of projects, sharing shapes or not, with any ids, slugs, owners and container ids: the memo's
    files equal render_project's, path for path and byte for byte."""
    pairs = _kubernetes_projects(demo)
    memos = {}
    names = st.tuples(IDS, st.one_of(st.sampled_from(WORDS), st.text(max_size=12)),
                      st.one_of(st.sampled_from(WORDS), st.text(max_size=12)), st.lists(IDS, min_size=1, max_size=3))
    picks = data.draw(st.lists(st.tuples(st.integers(0, len(pairs) - 1), names), min_size=3, max_size=24))
    for index, (project_id, slug, owner, container_ids) in picks:
        penv, project = pairs[index]
        named = _named(project, project_id, slug, owner, container_ids)
        memo = memos.setdefault(penv, shapes.ProjectShapes(penv))
        assert memo(named) == render_project(penv, named)


@pytest.mark.parametrize("slot", ["id", "slug", "owner", "container id"])
def test_every_kind_of_value_in_every_slot_fills_in_as_render_project_writes_it(demo, slot):
    """Each value of WORDS (and ids starting with a digit or a letter) in each slot, three projects of one shape
    each (the third is filled in where the memo takes the value): every file equals render_project's."""
    filled = 0
    for penv, project in _kubernetes_projects(demo):
        memo = shapes.ProjectShapes(penv)
        for value in [*WORDS, "0" + str(uuid.uuid4())[1:], "e" + str(uuid.uuid4())[1:]]:
            for number in range(3):
                names = {"id": "a" + str(uuid.uuid4())[1:], "slug": f"app-{number}", "owner": f"user-{number}",
                         "container id": "b" + str(uuid.uuid4())[1:]}
                names[slot] = value
                named = _named(project, names["id"], names["slug"], names["owner"], [names["container id"]])
                assert memo(named) == render_project(penv, named), (slot, value)
        filled += sum(isinstance(entry, shapes._Filled) for entry in memo._shapes.values())
    assert filled  # the memo did fill projects in


def test_a_shape_renders_twice_then_is_filled_in(demo, monkeypatch):
    """Thirty projects of one shape (as projects from one template are): the first renders directly, the second
    directly and with stand-ins (the check), the other 28 are filled in without rendering. Each is exactly its
    direct render, including ids that start with a digit (quoted in YAML) next to ones that start with a letter."""
    penv, project = next((penv, project) for penv, project in _kubernetes_projects(demo)
                         if project.containers and not project.hibernation_stamp and not project.restores
                         and not project.restore_snapshot_id and penv.gitops_tool == "argocd")
    named = [_named(project, "a" + str(uuid.uuid4())[1:], f"app-{number}", f"user-{number}",
                    ["f" + str(uuid.uuid4())[1:] for _ in project.containers]) for number in range(30)]
    expected = [render_project(penv, each) for each in named]
    calls = _counting(monkeypatch)
    memo = shapes.ProjectShapes(penv)
    assert [memo(each) for each in named] == expected
    assert len(calls) == 3  # first project, second project, the stand-ins
    assert sum(isinstance(entry, shapes._Filled) for entry in memo._shapes.values()) == 1

    # A project whose id starts with a digit is another shape (its id is double-quoted where it stands alone).
    digit_first = replace(named[0], id="1" + named[0].id[1:])
    assert memo(digit_first) == render_project(penv, digit_first)
    assert len(calls) == 4


@pytest.mark.parametrize("change", ["hibernation", "restore"])
def test_names_cut_from_an_id_render_directly(demo, monkeypatch, change):
    """A hibernation's VolumeSnapshots are named after the first 8 characters of the project id, a restore's
    VolumeSnapshotContent after the last 8 of the namespace: a stand-in cannot be filled into those, so the shape
    renders directly (and still correctly) for the rest of the run."""
    penv, project = next((penv, project) for penv, project in _kubernetes_projects(demo)
                         if penv.supports_snapshots and project.containers)
    if change == "hibernation":
        project = replace(project, hibernation_stamp="20260101-120000", restores=(), restore_snapshot_id="")
    else:
        project = replace(project, hibernation_stamp="", restore_snapshot_id="", restores=(VolumeRestoreSnapshot(
            volume_name="project-storage", source_snapshot_name="snap-1a2b3c4d-20260101-120000",
            snapshot_handle="snap-0123456789abcdef0"),))
    named = [_named(project, "a" + str(uuid.uuid4())[1:], f"app-{n}", f"user-{n}", ["b" + str(uuid.uuid4())[1:]])
             for n in range(6)]
    calls = _counting(monkeypatch)
    memo = shapes.ProjectShapes(penv)
    assert [memo(each) for each in named] == [render_project(penv, each) for each in named]
    assert len(calls) == 6 + 1  # every project directly, plus the stand-ins at the second
    assert list(memo._shapes.values()) == [shapes._DIRECT]


@pytest.mark.parametrize("use", ["hash", "cut"])
def test_a_value_used_as_more_than_text_is_caught_at_the_second_project(demo, monkeypatch, use):
    """If the renderer ever hashed a project's owner, or cut its slug, into a file, filling in would write the
    stand-in's hash or piece: the check at a shape's second project sees it, and the shape renders directly."""
    original = shapes.render_project

    def render_with_derived_value(penv, project):
        files = dict(original(penv, project))
        derived = hashlib.sha256(project.owner.encode()).hexdigest() if use == "hash" else project.slug[:9]
        files[f"environments/{penv.name}/projects/{project.namespace}/derived.txt"] = derived.encode()
        return files

    monkeypatch.setattr(shapes, "render_project", render_with_derived_value)
    penv, project = next((penv, project) for penv, project in _kubernetes_projects(demo)
                         if not project.hibernation_stamp and not project.restores and not project.restore_snapshot_id)
    named = [_named(project, "c" + str(uuid.uuid4())[1:], f"application-{n}", f"user-{n}",
                    ["d" + str(uuid.uuid4())[1:]]) for n in range(5)]
    memo = shapes.ProjectShapes(penv)
    assert [memo(each) for each in named] == [render_with_derived_value(penv, each) for each in named]
    assert list(memo._shapes.values()) == [shapes._DIRECT]


def test_one_memo_per_tree_units_call(demo):
    """A memo lives for one tree_units call: two calls share nothing, and the tree is the same either way."""
    def memos(units):
        return {unit.render.func for unit in units if isinstance(getattr(unit.render, "func", None),
                                                                 shapes.ProjectShapes)}
    first, again = memos(tree_units(demo)), memos(tree_units(demo))
    assert first and again and not first & again
    assert render_tree(demo) == render_tree(demo)


def test_a_project_that_differs_in_anything_else_is_another_shape(demo):
    """Once a shape is learned, a project that differs from it in any other field (of the project or of one of its
    containers) is never filled in from it: each such variant renders as render_project renders it."""
    penv, project = next((penv, project) for penv, project in _kubernetes_projects(demo)
                         if project.containers and not project.hibernation_stamp and not project.restores
                         and not project.restore_snapshot_id)
    memo = shapes.ProjectShapes(penv)

    def named(base, number):
        return _named(base, "a" + str(uuid.uuid4())[1:], f"app-{number}", f"user-{number}",
                      ["b" + str(uuid.uuid4())[1:]])

    for number in range(3):
        memo(named(project, number))
    assert any(isinstance(entry, shapes._Filled) for entry in memo._shapes.values())
    container = project.containers[0]
    variants = [replace(project, volume_size="7Gi"), replace(project, stopped=not project.stopped),
                replace(project, render_token="another-token"),
                replace(project, containers=(replace(container, port=container.port + 1), *project.containers[1:])),
                replace(project, containers=(replace(container, env_vars=(("A", "1"),)), *project.containers[1:])),
                replace(project, containers=(replace(container, memory_limit="3Gi"), *project.containers[1:])),
                replace(project, containers=project.containers[1:])]
    for number, variant in enumerate(variants):
        each = named(variant, 10 + number)
        assert memo(each) == render_project(penv, each)
