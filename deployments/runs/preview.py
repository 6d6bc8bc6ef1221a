"""Previews: what a render would commit now, without committing (and without waiting for running renders)."""

from __future__ import annotations

from collections.abc import Iterable

from deployments.git import PreviewResult, gitops_preview
from deployments.rendering import snapshot_scopes, tree_units
from deployments.runs.request import environment_ids_check
from deployments.selectors import environments_snapshot


def environment_preview(*, environment_ids: Iterable[int], diff_page: tuple[int, int] | None = None) -> PreviewResult:
    """Render the environments into a scratch tree and diff it against the branch head; commits nothing.

    Works for an environment that was never rendered (everything shows as added). Secrets are not resealed or
    synced here (a preview has no side effects), so it shows the sealed values as they are now. ``diff_page``
    ``(first, count)``: the diff of only those changed files (gitops_preview), for paging a large preview; then
    never-rendered project folders are listed from their paths and only the page's folders are rendered, so the
    first page of 5,000 never-rendered projects costs the snapshot and the fingerprints, not a render of every file.
    Takes no repository lock.
    """
    ids = environment_ids_check(environment_ids)
    snapshot = environments_snapshot(environment_ids=ids)
    return gitops_preview(units=tree_units(snapshot), scopes=snapshot_scopes(snapshot), diff_page=diff_page)
