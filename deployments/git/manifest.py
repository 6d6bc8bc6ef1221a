"""The ownership manifest committed in the GitOps repository, and the path rules for what a render may write.

The manifest says, for every render unit, which folder it owns, the fingerprint of the input it was rendered
from, and each file it wrote with the file's git blob id. Only files listed there belong to the portal: anything
else in the repository (a README, another team's folder) is never modified or deleted. Blob ids rather than
another hash because they are what git lists for a tree (`ls-tree`), so the writer compares without reading a file.

On disk the file lists are relative to the unit's folder (a quarter smaller for 40,000 files); in memory they
are repository-relative. Sorted keys and one entry per line keep the JSON stable and its diffs small.
"""

from __future__ import annotations

import gc
import hashlib
import json
import re
from dataclasses import dataclass, field

MANIFEST_DIR = ".tesslate-portal/"
MANIFEST_PATH = MANIFEST_DIR + "manifest.json"
MANIFEST_VERSION = 1


_UNSAFE_CHARACTERS = re.compile(r"[\x00-\x1f\x7f\\]")
_BAD_PART = re.compile(r"/(|\.|\.\.|\.git)/")
_json = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode


class ManifestError(ValueError):
    """The committed manifest cannot be read; someone edited it by hand or it comes from a newer portal."""


@dataclass
class UnitEntry:
    directory: str
    fingerprint: str
    files: dict[str, str] = field(default_factory=dict)  # repository-relative path -> git blob id


