"""Reads of a GitOps remote with the git command line (``git ls-remote``), for the backup audit."""

from __future__ import annotations

import os
import re
import subprocess

TIMEOUT_SECONDS = 20


class GitRemoteError(Exception):
    """The remote could not be read; the message is one line without credentials."""


def redact_url(url: str) -> str:
    """``url`` without user:password@ (https) so it can be shown."""
    return re.sub(r"//[^/@]+@", "//***@", url)


def remote_head(*, url: str, branch: str, timeout: float = TIMEOUT_SECONDS) -> str | None:
    """The commit the remote's ``refs/heads/<branch>`` points at; None when the branch does not exist.

    Raises GitRemoteError when the remote is unreachable or refuses (never prompts for credentials).
    """
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true", GIT_SSH_COMMAND="ssh -o BatchMode=yes")
    try:
        done = subprocess.run(["git", "ls-remote", "--", url, f"refs/heads/{branch}"], capture_output=True,
                              text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise GitRemoteError(f"{redact_url(url)}: no answer within {timeout:.0f} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["git ls-remote failed"])[-1]
        raise GitRemoteError(redact_url(f"{redact_url(url)}: {last}".replace(url, redact_url(url)))[:300])
    for line in done.stdout.splitlines():
        sha, _, ref = line.partition("\t")
        if ref == f"refs/heads/{branch}":
            return sha
    return None
