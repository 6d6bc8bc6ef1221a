"""The portal's working copy of the GitOps repository: every git command the portal runs is in this module.

GitPython drives the git command line (never GitPython's own index code, which is slower and ignores
.gitignore). Callers hold deployments.locks.repository_lock() while they use a WorkingCopy, which is what makes
it safe to treat any git lock file found at the start as left behind by a dead process.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

import git
from git.exc import GitCommandError

logger = logging.getLogger(__name__)

# Paths are passed to git as literal file names, never as glob patterns.
_LITERAL = {"GIT_LITERAL_PATHSPECS": "1"}
# Keep git from starting a (detached, lock-taking) automatic gc or maintenance inside a run; see maintain().
_NO_AUTO_GC = {"GIT_CONFIG_COUNT": "2", "GIT_CONFIG_KEY_0": "gc.auto", "GIT_CONFIG_VALUE_0": "0",
               "GIT_CONFIG_KEY_1": "maintenance.auto", "GIT_CONFIG_VALUE_1": "false"}
# Above this many paths, naming each one to `git add` costs more (pathspec matching is paths x index entries)
# than letting git walk the few folders that hold them.
_ADD_BY_NAME_LIMIT = 1000
_PATHSPEC_LIMIT = 300
DIFF_EXCLUDE = ":(exclude).tesslate-portal"


class GitOpsError(Exception):
    """The GitOps repository could not be read or written."""


class GitOpsPushError(GitOpsError):
    """The remote refused the push for a reason other than having moved on (auth, hook, network)."""


class GitOpsInvariantError(GitOpsError):
    """The commit about to be pushed differs from the render in a way the model does not explain."""


class GitOpsDeletionRefused(GitOpsError):
    """The commit would delete more than the deletion budget allows, or a file the model still needs."""


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


class WorkingCopy:
    """A clone (or, without a remote, the repository itself) at `path`, on branch `branch`."""

    def __init__(self, path: Path, *, remote_url: str, branch: str) -> None:
        self.path = path
        self.remote_url = remote_url
        self.branch = branch
        self.ref = f"refs/heads/{branch}"
        self.remote_ref = f"refs/remotes/origin/{branch}"
        self.repo = git.Repo(path)
        self.git = self.repo.git
        self._object_format: str | None = None

    # --- opening ----------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, *, remote_url: str, branch: str, create: bool = True) -> WorkingCopy | None:
        """Open the working copy, creating it (init + origin) when missing; None if missing and not create."""
        path = Path(path)
        if not (path / ".git").is_dir():
            if not create:
                return None
            if path.exists() and any(path.iterdir()):
                raise GitOpsError(f"{path} exists, is not empty and is not a git repository; "
                                  "point GITOPS_REPO_DIR at an empty or missing folder.")
            path.mkdir(parents=True, exist_ok=True)
            # init + fetch instead of clone: one code path for empty remotes, missing branches and later runs.
            git.Git(str(path)).init("-q", "-b", branch)
            repo = git.Repo(path)
            with repo.config_writer() as config:
                config.set_value("core", "autocrlf", "false")
                config.set_value("core", "untrackedCache", "true")
                config.set_value("gc", "auto", "0")
            repo.close()
        return cls(path, remote_url=remote_url, branch=branch)

    def prepare(self) -> None:
        """Start of a locked run: clear locks left by dead processes and point origin at the configured URL."""
        self.remove_stale_locks()
        self._configure_origin()

    def close(self) -> None:
        self.repo.close()

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
        """Run one git command in the working copy; errors come back with credentials redacted."""
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

    def empty_tree(self) -> str:
        return self._run("hash-object", "-t", "tree", "/dev/null")

    def resolve(self, ref: str) -> str | None:
        return self._run("rev-parse", "--verify", "-q", f"{ref}^{{commit}}", check=False) or None

    def head(self) -> str | None:
        return self.resolve(self.ref)

    # --- crash recovery ---------------------------------------------------------------------------
    def remove_stale_locks(self) -> list[str]:
        """Delete git lock files. Only called under the repository lock, so whoever created them is dead."""
        git_dir = self.path / ".git"
        candidates = list(git_dir.glob("*.lock"))
        for folder in ("refs", "logs"):
            candidates += (git_dir / folder).rglob("*.lock")
        for folder in ("objects/info", "objects/pack"):
            candidates += (git_dir / folder).glob("*.lock")
        removed = []
        for lock_file in candidates:
            try:
                lock_file.unlink()
            except FileNotFoundError:
                continue
            removed.append(str(lock_file.relative_to(self.path)))
        if removed:
            logger.warning("Removed stale git lock files left by a dead process: %s", ", ".join(sorted(removed)))
        return removed

    # --- moving to the remote head ----------------------------------------------------------------
    def fetch(self) -> str | None:
        """Fetch the branch from origin; its head, or None when the remote has no such branch yet."""
        try:
            self.git.execute(["git", "fetch", "-q", "--no-tags", "origin", f"+{self.ref}:{self.remote_ref}"])
        except GitCommandError as exc:
            if "couldn't find remote ref" in (exc.stderr or ""):
                self._run("update-ref", "-d", self.remote_ref, check=False)
                return None
            raise GitOpsError(redact(f"git fetch from {self.remote_url} failed: {_output(exc)}",
                                     self.remote_url)) from None
        return self.resolve(self.remote_ref)

    def sync(self, target: str | None) -> list[str]:
        """Make the branch and its tracked files exactly `target` (None: an empty, unborn branch).

        Returns the untracked files found in the working tree (the caller removes those in folders the portal
        owns, where an interrupted run may have left them). One `git status` walks the tree; nothing is
        rewritten when the copy is already clean at the target.
        """
        if self._run("symbolic-ref", "-q", "HEAD", check=False) != self.ref:
            self._run("symbolic-ref", "HEAD", self.ref)
        if self.head() != target:
            self.reset(target)
        dirty, untracked = self._status()
        if dirty:
            logger.warning("The GitOps working copy had uncommitted changes (an interrupted run); reset them.")
            self.reset(target)
        return untracked

    def reset(self, target: str | None) -> None:
        if target is not None:
            self._run("reset", "-q", "--hard", target)
            return
        # No remote branch yet: drop whatever a previous, never-pushed run committed or staged.
        tracked = self._run("ls-files", "-z").split("\0")
        self._run("read-tree", "--empty")
        if self.head() is not None:
            self._run("update-ref", "-d", self.ref)
        self.remove_files([p for p in tracked if p])

    def _status(self) -> tuple[bool, list[str]]:
        out = self._run("status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames",
                        "--ignore-submodules=all", strip_newline_in_stdout=False)
        dirty, untracked = False, []
        for entry in out.split("\0"):
            if not entry:
                continue
            if entry.startswith("?? "):
                untracked.append(entry[3:])
            else:
                dirty = True
        return dirty, untracked

    def remove_files(self, paths: Iterable[str]) -> None:
        """Delete files of the working tree and then the folders that became empty.

        Callers pass paths git tracks or lists (never beyond a symbolic link) or paths the writer created.
        """
        folders = set()
        for path in paths:
            try:
                (self.path / path).unlink()
            except FileNotFoundError:
                pass
            folders.add(path.rpartition("/")[0])
        self.prune_folders(folders)

    def prune_folders(self, folders: Iterable[str]) -> None:
        # Deepest first, so a parent is tried after its children went.
        for folder in sorted({f for start in folders if start for f in _ancestors(start)}, key=len, reverse=True):
            try:
                (self.path / folder).rmdir()
            except OSError:
                pass  # not empty (or already gone): keep it

    # --- reading the tree -------------------------------------------------------------------------
    def index_blobs(self, folders: Iterable[str] | None) -> dict[str, str]:
        """Blob ids of the files staged in the index under `folders` (None: all)."""
        return _parse_entries(self._list(["ls-files", "-s", "-z"], folders), blob_field=1)

    def tree_blobs(self, commit: str | None, folders: Iterable[str] | None) -> dict[str, str]:
        """Blob ids of the files of `commit` under `folders` (None: all)."""
        if commit is None:
            return {}
        return _parse_entries(self._list(["ls-tree", "-r", "-z", "--full-tree", commit], folders), blob_field=2)

    def _list(self, command: list[str], folders: Iterable[str] | None) -> str:
        pathspecs: list[str] = []
        if folders is not None:
            pathspecs = outermost_folders(folders)
            if not pathspecs:
                return ""
            if len(pathspecs) > _PATHSPEC_LIMIT:
                pathspecs = []  # one pass over everything beats matching thousands of pathspecs per entry
        return self._run(*command, "--", *pathspecs, env=_LITERAL, strip_newline_in_stdout=False)

    def read_file(self, commit: str | None, path: str) -> bytes | None:
        if commit is None:
            return None
        try:
            return self.git.execute(["git", "cat-file", "blob", f"{commit}:{path}"], stdout_as_string=False,
                                    strip_newline_in_stdout=False)
        except GitCommandError:
            return None

    # --- writing ----------------------------------------------------------------------------------
    def stage(self, paths: list[str], *, roots: Iterable[str]) -> None:
        """Stage these changed paths (written or deleted). `roots`: folders that hold all of them and nothing
        else that differs from HEAD, used instead of the names when there are many."""
        if not paths:
            return
        if len(paths) <= _ADD_BY_NAME_LIMIT:
            with tempfile.NamedTemporaryFile("wb", prefix="gitops-paths-", delete=False) as listing:
                listing.write(b"\0".join(p.encode() for p in paths))
            try:
                self._run("add", "-A", f"--pathspec-from-file={listing.name}", "--pathspec-file-nul", env=_LITERAL)
            finally:
                os.unlink(listing.name)
        else:
            # bigFileThreshold=1 makes `git add` stream every blob into one pack (bulk check-in) instead of one
            # loose object file each: much faster for tens of thousands of files, and no gc needed afterwards.
            self._run("-c", "core.bigFileThreshold=1", "add", "-A", "--", *sorted(roots), env=_LITERAL)

    def staged_changes(self) -> tuple[list[str], list[str], list[str]]:
        """(added, changed, deleted) between HEAD and the index, as git will commit them."""
        base = self.head() or self.empty_tree()
        out = self._run("diff-index", "--cached", "--name-status", "-z", "--no-renames", base,
                        strip_newline_in_stdout=False)
        return _split_changes(out)

    def commit(self, *, message: str, author_name: str, author_email: str) -> str:
        identity = {"GIT_AUTHOR_NAME": author_name, "GIT_AUTHOR_EMAIL": author_email,
                    "GIT_COMMITTER_NAME": author_name, "GIT_COMMITTER_EMAIL": author_email}
        with tempfile.NamedTemporaryFile("wb", prefix="gitops-message-", delete=False) as message_file:
            message_file.write(message.encode())
        try:
            self._run("-c", "commit.gpgsign=false", "commit", "-q", "--no-verify", "--cleanup=verbatim",
                      f"--file={message_file.name}", env={**identity, **_NO_AUTO_GC})
        finally:
            os.unlink(message_file.name)
        return self._run("rev-parse", "HEAD")

    def push(self) -> bool:
        """Push HEAD to the remote branch. False when rejected because the remote moved on (fetch and retry)."""
        try:
            self.git.execute(["git", "push", "--porcelain", "--no-verify", "origin", f"HEAD:{self.ref}"])
        except GitCommandError as exc:
            output = _output(exc)
            if _remote_moved(output):
                return False
            raise GitOpsPushError(redact(f"git push to {self.remote_url} failed: {output}", self.remote_url)) from None
        return True

    def maintain(self) -> None:
        """Pack loose objects when git thinks it is time (large renders leave tens of thousands).

        Run in the foreground under the repository lock instead of git's detached auto-gc, which would outlive
        the run and take locks the next run would treat as stale.
        """
        self._run("-c", "gc.auto=6700", "-c", "gc.autoDetach=false", "gc", "--auto", "--quiet", check=False)

    # --- diffs ------------------------------------------------------------------------------------
    def diff(self, old: str | None, new: str, *, max_chars: int, runner: git.Git | None = None) -> str:
        """Unified diff between two trees or commits, leaving out the portal's manifest; capped in size."""
        process = (runner or self.git).execute(
            ["git", "diff-tree", "-p", "-r", "--no-color", "--no-ext-diff", "--no-textconv",
             old or self.empty_tree(), new, "--", ".", DIFF_EXCLUDE], as_process=True)
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

    def tree_changes(self, old: str | None, new: str, *,
                     runner: git.Git | None = None) -> tuple[list[str], list[str], list[str]]:
        """(added, changed, deleted) between two trees or commits, manifest left out."""
        out = (runner or self.git).execute(
            ["git", "diff-tree", "-r", "--name-status", "-z", "--no-renames", old or self.empty_tree(), new,
             "--", ".", DIFF_EXCLUDE], strip_newline_in_stdout=False)
        return _split_changes(out)

    def scratch(self, root: Path) -> git.Git:
        """A git runner with a private index, work tree (`root`/tree) and object store (`root`/objects) that
        reads the working copy's objects as alternates: previews write nothing into the working copy."""
        (root / "tree").mkdir(parents=True, exist_ok=True)
        (root / "objects").mkdir(exist_ok=True)
        runner = git.Git(str(root / "tree"))
        runner.update_environment(
            GIT_DIR=str(self.path / ".git"), GIT_WORK_TREE=str(root / "tree"), GIT_INDEX_FILE=str(root / "index"),
            GIT_OBJECT_DIRECTORY=str(root / "objects"),
            GIT_ALTERNATE_OBJECT_DIRECTORIES=str(self.path / ".git" / "objects"),
        )
        return runner

    def scratch_tree(self, runner: git.Git, base: str | None, *, written: bool, deleted: list[str]) -> str:
        """Tree id of `base` with the scratch work tree's files laid over it and `deleted` removed."""
        runner.execute(["git", "read-tree", base] if base else ["git", "read-tree", "--empty"])
        if written:
            # --no-all: files of `base` that are absent from the scratch tree are unchanged, not deleted.
            # -f: the repository's .gitignore files are not in the scratch tree; preview what the render produced.
            runner.execute(["git", "-c", "core.bigFileThreshold=1", "add", "--no-all", "-f", "--", "."])
        if deleted:
            listing = Path(runner.working_dir).parent / "deleted"
            listing.write_bytes(b"\0".join(p.encode() for p in deleted) + b"\0")
            with listing.open("rb") as stdin:
                runner.execute(["git", "update-index", "--force-remove", "-z", "--stdin"], istream=stdin)
        return runner.execute(["git", "write-tree"])


def outermost_folders(folders: Iterable[str]) -> list[str]:
    """Drop folders that lie inside another folder of the set: ['a/', 'a/b/', 'c/'] -> ['a/', 'c/']."""
    unique = set(folders)
    return sorted(f for f in unique if not any(parent in unique for parent in _parent_folders(f.rstrip("/"))))


def _parse_entries(out: str, *, blob_field: int) -> dict[str, str]:
    """`ls-files -s` / `ls-tree` -z output -> {path: blob id} (submodules and symlinks included as listed)."""
    entries = {}
    for record in out.split("\0"):
        if not record:
            continue
        meta, _, path = record.partition("\t")
        entries[path] = meta.split()[blob_field]
    return entries


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


def _ancestors(folder: str) -> list[str]:
    """'a/b/c' -> ['a/b/c', 'a/b', 'a']."""
    parts = folder.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]
