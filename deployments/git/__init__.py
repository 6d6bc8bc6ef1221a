"""The one writer of the GitOps repository.

Nothing else in the portal touches the repository: render units go in through gitops_commit (or
gitops_preview for a dry run), commits come out. See writer.py for the flow and the invariant checked before every
push, manifest.py for ownership, repository.py for the git commands (and why the repository is bare) and
mirror.py for the plain-file tree the validation gate reads.
"""

from deployments.git.manifest import MANIFEST_PATH, ManifestError
from deployments.git.repository import GitOpsError, GitOpsPushError, GitOpsPushRejected, GitOpsRemoteError
from deployments.git.writer import (
    CommitResult,
    GitOpsDeletionRefused,
    GitOpsInvariantError,
    PreviewResult,
    RenderUnit,
    gitops_commit,
    gitops_head,
    gitops_preview,
)
from deployments.locks import RepositoryLockTimeout, repository_lock

__all__ = [
    "MANIFEST_PATH",
    "CommitResult",
    "GitOpsDeletionRefused",
    "GitOpsError",
    "GitOpsInvariantError",
    "GitOpsPushError",
    "GitOpsPushRejected",
    "GitOpsRemoteError",
    "ManifestError",
    "PreviewResult",
    "RenderUnit",
    "RepositoryLockTimeout",
    "gitops_commit",
    "gitops_head",
    "gitops_preview",
    "repository_lock",
]
