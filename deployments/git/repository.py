"""The portal's GitOps repository: every git command the portal runs is in this module.

The repository is **bare** and written only with git's plumbing: one `git fast-import` stream stores the new
blobs and builds the new tree from the base commit's tree plus the planned writes and deletes (reading only the
folders that change), and `commit-tree` / `update-ref` make the commit. There is no shared index and no
working tree, so nothing can be half-written, lost or mistaken for leftovers: a run either produces a complete
commit object or nothing, and a killed run leaves at most unreachable objects behind. The base of every commit
is read from git itself (the fetched remote head, or the local branch without a remote), never from files on
disk.

GITOPS_REPO_DIR may also be an existing clone with a working tree (what older portals made): its `.git` is used
as the git directory and its working tree and index are never read or written.

GitPython drives the git command line (`Git.execute`). Callers hold deployments.locks.repository_lock() while
they change a Repository, which is what makes it safe to treat any git lock file found at the start as left
behind by a dead process. Previews work in a private scratch repository (Repository.scratch) and take no lock.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import git
from git.exc import GitCommandError

logger = logging.getLogger(__name__)

# Paths are passed to git as literal file names, never as glob patterns.
_LITERAL = {"GIT_LITERAL_PATHSPECS": "1"}
# Keep git from starting a (detached, lock-taking) automatic gc or maintenance inside a run; see maintain().
_NO_AUTO_GC = ("-c", "gc.auto=0", "-c", "maintenance.auto=false")
_PATHSPEC_LIMIT = 300
DIFF_EXCLUDE = ":(exclude).tesslate-portal"

# Refs of the portal's own (never pushed under these names): the commit a run is pushing right now, and a
# commit whose push failed for a reason other than the remote moving on (pushed by the next run if still valid).
CANDIDATE_REF = "refs/portal/candidate"
UNPUSHED_REF = "refs/portal/unpushed"
# The last commit whose tree the writer found to hold every file of its manifest with the manifest's blob id
# (writer._invariant): later runs read only what differs from it instead of listing the whole tree.
VERIFIED_REF = "refs/portal/verified"
# Where `git fast-import` leaves the throw-away commit whose tree build_tree returns (deleted right after).
BUILD_REF = "refs/portal/build"
# What an interrupted `git rebase` / `git merge` / `git cherry-pick` leaves in a git directory.
_INTERRUPTED_STATE = ("rebase-merge", "rebase-apply", "MERGE_HEAD", "MERGE_MSG", "MERGE_MODE", "MERGE_RR",
                      "CHERRY_PICK_HEAD", "REVERT_HEAD", "AUTO_MERGE", "sequencer")


class GitOpsError(Exception):
    """The GitOps repository could not be read or written."""


class GitOpsRemoteError(GitOpsError):
    """The remote could not be reached, read or written (network, authentication, hooks): nothing about the render
    itself, the same run may succeed once the remote is back."""


class GitOpsPushError(GitOpsRemoteError):
    """The remote refused the push for a reason other than having moved on (auth, hook, network)."""


class GitOpsPushRejected(GitOpsPushError):
    """The remote kept moving: every attempt was rejected as not a fast-forward."""

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


def redact(text: str, url: str = "") -> str:
    """Hide credentials of a remote URL (https://user:token@host/...) wherever they would be shown."""
    if url:
        text = text.replace(url, redact_url(url))
    return re.sub(r"(://)[^/@\s]+@", r"\1***@", text)


def redact_url(url: str) -> str:
    return re.sub(r"^([a-z][a-z0-9+.-]*://)[^/@]+@", r"\1***@", url, flags=re.IGNORECASE)


class Repository:
    """The git directory of GITOPS_REPO_DIR, on branch `branch`, pushing to `remote_url` (may be "")."""

    def __init__(self, git_dir: Path, *, path: Path, remote_url: str, branch: str, owned: bool) -> None:
        self.git_dir = git_dir
        self.path = path  # GITOPS_REPO_DIR as configured
        self.remote_url = remote_url
        self.branch = branch
        self.ref = f"refs/heads/{branch}"
        self.remote_ref = f"refs/remotes/origin/{branch}"
        self.owned = owned  # a bare repository the portal made (False: the .git of an existing clone)
        self.git = git.Git(str(git_dir))
        # GIT_DIR without GIT_WORK_TREE: plumbing only, nothing looks for (or at) a working tree. GIT_INDEX_FILE
        # names a file that cannot exist: git reads attributes and submodule data from the index when there is
        # one (a bare repository's stray `index`, a clone's lost or corrupt one); the portal's commands must not.
        self.git.update_environment(GIT_DIR=str(git_dir),
                                    GIT_INDEX_FILE=str(git_dir / "portal-uses-no-index" / "index"))
        self._object_format: str | None = None

    # --- opening ----------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, *, remote_url: str, branch: str, create: bool = True) -> Repository | None:
        """Open the repository at `path`: a clone's `.git`, or a bare repository, created when missing.

        Returns None when it is missing and `create` is false. GitOpsError when `path` holds something else.
        """
        path = Path(path)
        if (path / ".git").is_dir():
            return cls(path / ".git", path=path, remote_url=remote_url, branch=branch, owned=False)
        if not _looks_bare(path):
            if not create:
                return None
            if path.exists() and any(path.iterdir()):
                raise GitOpsError(f"{path} exists, is not empty and is not a git repository; "
                                  "point GITOPS_REPO_DIR at an empty or missing folder.")
            path.mkdir(parents=True, exist_ok=True)
            _init_bare(path, branch)
        return cls(path, path=path, remote_url=remote_url, branch=branch, owned=True)

    @classmethod
    def scratch(cls, path: Path, *, remote_url: str, branch: str, borrow: Repository | None) -> Repository:
        """A throw-away bare repository at `path` that reads `borrow`'s objects (git alternates) and writes
        none into it: what previews fetch into and build their trees in, without any lock."""
        _init_bare(path, branch)
        if borrow is not None:
            (path / "objects" / "info" / "alternates").write_text(str((borrow.git_dir / "objects").resolve()) + "\n")
        repo = cls(path, path=path, remote_url=remote_url, branch=branch, owned=True)
        repo._configure_origin()
        return repo

    def prepare(self) -> None:
        """Start of a locked run: repair what a dead process or a hand fix can leave, point origin at the
        configured URL. Only repairs from git's own records; never guesses from files."""
        self.remove_stale_locks()
        self.clear_interrupted_state()
        if self.owned and self._run("symbolic-ref", "-q", "HEAD", check=False) != self.ref:
            self._run("symbolic-ref", "HEAD", self.ref)
        self.repair_refs()
        self._configure_origin()

    def close(self) -> None:
        self.git.clear_cache()

    def _configure_origin(self) -> None:
        if not self.remote_url:
            return
        current = self._run("config", "--get", "remote.origin.url", check=False)
        if current == self.remote_url:
            return
        if current:
            self._run("remote", "set-url", "origin", self.remote_url)
        else:
            self._run("remote", "add", "origin", self.remote_url)

    # --- low level --------------------------------------------------------------------------------
    def _run(self, *args: str, check: bool = True, env: dict | None = None, **kwargs) -> str:
        """Run one git command; errors come back as GitOpsError with credentials redacted."""
        try:
            return self.git.execute(["git", *args], env=env, **kwargs)
        except GitCommandError as exc:
            if not check:
                return ""
            name = next((arg for arg in args if not arg.startswith("-") and "=" not in arg), "")
            raise GitOpsError(redact(f"git {name} failed ({exc.status}): {_output(exc)}", self.remote_url)) from None

    @property
    def object_format(self) -> str:
        if self._object_format is None:
            self._object_format = self._run("rev-parse", "--show-object-format") or "sha1"
        return self._object_format

    @property
    def zero_oid(self) -> str:
        return "0" * (64 if self.object_format == "sha256" else 40)

    def empty_tree(self) -> str:
        return self._run("hash-object", "-t", "tree", "/dev/null")

    def resolve(self, ref: str) -> str | None:
        """The commit `ref` names, None when it does not exist or names no readable commit."""
        return self._run("rev-parse", "--verify", "-q", f"{ref}^{{commit}}", check=False) or None

    def head(self) -> str | None:
        return self.resolve(self.ref)

    def parent(self, commit: str) -> str | None:
        return self._run("rev-parse", "--verify", "-q", f"{commit}^1", check=False) or None

    def tree_of(self, commit: str | None) -> str:
        return self._run("rev-parse", f"{commit}^{{tree}}") if commit else self.empty_tree()

    # --- crash recovery ---------------------------------------------------------------------------
    def remove_stale_locks(self) -> list[str]:
        """Delete git lock files and half-written packs. Only called under the repository lock, so whoever
        created them is dead (a killed run; previews never write here)."""
        candidates = list(self.git_dir.glob("*.lock"))  # index, config, packed-refs, shallow, HEAD
        for folder in ("refs", "logs"):
            candidates += (self.git_dir / folder).rglob("*.lock")
        for folder in ("objects/info", "objects/pack"):
            candidates += (self.git_dir / folder).glob("*.lock")
        candidates += (self.git_dir / "objects" / "pack").glob("tmp_*")  # a killed fast-import's pack
        # A fast-import killed after storing its pack but before releasing it leaves the pack's .keep (its text is
        # "fast-import"): git gc would never merge that pack, and an import making the same pack may stop on it.
        candidates += [keep for keep in (self.git_dir / "objects" / "pack").glob("pack-*.keep")
                       if _read_prefix(keep, 32) == b"fast-import"]
        removed = []
        for lock_file in candidates:
            try:
                lock_file.unlink()
            except FileNotFoundError:
                continue
            removed.append(str(lock_file.relative_to(self.git_dir)))
        if removed:
            logger.warning("Removed stale git lock files left by a dead process: %s", ", ".join(sorted(removed)))
        return removed

    def clear_interrupted_state(self) -> list[str]:
        """Remove what an interrupted rebase, merge or cherry-pick left in the git directory. The portal never
        rebases or merges (it rebuilds on the remote head), so such state is a hand operation that died."""
        removed = []
        for name in _INTERRUPTED_STATE:
            target = self.git_dir / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            elif target.exists() or target.is_symlink():
                target.unlink()
            else:
                continue
            removed.append(name)
        if removed:
            logger.warning("Removed the state of an interrupted rebase/merge from the GitOps repository: %s.",
                           ", ".join(removed))
        return removed

    def repair_refs(self) -> list[str]:
        """Refs the portal uses that name no readable commit (a torn write, a hand edit, a missing object) are
        removed; the branch is then set again from the remote head (fetch) or, without a remote, from its reflog.
        Returns the refs repaired."""
        repaired = []
        for ref in (self.ref, self.remote_ref, UNPUSHED_REF, CANDIDATE_REF, VERIFIED_REF):
            loose = self.git_dir / ref
            if not (loose.is_file() or loose.is_symlink()) or self.resolve(ref) is not None:
                continue
            loose.unlink()
            repaired.append(ref)
            logger.warning("The GitOps repository's ref %s named no readable commit; removed it.", ref)
            if ref == self.ref and not self.remote_url:
                self._restore_branch_from_reflog()
        return repaired

    def _restore_branch_from_reflog(self) -> None:
        """Without a remote the local branch is the truth: put back its newest readable value from the reflog."""
        log = self.git_dir / "logs" / self.ref
        lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
        for line in reversed(lines):
            fields = line.split()
            if len(fields) >= 2 and fields[1] != self.zero_oid and self.resolve(fields[1]):
                self.set_ref(self.ref, fields[1])
                logger.warning("Restored branch %s to %s from its reflog.", self.branch, fields[1][:12])
                return
        if self.resolve(self.ref) is None and lines:
            raise GitOpsError(f"The branch {self.branch} of {self.path} is corrupt and its reflog names no readable "
                              "commit; restore the repository from a backup (there is no remote to recover from).")

    # --- refs -------------------------------------------------------------------------------------
    def set_ref(self, ref: str, new: str | None, old: str | None = None) -> None:
        """Point `ref` at `new` (None: delete it). With `old`, only if it still points there (compare and swap;
        "" means it must not exist yet)."""
        expect = [] if old is None else [old or self.zero_oid]
        if new is None:
            if self.resolve(ref) is not None or (self.git_dir / ref).exists():
                self._run("update-ref", "--no-deref", "-d", ref, *expect)
            return
        self._run("update-ref", "--no-deref", "--create-reflog", "-m", "gitops portal", ref, new, *expect)

    def fetch(self, *, move_branch: bool = True) -> str | None:
        """Fetch the branch from origin into the remote-tracking ref; its head, None when the remote has no such
        branch yet. With `move_branch`, the local branch is set to that head (the last known remote state)."""
        try:
            self.git.execute(["git", *_NO_AUTO_GC, "fetch", "-q", "--no-tags", "--no-write-fetch-head",
                              "--no-recurse-submodules", "origin", f"+{self.ref}:{self.remote_ref}"])
        except GitCommandError as exc:
            if "couldn't find remote ref" not in (exc.stderr or ""):
                raise GitOpsRemoteError(redact(f"git fetch from {self.remote_url} failed: {_output(exc)}",
                                               self.remote_url)) from None
            self.set_ref(self.remote_ref, None)
            target = None
        else:
            target = self.resolve(self.remote_ref)
        if move_branch and self.head() != target:
            self.set_ref(self.ref, target)
        return target

    def push(self, sha: str) -> bool:
        """Push `sha` to the remote branch without forcing. False when rejected because the remote moved on
        (fetch and retry); GitOpsPushError for any other refusal or failure."""
        try:
            self.git.execute(["git", "push", "--porcelain", "--no-verify", "origin", f"{sha}:{self.ref}"])
        except GitCommandError as exc:
            output = _output(exc)
            if _remote_moved(output):
                return False
            raise GitOpsPushError(redact(f"git push to {self.remote_url} failed: {output}", self.remote_url)) from None
        return True

    # --- reading ----------------------------------------------------------------------------------
    def tree_blobs(self, commit: str | None, folders: Iterable[str] | None) -> dict[str, str]:
        """Blob ids of the files of `commit` under `folders` (None: all)."""
        if commit is None:
            return {}
        return {path: oid for path, (_, oid) in self.tree_entries(commit, folders).items()}

    def tree_entries(self, treeish: str | None, folders: Iterable[str] | None = None) -> dict[str, tuple[str, str]]:
        """{path: (mode, object id)} of every file (blob, symlink or submodule) of a tree or commit."""
        if treeish is None:
            return {}
        pathspecs: list[str] = []
        if folders is not None:
            pathspecs = outermost_folders(folders)
            if not pathspecs:
                return {}
            if len(pathspecs) > _PATHSPEC_LIMIT:
                pathspecs = []  # one pass over everything beats matching thousands of pathspecs per entry
        out = self._run("ls-tree", "-r", "-z", "--full-tree", treeish, "--", *pathspecs, env=_LITERAL,
                        strip_newline_in_stdout=False)
        entries = {}
        for record in out.split("\0"):
            if record:
                meta, _, path = record.partition("\t")
                mode, _, oid = meta.split()
                entries[path] = (mode, oid)
        return entries

    def read_file(self, commit: str | None, path: str) -> bytes | None:
        """Bytes of `path` at `commit`; None when absent (or `commit` is None)."""
        if commit is None:
            return None
        try:
            return self.git.execute(["git", "cat-file", "blob", f"{commit}:{path}"], stdout_as_string=False,
                                    strip_newline_in_stdout=False)
        except GitCommandError:
            return None

    def read_blobs(self, oids: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """(id, bytes) of each object, streamed through one `git cat-file --batch`."""
        oids = list(dict.fromkeys(oids))
        if not oids:
            return
        process = self.git.execute(["git", "cat-file", "--batch"], as_process=True, istream=subprocess.PIPE)
        proc = process.proc

        def feed() -> None:
            try:
                for oid in oids:
                    proc.stdin.write(oid.encode() + b"\n")
                proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        done = False
        try:
            for _ in oids:
                header = proc.stdout.readline().split()
                if len(header) != 3:
                    raise GitOpsError(f"git cat-file could not read {header[0].decode() if header else 'an object'}"
                                      " from the GitOps repository (missing object).")
                size = int(header[2])
                data = proc.stdout.read(size)
                proc.stdout.read(1)
                yield header[0].decode(), data
            done = True
        finally:
            if not done:
                proc.kill()  # the reader stopped early: unblock cat-file and the feeding thread
            feeder.join()
            proc.stdout.close()
            proc.wait()

    # --- writing ----------------------------------------------------------------------------------
    def build_tree(self, base: str | None, writes: dict[str, bytes], deletes: Iterable[str]) -> str:
        """Tree id of `base`'s tree with `writes` ({path: bytes}, mode 100644) laid over it and `deletes` removed.

        One `git fast-import` stream stores the blobs (one pack, no file per blob) and builds the tree from the
        base tree, reading only the folders that change; the throw-away commit it needs for that is left
        unreferenced. No index of the repository is read or written. See TreeStream for blobs handed over while
        they are produced.
        """
        with self.tree_stream() as stream:
            return stream.tree(base, writes, deletes)

    def tree_stream(self) -> TreeStream:
        """A TreeStream on this repository (use it as a context manager)."""
        return TreeStream(self)

    def commit_tree(self, tree: str, parent: str | None, *, message: str, author_name: str,
                    author_email: str) -> str:
        """A commit object of `tree` on `parent` (None: a root commit); no ref is moved."""
        identity = {"GIT_AUTHOR_NAME": author_name, "GIT_AUTHOR_EMAIL": author_email,
                    "GIT_COMMITTER_NAME": author_name, "GIT_COMMITTER_EMAIL": author_email}
        with tempfile.NamedTemporaryFile("wb", prefix="gitops-message-", delete=False) as message_file:
            message_file.write(message.encode())
        try:
            parents = ["-p", parent] if parent else []
            return self._run("-c", "commit.gpgsign=false", "commit-tree", tree, *parents, "-F", message_file.name,
                             env=identity)
        finally:
            os.unlink(message_file.name)

    def maintain(self) -> None:
        """Pack loose objects and merge small packs when git thinks it is time.

        Run in the foreground under the repository lock instead of git's detached auto-gc, which would outlive
        the run and take locks the next run would treat as stale.
        """
        self._run("-c", "gc.auto=6700", "-c", "gc.autoDetach=false", "gc", "--auto", "--quiet", check=False)

    # --- diffs ------------------------------------------------------------------------------------
    def diff(self, old: str | None, new: str, *, max_chars: int, paths: Sequence[str] | None = None) -> str:
        """Unified diff between two trees or commits, leaving out the portal's manifest; capped in size.
        ``paths`` (repository-relative files) limits it to those files (a page of a large diff)."""
        if paths is not None and not paths:
            return ""
        pathspec = [f":(literal){path}" for path in paths] if paths is not None else ["."]
        process = self.git.execute(
            ["git", "diff-tree", "-p", "-r", "--no-color", "--no-ext-diff", "--no-textconv",
             old or self.empty_tree(), new, "--", *pathspec, DIFF_EXCLUDE], as_process=True)
        try:
            data = process.proc.stdout.read(max_chars + 1)
        finally:
            process.proc.kill()
            process.proc.wait()
        text = data.decode("utf-8", errors="replace")
        if len(data) > max_chars:
            cut = text.rfind("\ndiff --git ", 0, max_chars)
            text = text[: cut + 1 if cut > 0 else max_chars] + f"[diff truncated at {max_chars} characters]\n"
        return text

    def tree_changes(self, old: str | None, new: str) -> tuple[list[str], list[str], list[str]]:
        """(added, changed, deleted) between two trees or commits, manifest left out."""
        out = self._run("diff-tree", "-r", "--name-status", "-z", "--no-renames", old or self.empty_tree(), new,
                        "--", ".", DIFF_EXCLUDE, strip_newline_in_stdout=False)
        return _split_changes(out)

    def raw_changes(self, old: str | None, new: str | None) -> list[tuple[str, str, str, str]]:
        """Every file that differs between two trees or commits: (status A/M/D/T, path, new mode, new id)."""
        out = self._run("diff-tree", "-r", "-z", "--raw", "--no-renames", "--no-abbrev", old or self.empty_tree(),
                        new or self.empty_tree(), strip_newline_in_stdout=False)
        fields = out.split("\0")
        changes = []
        for meta, path in zip(fields[0::2], fields[1::2], strict=False):
            if not meta:
                continue
            _, new_mode, _, new_oid, status = meta.lstrip(":").split()
            changes.append((status[:1], path, new_mode, new_oid))
        return changes


class TreeStream:
    """Blobs handed to one `git fast-import` process while they are produced, and the tree built from them.

    A render hands each new file's bytes to `add` as soon as it is rendered: git deflates and stores it on the
    other core while the next file is rendered, instead of after the whole render (at 5,000 projects the 40,000
    files cost git about as long to store as Python to render). `tree` then names every file by its blob id and
    returns the new tree id.

    The first blobs, up to SMALL_STREAM_BYTES, are held back: a stream whose files, all but its largest one, stay
    that small until `tree` (a change to a few projects) is stored without compression (zlib level 0), since what
    it stores is then mostly one file, the manifest, megabytes rewritten by every commit, which level 1 spends
    0.12 s deflating at 10,000 projects; a larger stream is stored at level 1, and starts git as soon as it passes
    that size. Either way a pack is written (no loose objects); Repository.maintain() merges packs when git's gc
    thinks it is time (gc.autoPackLimit, 50), so at most about 50 uncompressed manifests lie on disk between two
    merges, and a merge or a push stores the manifest as a delta against its previous version.
    git is told not to look for deltas (`--depth=0`): fast-import only tries the blob just before, and at 5,000
    projects that search was 0.6 s of git's 3 s on the critical path, for a pack of 20 MB instead of 34 MB (the
    next merge of packs or push finds the deltas, across every version, as it would anyway).
    Blobs held back by a stream closed without `tree` are dropped; blobs already stored stay in the repository
    unreferenced until git's gc prunes them. A run that writes nothing starts no process.

    Errors: GitOpsError when git fast-import fails (its message included), or when a file names a blob id that
    neither this stream nor the repository holds.
    """

    SMALL_STREAM_BYTES = 256 * 1024

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self._process = None  # GitPython's handle: it ends the process when collected, so it is kept with it
        self._proc: subprocess.Popen | None = None
        self._broken = False
        self._writing = False
        self._held: list[bytes] = []  # blobs not yet handed to git (a small stream so far)
        self._held_bytes = 0
        self.compression: int | None = None  # the zlib level git stores this stream's objects at, once started

    def __enter__(self) -> TreeStream:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _start(self, compression: int) -> None:
        """Start git fast-import storing at zlib level `compression`, always into a pack (no re-inflating into loose
        objects for small writes), and hand it the blobs held back so far."""
        process = self.repo.git.execute(
            ["git", *_NO_AUTO_GC, "-c", f"core.compression={compression}", "-c", "fastimport.unpackLimit=0",
             "fast-import", "--quiet", "--done", "--force", "--depth=0"], as_process=True, istream=subprocess.PIPE)
        self._process, self._proc, self.compression = process, process.proc, compression
        held, self._held, self._held_bytes = self._held, [], 0
        for data in held:
            self._write_blob(data)

    def _write(self, *chunks: bytes) -> None:
        if self._broken:
            return  # git stopped reading; tree() reports why
        stdin = self._proc.stdin
        self._writing = True  # still set when interrupted mid-command: close() must not append to it
        try:
            for chunk in chunks:
                stdin.write(chunk)
        except BrokenPipeError:
            self._broken = True
        self._writing = False

    def add(self, data: bytes) -> None:
        """Store one blob (its id is what manifest.blob_id computes for the same bytes)."""
        if self._proc is None:
            if self._held_bytes + len(data) <= self.SMALL_STREAM_BYTES:
                self._held.append(data)
                self._held_bytes += len(data)
                return
            self._start(compression=1)
        self._write_blob(data)

    def _write_blob(self, data: bytes) -> None:
        self._write(b"blob\ndata %d\n" % len(data), data, b"\n")

    def tree(self, base: str | None, files: dict[str, str | bytes], deletes: Iterable[str]) -> str:
        """Tree id of `base`'s tree with `files` laid over it (mode 100644; a value is the blob id of bytes given
        to `add` or already in the repository, or the bytes themselves) and `deletes` removed. Ends the stream."""
        if self._proc is None:
            inline = [len(value) for value in files.values() if not isinstance(value, str)]
            small = self._held_bytes + sum(inline) - max(inline, default=0) <= self.SMALL_STREAM_BYTES
            self._start(compression=0 if small else 1)  # small: it is mostly one file, the manifest
        commit = [b"commit %s\ncommitter GitOps Portal <portal@invalid> 0 +0000\ndata 0\n" % BUILD_REF.encode()]
        if base:
            commit.append(b"from %s\n" % base.encode())
        commit.extend(b"D %s\n" % _fast_import_path(path) for path in deletes)
        self._write(*commit)
        named = [b"M 100644 %s %s\n" % (value.encode(), _fast_import_path(path))
                 for path, value in files.items() if isinstance(value, str)]
        self._write(b"".join(named))  # 40,000 lines at 5,000 projects: one write
        for path, value in files.items():
            if not isinstance(value, str):
                self._write(b"M 100644 inline %s\ndata %d\n" % (_fast_import_path(path), len(value)), value, b"\n")
        self._write(b"\ndone\n")
        proc = self._proc
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        stderr = proc.stderr.read().decode(errors="replace")
        status = proc.wait()
        self._process = self._proc = None
        if status != 0:
            # Its crash report repeats what stderr said; the git directory keeps nothing of a failed run.
            (self.repo.git_dir / f"fast_import_crash_{proc.pid}").unlink(missing_ok=True)
            raise GitOpsError(f"git fast-import failed ({status}): {stderr.strip()}")
        try:
            return self.repo._run("rev-parse", f"{BUILD_REF}^{{tree}}")
        finally:
            self.repo._run("update-ref", "--no-deref", "-d", BUILD_REF, check=False)

    def close(self) -> None:
        """End the stream without a tree (blobs already stored stay unreferenced, blobs held back are dropped);
        nothing when already ended."""
        self._held, self._held_bytes = [], 0
        proc, self._proc = self._proc, None
        if proc is None:
            return
        process, self._process = self._process, None  # noqa: F841 - kept alive until the process has ended
        if self._writing:
            proc.kill()  # interrupted inside a command: what git holds of it is not a command to end
        try:
            if not self._writing:
                proc.stdin.write(b"done\n")  # a clean end: what it stored is kept, nothing is referenced
            proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        proc.stderr.read()
        proc.wait()


def _fast_import_path(path: str) -> bytes:
    """A path as `git fast-import` reads it: as is, or C-quoted when it starts with a quote or holds a newline."""
    if path.startswith('"') or "\n" in path:
        path = '"' + path.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return path.encode()


def _read_prefix(path: Path, size: int) -> bytes | None:
    try:
        with path.open("rb") as handle:
            return handle.read(size)
    except OSError:
        return None


def _looks_bare(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


def _init_bare(path: Path, branch: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    git.Git(str(path)).execute(["git", "init", "-q", "--bare", "-b", branch, str(path)])
    runner = git.Git(str(path))
    runner.update_environment(GIT_DIR=str(path))
    for key, value in (("gc.auto", "0"), ("core.logAllRefUpdates", "always")):
        runner.execute(["git", "config", key, value])


def outermost_folders(folders: Iterable[str]) -> list[str]:
    """Drop folders that lie inside another folder of the set: ['a/', 'a/b/', 'c/'] -> ['a/', 'c/']."""
    unique = set(folders)
    return sorted(f for f in unique if not any(parent in unique for parent in _parent_folders(f.rstrip("/"))))


def _split_changes(out: str) -> tuple[list[str], list[str], list[str]]:
    """`--name-status -z` output -> sorted (added, changed, deleted)."""
    fields = out.rstrip("\0").split("\0") if out else []
    added, changed, deleted = [], [], []
    for status, path in zip(fields[0::2], fields[1::2], strict=True):
        {"A": added, "D": deleted}.get(status[:1], changed).append(path)
    return sorted(added), sorted(changed), sorted(deleted)


def _output(exc: GitCommandError) -> str:
    """What git printed, without GitPython's "stderr: '...'" wrapping."""
    parts = []
    for text in (exc.stderr, exc.stdout):
        text = (text or "").strip()
        match = re.fullmatch(r"(?:stdout|stderr): '(.*)'", text, flags=re.DOTALL)
        parts.append((match.group(1) if match else text).strip())
    return "\n".join(part for part in parts if part)


def _remote_moved(output: str) -> bool:
    return bool(re.search(r"\[rejected\] \((fetch first|non-fast-forward|stale info)\)", output)
                or re.search(r"\[remote rejected\].*(cannot lock ref|failed to update ref|incorrect old value)",
                             output))


def _parent_folders(path: str) -> list[str]:
    """'a/b/c.yaml' -> ['a/', 'a/b/']."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) + "/" for i in range(len(parts))]