@dataclass
class Manifest:
    units: dict[str, UnitEntry] = field(default_factory=dict)

    @classmethod
    def loads(cls, data: bytes | None, previous: tuple[Manifest, bytes] | None = None) -> Manifest:
        """The manifest ``data`` holds (empty for None or b"").

        ``previous`` = (a manifest, the bytes it was loaded from or dumped to), such as the one the last commit
        started from: when both hold one unit per line in key order (as ``dumps`` writes them), lines that are the
        same bytes as a line of ``previous`` share its entry, and only the other lines are parsed (a one-project
        change: one line of 10,000, instead of 7.5 MB of JSON). The result equals what a full parse gives; any
        other layout is parsed whole. Entries are never changed in place (the writer makes new ones), so sharing
        them is safe.

        Errors: ManifestError when ``data`` is not a manifest of this version."""
        if not data:
            return cls()
        collecting = gc.isenabled()
        gc.disable()  # 5,000 small dicts: the cyclic collector would run many times for nothing while parsing
        try:
            if previous is not None:
                manifest = _loads_by_line(data, previous)
                if manifest is not None:
                    return manifest
            raw = json.loads(data)
            if raw.get("version") != MANIFEST_VERSION:
                raise ManifestError(f"{MANIFEST_PATH} has version {raw.get('version')!r}; "
                                    f"this portal reads version {MANIFEST_VERSION}.")
            units = {key: _unit_entry(entry) for key, entry in raw["units"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(f"{MANIFEST_PATH} is not a valid portal manifest: {exc}") from exc
        finally:
            if collecting:
                gc.enable()
        return cls(units=units)

    def dumps(self, previous: tuple[Manifest, bytes] | None = None) -> bytes:
        """Sorted JSON with one unit per line: valid for any JSON reader, and a one-project change is a one-line
        diff. (json.dumps with indent would take the pure-Python encoder, ~6x slower on 40,000 files.)

        ``previous`` = (a manifest, the bytes it was loaded from): a unit whose entry is the very object of that
        manifest (entries are never changed in place; the writer makes new ones) keeps its line from those bytes
        instead of being encoded again, when the bytes hold one unit per line in key order (as written here)."""
        reuse = _lines_by_key(*previous) if previous is not None else {}
        lines = []
        found = {}
        for key in sorted(self.units):
            entry = self.units[key]
            kept = reuse.get(key)
            if kept is not None and kept[0] is entry:
                line = kept[1]
            else:
                cut = len(entry.directory)
                body = {"directory": entry.directory, "files": {path[cut:]: blob for path, blob in entry.files.items()},
                        "fingerprint": entry.fingerprint}
                line = f"  {_json(key)}: {_json(body)}".encode()
            lines.append(line)
            found[key] = (entry, line)
        if not lines:
            return b'{\n "units": {}' + _FOOTER
        data = b"".join((_HEADER, b",\n".join(lines), b"\n }", _FOOTER))  # one copy of 7.5 MB, not two
        _LINES_MEMO[0] = (self, data, found)  # the next commit in this process starts from these bytes
        return data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Manifest) and self.units == other.units


# The last _lines_by_key answer, kept while its manifest and bytes are the very same objects (a manifest's entries
# are never changed in place): the worker splits the head's manifest before forking its jobs (manifest_lines_warm).
_LINES_MEMO: list[tuple[Manifest, bytes, dict[str, tuple[UnitEntry, bytes]]] | None] = [None]


def manifest_lines_warm(manifest: Manifest, data: bytes) -> None:
    """Split ``data`` (what ``manifest`` was loaded from) into its units' lines now, for the next ``dumps`` that
    keeps them (7.5 MB at 10,000 projects: ~40 ms a job need not spend)."""
    _lines_by_key(manifest, data)


def _lines_by_key(manifest: Manifest, data: bytes) -> dict[str, tuple[UnitEntry, bytes]]:
    """{key: (the manifest's entry, its line without the separating comma)} when ``data`` (what ``manifest`` was
    loaded from) holds exactly one line per unit in key order, each starting with its key as JSON writes it; {}
    otherwise (the caller then encodes every entry)."""
    memo = _LINES_MEMO[0]
    if memo is not None and memo[0] is manifest and memo[1] is data:
        return memo[2]
    found = _split_lines(manifest, data)
    _LINES_MEMO[0] = (manifest, data, found)
    return found


def _split_lines(manifest: Manifest, data: bytes) -> dict[str, tuple[UnitEntry, bytes]]:
    keys = sorted(manifest.units)
    lines = _unit_lines(data)
    if lines is None or len(lines) != len(keys):
        return {}
    found = {}
    for key, line in zip(keys, lines, strict=True):
        if not _is_line_of(key, line):
            return {}
        found[key] = (manifest.units[key], line)
    return found


_HEADER = b'{\n "units": {\n'
_FOOTER = b',\n "version": %d\n}\n' % MANIFEST_VERSION


def _unit_lines(data: bytes) -> list[bytes] | None:
    """The unit lines of ``data`` laid out as ``dumps`` writes a manifest with units (each without the comma that
    separates it from the next), or None when it is laid out otherwise."""
    if not data.startswith(_HEADER) or not data.endswith(b"\n }" + _FOOTER):
        return None
    lines = data[len(_HEADER):-len(_FOOTER) - 3].split(b"\n")
    for number in range(len(lines) - 1):
        if not lines[number].endswith(b","):
            return None
        lines[number] = lines[number][:-1]
    return lines


def _is_line_of(key: str, line: bytes) -> bool:
    """Whether ``line`` (without its comma) starts with ``key`` as JSON writes it and holds one object after it."""
    return line.startswith(b"  %s: {" % _json(key).encode()) and line.endswith(b"}")


def _unit_entry(raw: dict) -> UnitEntry:
    """A unit's entry from its JSON object (file paths relative to its folder on disk, repository-relative here)."""
    directory = raw["directory"]
    files = {directory + relative: blob for relative, blob in raw["files"].items()}
    return UnitEntry(directory=directory, fingerprint=raw["fingerprint"], files=files)


def _loads_by_line(data: bytes, previous: tuple[Manifest, bytes]) -> Manifest | None:
    """Manifest.loads of ``data`` reusing the entries of ``previous``'s identical lines; None when either is not one
    unit per line in strictly increasing key order (the caller parses the whole). Records the lines of the result
    for the next ``dumps`` (_LINES_MEMO)."""
    known = _lines_by_key(*previous)
    lines = _unit_lines(data) if known else None
    if lines is None:
        return None
    by_line = {line: (key, entry) for key, (entry, line) in known.items()}
    units: dict[str, UnitEntry] = {}
    found: dict[str, tuple[UnitEntry, bytes]] = {}
    previous_key = None
    for line in lines:
        hit = by_line.get(line)
        if hit is None:
            try:
                member = json.loads(b"{" + line + b"}")
                if not isinstance(member, dict) or len(member) != 1:
                    return None
                ((key, raw),) = member.items()
                if not _is_line_of(key, line):
                    return None
                hit = (key, _unit_entry(raw))
            except (ValueError, KeyError, TypeError, AttributeError):
                return None  # the whole parse says what is wrong
        key, entry = hit
        if previous_key is not None and key <= previous_key:
            return None  # out of order or repeated: JSON's last-one-wins is the whole parse's to apply
        previous_key = key
        units[key] = entry
        found[key] = (entry, line)
    manifest = Manifest(units=units)
    _LINES_MEMO[0] = (manifest, data, found)
    return manifest


def blob_id(data: bytes, object_format: str = "sha1") -> str:
    """The id git gives these bytes as a blob (what `git hash-object` prints)."""
    digest = hashlib.new(object_format)
    digest.update(b"blob %d\x00" % len(data))
    digest.update(data)
    return digest.hexdigest()


def check_path(path: str, *, what: str = "path") -> None:
    """Refuse anything but a plain repository-relative file path outside .git and the portal's own folder.

    Renderer output decides where bytes land on disk, so this is the line that keeps a bad unit from writing
    through `..`, into .git, or over the manifest.
    """
    if not isinstance(path, str) or not path:
        raise ValueError(f"{what} must be a non-empty string, got {path!r}")
    if path.startswith("/") or _UNSAFE_CHARACTERS.search(path):
        raise ValueError(f"{what} {path!r} must be relative, use '/' and hold no control characters")
    if _BAD_PART.search("/" + path + "/"):
        raise ValueError(f"{what} {path!r} must be normalized (no empty, '.' or '..' parts) and stay out of .git")
    if (path + "/").startswith(MANIFEST_DIR):
        raise ValueError(f"{what} {path!r} lies in the portal's own folder {MANIFEST_DIR}")


_SIMPLE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def check_file_in(directory: str, path: str, *, what: str = "path") -> None:
    """check_path for a path under an already checked `directory`: a plain file name right under it needs no
    more than a look at the name (the common case: 10,000 essential paths); anything else gets check_path."""
    name = path[len(directory):] if path.startswith(directory) else ""
    if not (_SIMPLE_NAME.fullmatch(name) and name not in ("..", ".git") and not directory.startswith(MANIFEST_DIR)):
        check_path(path, what=what)


# Folders and files check_directory and check_file_in accepted in this process (the rules are pure functions of the
# strings): a run checks its 10,000 units' folders and essential files again only when they are new.
_ACCEPTED_DIRECTORIES: set[str] = set()
_ACCEPTED_FILES: set[str] = set()


def check_unit_paths(directory: str, essential, *, what: str) -> None:
    """check_directory(directory) and check_file_in(directory, path) for each essential path, answered from the
    paths this process accepted before. Raises ValueError as they do."""
    if not isinstance(directory, str) or directory not in _ACCEPTED_DIRECTORIES:
        check_directory(directory, what=f"{what} directory")
        _ACCEPTED_DIRECTORIES.add(directory)
    for path in essential:
        # check_file_in under an accepted folder answers what check_path answers for the path alone
        if not isinstance(path, str) or path not in _ACCEPTED_FILES:
            check_file_in(directory, path, what=f"{what} essential path")
            _ACCEPTED_FILES.add(path)


def accept_manifest_paths(manifest: Manifest) -> None:
    """check_unit_paths for every unit of ``manifest`` and its files, remembering what passes; a unit with a path
    refused is left for a run's own check_unit_paths to refuse with its message."""
    for key, entry in manifest.units.items():
        try:
            check_unit_paths(entry.directory, entry.files, what=f"Manifest unit {key!r}")
        except ValueError:
            continue


def check_directory(directory: str, *, what: str = "directory") -> None:
    """A folder: like a path, but ending in '/'."""
    if not isinstance(directory, str) or not directory.endswith("/"):
        raise ValueError(f"{what} {directory!r} must be a repository-relative folder ending in '/'")
    check_path(directory[:-1], what=what)
