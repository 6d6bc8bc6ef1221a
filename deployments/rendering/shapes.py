"""Projects of one shape render once per run: a memo of project folders by everything but their names.

At thousands of projects most folders differ only in four kinds of value: the project's id (and so its namespace
``proj-{id}``), its slug (the hosts), its owner (the ``tesslate.io/user-id`` labels) and its containers' ids (the
``tesslate.io/container-id`` labels). Projects made from one template share everything else: containers,
images, ports, probes, resources, volume sizes. ``ProjectShapes`` renders such a *shape* once, with stand-in
values, and writes each further project of that shape by putting its own values where the stand-ins are. The
bytes are those ``render_project`` writes; only the jinja2 and YAML work is saved.

Why the filled-in bytes equal a direct render:

- a value is replaced only when it is a label-like word (``[A-Za-z0-9][-A-Za-z0-9_.]*``; ids: a lowercase UUID),
  which YAML never escapes. Its stand-in is a random word of the same *class*: starting with a digit when the value
  does (then every scalar that starts with it is double-quoted, stand-in or not), else with a letter, and then the
  value must be a plain scalar itself (``yes``, ``null``, ``true``... are not: those render directly). So every
  scalar holding the value is quoted, or not, as the one holding the stand-in. Any other value stays in the
  shape as it is (it is part of the key, never replaced);
- a shape is trusted only from its third project on: at its second, the stand-in render filled with that
  project's values must equal that project's direct render byte for byte (a hash of a value or an order by it
  would differ) and hold no piece of a stand-in outside the whole ones (a cut, such as the first 8 characters of
  the id in a hibernation's VolumeSnapshot names). Otherwise the shape renders directly for the rest of the run.
  What is left is the renderer's promise to read these four values as text only (names, labels, hosts, paths;
  no branch on them), which tests/deployments/rendering/test_shapes.py checks with every class of value in every
  slot.

A memo lives for one ``tree_units`` call (one render run, one preview), so nothing carries over between runs, and
a tree where no two projects share a shape costs one dictionary lookup per project more than before.
"""

import re
import secrets
import uuid
from dataclasses import fields, replace
from operator import attrgetter

from deployments.rendering.projects import ProjectEnvironment, render_project
from deployments.rendering.snapshot import ContainerSnapshot, ProjectSnapshot
from deployments.rendering.yamltext import yaml_scalar

_WORD = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.]*\Z")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
# A piece of a stand-in this long found outside the whole stand-ins means a value was cut or transformed.
_FRAGMENT = 6

# Slots of the values replaced: the project's id, slug and owner, then one per container (its id), by position.
_ID, _SLUG, _OWNER = 0, 1, 2
_FIXED_SLOTS = 3
_WORD_SLOTS = (_SLUG, _OWNER)  # the others hold UUIDs

# Everything of a project but the replaceable values (and the render token, which names a version of the rest):
# read from the dataclasses' own fields, so a field added to a snapshot is part of the shape by itself.
_PROJECT_REST = attrgetter(*(field.name for field in fields(ProjectSnapshot)
                             if field.name not in {"id", "slug", "owner", "render_token", "containers"}))
_CONTAINER_REST = attrgetter(*(field.name for field in fields(ContainerSnapshot) if field.name != "uuid"))

_SEEN = object()  # a shape met once: rendered directly, checked at its second project
_DIRECT = object()  # a shape whose stand-in render did not match: rendered directly for the rest of the run


def _class_of(value: str, is_uuid: bool) -> str | None:
    """'digit' or 'letter' for a value that can be replaced (see the module docstring), else None."""
    if type(value) is not str:  # a subclass or another type: kept in the shape as it is
        return None
    if is_uuid:
        if not _UUID.match(value):
            return None
    elif not _WORD.match(value):
        return None
    if value[0].isdigit():
        return "digit"
    return "letter" if yaml_scalar(value) == value else None


def _stand_in(slot: int, kind: str) -> str:
    """A fresh random value of the slot's form (a UUID for ids, a word otherwise) that starts as ``kind`` says."""
    first = secrets.choice("0123456789" if kind == "digit" else "abcdef")
    if slot in _WORD_SLOTS:
        return first + "x" + secrets.token_hex(12)
    return first + str(uuid.uuid4())[1:]


