"""The one writer of the GitOps repository.

Nothing else in the portal touches the working copy: render units go in through gitops_commit (or
gitops_preview for a dry run), commits come out. See writer.py for the flow, manifest.py for ownership and
repository.py for the git commands.
"""

from deployments.git.manifest import MANIFEST_PATH, ManifestError
from deployments.git.repository import (
    GitOpsDeletionRefused,
    GitOpsError,
    GitOpsInvariantError,
    GitOpsPushError,
    GitOpsPushRejected,
)
from deployments.git.writer import (
    CommitResult,
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
    "ManifestError",
    "PreviewResult",
    "RenderUnit",
    "RepositoryLockTimeout",
    "gitops_commit",
    "gitops_head",
    "gitops_preview",
    "repository_lock",
]
