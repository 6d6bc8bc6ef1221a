"""The paged preview of the real renderer: its pages put together are the diff the commit then writes, for a
never-rendered tree (project folders listed from their paths) and after a change (only changed units rendered)."""

import pytest

from deployments import runs
from deployments.git import gitops_commit
from deployments.models import Environment
from deployments.rendering import snapshot_scopes, tree_units
from deployments.selectors import environments_snapshot
from projects.models import Container
from tests.deployments.runfixtures import demo_load_complete, gitops  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def _pages(environment_ids: list[int], size: int = 7) -> list:
    pages, first = [], 0
    while True:
        page = runs.environment_preview(environment_ids=environment_ids, diff_page=(first, size))
        pages.append(page)
        first += size
        if first >= len(page.paths):
            return pages


def _commit(environment_ids: list[int]):
    snapshot = environments_snapshot(environment_ids=environment_ids)
    return gitops_commit(units=tree_units(snapshot), scopes=snapshot_scopes(snapshot), message="Render",
                         trailers={"Portal-Run": "1"}, author_name="Ada", author_email="ada@example.com")


def test_paged_preview_is_the_commit_before_and_after_a_change(gitops):  # noqa: F811 - the fixture
    demo_load_complete()
    ids = list(Environment.objects.values_list("pk", flat=True))

    pages = _pages(ids)
    result = _commit(ids)
    first = pages[0]
    assert (first.added, first.changed, first.deleted) == (result.added, result.changed, result.deleted)
    assert len(pages) > 3 and "".join(page.diff for page in pages) == result.diff

    container = Container.objects.order_by("pk").first()
    container.port += 1
    container.save()
    pages = _pages(ids, size=1)
    result = _commit(ids)
    assert pages[0].changed == result.changed and result.changed and not result.added
    assert "".join(page.diff for page in pages) == result.diff