class _Filled:
    """One shape's files split at the stand-ins: ``fill(values)`` puts one project's values in their place."""

    __slots__ = ("files",)

    def __init__(self, files: list[tuple[list[str], list[int], list[bytes], list[int]]]) -> None:
        # Per file: (path pieces, the slot after each path piece, content pieces, the slot after each one).
        self.files = files

    @classmethod
    def split(cls, rendered: dict[str, bytes], slot_of: dict[str, int]) -> "_Filled | None":
        """The stand-in render split at its stand-ins (stand-in -> slot), or None if a piece of one is left outside
        the whole ones."""
        stand_ins = sorted(slot_of)
        text_pattern = re.compile("(" + "|".join(map(re.escape, stand_ins)) + ")")
        bytes_pattern = re.compile(text_pattern.pattern.encode())
        fragments = {stand_in[start:start + _FRAGMENT] for stand_in in stand_ins
                     for start in range(len(stand_in) - _FRAGMENT + 1)}
        fragment_pattern = re.compile("|".join(map(re.escape, sorted(fragments))).encode())
        files = []
        for path, content in rendered.items():
            path_parts = text_pattern.split(path)
            content_parts = bytes_pattern.split(content)
            if fragment_pattern.search("".join(path_parts[0::2]).encode()) or fragment_pattern.search(
                    b"".join(content_parts[0::2])):
                return None
            files.append((path_parts[0::2], [slot_of[part] for part in path_parts[1::2]],
                          content_parts[0::2], [slot_of[part.decode()] for part in content_parts[1::2]]))
        return cls(files)

    def fill(self, values: list[str]) -> dict[str, bytes]:
        encoded = [value.encode() for value in values]
        result = {}
        for path_literals, path_slots, literals, slots in self.files:
            result[_join(path_literals, path_slots, values, "")] = _join(literals, slots, encoded, b"")
        return result


def _join(literals: list, slots: list[int], values: list, empty):
    if not slots:
        return literals[0]
    pieces = [literals[0]]
    for literal, slot in zip(literals[1:], slots, strict=True):
        pieces.append(values[slot])
        pieces.append(literal)
    return empty.join(pieces)


class ProjectShapes:
    """``render_project(penv, project)`` for the projects of one environment in one run, with the shape memo.

    Call it with a ``ProjectSnapshot``; returns ``{repository path: bytes}`` exactly as ``render_project`` does and
    raises what it raises (a project that fails to render is always rendered directly)."""

    def __init__(self, penv: ProjectEnvironment) -> None:
        self.penv = penv
        self._shapes: dict = {}
        self._stand_ins: dict[tuple[int, str], str] = {}

    def __call__(self, project: ProjectSnapshot) -> dict[str, bytes]:
        values = [project.id, project.slug, project.owner] + [container.uuid for container in project.containers]
        kinds = [_class_of(value, is_uuid=slot not in _WORD_SLOTS) for slot, value in enumerate(values)]
        if not any(kinds):
            return render_project(self.penv, project)
        # The shape: which values are replaced and how, the values kept, and everything else of the project.
        shape = (tuple(kinds), tuple(None if kind else value for value, kind in zip(values, kinds, strict=True)),
                 _PROJECT_REST(project), tuple(map(_CONTAINER_REST, project.containers)))
        entry = self._shapes.get(shape)
        if entry is None:
            self._shapes[shape] = _SEEN
            return render_project(self.penv, project)
        if entry is _DIRECT:
            return render_project(self.penv, project)
        if entry is _SEEN:
            return self._learn(shape, project, values, kinds)
        return entry.fill(values)

    def _learn(self, shape, project: ProjectSnapshot, values: list[str], kinds: list[str | None]) -> dict[str, bytes]:
        """The second project of a shape: render it directly and keep the stand-in render if it fills to the same."""
        direct = render_project(self.penv, project)
        stand_ins = [self._stand_in(slot, kind) if kind else value for slot, (value, kind) in
                     enumerate(zip(values, kinds, strict=True))]
        slot_of = {stand_ins[slot]: slot for slot, kind in enumerate(kinds) if kind}
        filled = _Filled.split(render_project(self.penv, self._with(project, stand_ins)), slot_of)
        self._shapes[shape] = filled if filled is not None and filled.fill(values) == direct else _DIRECT
        return direct

    def _stand_in(self, slot: int, kind: str) -> str:
        key = (slot, kind)
        if key not in self._stand_ins:
            self._stand_ins[key] = _stand_in(slot, kind)
        return self._stand_ins[key]

    @staticmethod
    def _with(project: ProjectSnapshot, values: list[str]) -> ProjectSnapshot:
        """The project with the values of its slots replaced."""
        containers = tuple(replace(container, uuid=value)
                           for container, value in zip(project.containers, values[_FIXED_SLOTS:], strict=True))
        return replace(project, id=values[_ID], slug=values[_SLUG], owner=values[_OWNER], containers=containers)
