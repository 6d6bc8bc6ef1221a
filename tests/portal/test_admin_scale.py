"""The admin at scale: the dashboard, the project list (its search and filters), the environment and project
pages, the preview page and the run list run a number of SQL queries that does not grow with the number of
projects or runs; a project's host-collision check is one indexed query."""

import pytest
from django.contrib.admin import ModelAdmin
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from deployments.models import Environment, RenderRun
from projects.models import Container, Project, environment_host_conflicts
from tests.factories import eks_environment_factory, node_group_factory, project_factory

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "a-long-test-password")
    client.force_login(user)
    return client


def _add_projects(environment: Environment, prefix: str, count: int) -> list[Project]:
    projects = Project.objects.bulk_create(
        Project(environment=environment, name=f"{prefix} {n}", slug=f"{prefix}-{n}", owner=f"owner-{n % 7}")
        for n in range(count))
    Container.objects.bulk_create(
        Container(project=project, directory=directory, role=role, image="tesslate-devserver:latest", port=port)
        for project in projects
        for directory, role, port in (("frontend", "frontend", 5173), ("db", "database", 5432)))
    return projects


def _queries(client, url: str, params: dict | None = None) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, params or {})
    assert response.status_code == 200, (url, params)
    return len(ctx), response.content.decode()


PROJECT_PAGES = [
    {},
    {"q": "shop"},
    {"role": "database"},
    {"role": "database", "q": "shop"},
    {"state": "active", "environment__id__exact": "ENV"},
    {"o": "-9"},
]


def test_project_list_search_and_filters_have_constant_queries(superuser_client):
    environment = Environment.objects.create(name="load", app_domain="load.example.com")
    url = reverse("admin:projects_project_changelist")

    def counts() -> list[int]:
        pages = [{k: (str(environment.pk) if v == "ENV" else v) for k, v in page.items()} for page in PROJECT_PAGES]
        return [_queries(superuser_client, url, page)[0] for page in pages]

    _add_projects(environment, "shop", 3)
    one_page = counts()  # a single page is the queryset itself, without the paginator's key query
    _add_projects(environment, "shop-page", 50)
    few = counts()  # two pages of every list: the environments' order and the page's keys, then its rows
    assert few == [n + 2 for n in one_page[:-1]] + [one_page[-1] + 1]  # ordered by a column: keys, then rows
    _add_projects(environment, "shop-more", 120)
    _add_projects(environment, "other", 60)
    assert counts() == few
    # A later page also counts the environments before its first row (here the one environment: does row 150 lie
    # in it?), through the (environment_id, slug) index; never once per row.
    assert [_queries(superuser_client, url, {**page, "p": "4"})[0] for page in PROJECT_PAGES[:3]] == [
        n + 1 for n in few[:3]]


def test_project_list_pages_keep_order_and_rows(superuser_client):
    """A later page lists the rows one sliced query of the same ordered, filtered list gives, in that order."""
    environment = Environment.objects.create(name="load", app_domain="load.example.com")
    other = Environment.objects.create(name="a-first", app_domain="first.example.com")
    _add_projects(environment, "shop", 70)
    _add_projects(other, "shop", 40)
    url = reverse("admin:projects_project_changelist")
    expected = list(Project.objects.order_by("environment__name", "slug").values_list("pk", flat=True))
    for number, rows in ((1, expected[:50]), (2, expected[50:100]), (3, expected[100:])):
        _, page = _queries(superuser_client, url, {"p": str(number)})
        positions = [page.index(reverse("admin:projects_project_change", args=[pk])) for pk in rows]
        assert positions == sorted(positions), number
        others = set(expected) - set(rows)
        assert not any(reverse("admin:projects_project_change", args=[pk]) in page for pk in others), number


@pytest.mark.parametrize("orphans", [0, 7])
def test_grouped_pages_are_the_slices_of_the_ordered_list(orphans):
    """Every page of the project list's paginator, over environments of 0 to 120 projects (names not in the order
    they were created), filtered or not, holds exactly the rows of that slice of one ordered query, in order."""
    from django.core.paginator import Paginator

    from projects.admin import EnvironmentSlugPaginator

    sizes = {"m-env": 37, "a-env": 0, "z-env": 120, "c-env": 50, "b-env": 1, "k-env": 63}
    for name, size in sizes.items():
        environment = Environment.objects.create(name=name, app_domain=f"{name}.example.com")
        projects = _add_projects(environment, f"{name}-shop", size)
        Container.objects.filter(project__in=projects[::3], role="database").delete()  # some have no database
    lists = [Project.objects.order_by("environment__name", "slug", "-pk"),
             Project.objects.filter(containers__role="database").order_by("environment__name", "slug", "-pk"),
             Project.objects.filter(slug__contains="1").order_by("environment__name", "slug", "-pk")]
    for rows in lists:
        plain, grouped = Paginator(rows, 50, orphans=orphans), EnvironmentSlugPaginator(rows, 50, orphans=orphans)
        assert grouped.num_pages == plain.num_pages > 1
        for number in plain.page_range:
            expected = [project.pk for project in plain.page(number).object_list]
            assert [project.pk for project in grouped.page(number).object_list] == expected, number
    # Another ordering (a column header clicked) pages as KeysFirstPaginator does: still the same slices.
    rows = Project.objects.order_by("-owner", "-pk")
    plain, grouped = Paginator(rows, 50), EnvironmentSlugPaginator(rows, 50)
    assert [[p.pk for p in grouped.page(n).object_list] for n in grouped.page_range] == [
        [p.pk for p in plain.page(n).object_list] for n in plain.page_range]


def test_role_filter_finds_projects_with_that_role_once(superuser_client):
    environment = Environment.objects.create(name="load", app_domain="load.example.com")
    with_db = project_factory(environment, slug="has-db", containers=())
    Container.objects.create(project=with_db, directory="db", role="database", image="postgres:16", port=5432)
    Container.objects.create(project=with_db, directory="db2", role="database", image="postgres:16", port=5433)
    project_factory(environment, slug="no-db", containers=("frontend",))
    _, page = _queries(superuser_client, reverse("admin:projects_project_changelist"), {"role": "database"})
    change_url = reverse("admin:projects_project_change", args=[with_db.pk])
    assert page.count(f'href="{change_url}?') == 1  # one row (filters kept), although it has two database containers
    assert "has-db" in page and "no-db" not in page


def test_search_by_project_id_finds_it(superuser_client):
    environment = Environment.objects.create(name="load", app_domain="load.example.com")
    wanted = project_factory(environment, slug="wanted")
    project_factory(environment, slug="unwanted")
    _, page = _queries(superuser_client, reverse("admin:projects_project_changelist"), {"q": str(wanted.pk)})
    assert "wanted" in page and "unwanted" not in page
    _, page = _queries(superuser_client, reverse("admin:projects_project_changelist"), {"q": "not-a-uuid"})
    assert "wanted" not in page


def test_run_list_has_constant_queries_and_loads_no_diff(superuser_client):
    environment = Environment.objects.create(name="load", app_domain="load.example.com")
    url = reverse("admin:deployments_renderrun_changelist")

    def add_runs(count: int) -> None:
        for _ in range(count):
            run = RenderRun.objects.create(reason="scale", diff="+x\n" * 100, log="line\n" * 100)
            run.environments.add(environment)

    add_runs(2)
    few, _ = _queries(superuser_client, url)
    add_runs(80)
    with CaptureQueriesContext(connection) as ctx:
        assert superuser_client.get(url).status_code == 200
    assert len(ctx) == few
    listing = [q["sql"] for q in ctx.captured_queries if 'FROM "deployments_renderrun"' in q["sql"]
               and "COUNT(" not in q["sql"]]
    assert listing and all('"deployments_renderrun"."diff"' not in sql and '"deployments_renderrun"."log"' not in sql
                           for sql in listing)


def test_host_conflicts_are_one_query_whatever_the_number_of_projects():
    environment = Environment.objects.create(name="load", app_domain="load.example.com")
    _add_projects(environment, "p", 5)
    with CaptureQueriesContext(connection) as small:
        assert environment_host_conflicts(environment=environment, slug="new", directories=["frontend"]) == []
    _add_projects(environment, "q", 200)
    with CaptureQueriesContext(connection) as large:
        assert environment_host_conflicts(environment=environment, slug="new", directories=["frontend"]) == []
    assert len(small) == len(large) == 1
    # The query names the candidate pairs instead of reading every container of the environment.
    assert "'new'" in large.captured_queries[0]["sql"] or "new" in large.captured_queries[0]["sql"]
    # shop/api-v2 and shop-api/v2 spell the same host label; both splits of the label are found.
    project_factory(environment, slug="shop", containers=("api-v2",))
    found = environment_host_conflicts(environment=environment, slug="shop-api", directories=["v2"])
    assert len(found) == 1 and "shop" in found[0] and "api-v2" in found[0]
    found = environment_host_conflicts(environment=environment, slug="q-1", directories=["frontend"])
    assert len(found) == 1 and "q-1" in found[0]


def test_dashboard_object_pages_and_preview_have_constant_queries(superuser_client, settings, tmp_path):
    settings.GITOPS_REMOTE_URL = ""
    settings.GITOPS_REPO_DIR = tmp_path / "work"  # never rendered: the preview shows everything as added
    environment = eks_environment_factory(name="load")
    node_group_factory(environment, hosts="user-projects")
    project = _add_projects(environment, "shop", 3)[0]
    urls = [reverse("admin:index"), reverse("admin:deployments_environment_change", args=[environment.pk]),
            reverse("admin:projects_project_change", args=[project.pk]),
            reverse("admin:deployments_environment_preview", args=[environment.pk])]

    def counts() -> list[int]:
        found = []
        for url in urls:
            cache.clear()  # the dashboard's cached estimate: count the queries that compute it, too
            found.append(_queries(superuser_client, url)[0])
        return found

    counts()  # warm: per-process caches (content types, permissions) are filled by the first visit
    few = counts()
    last = _add_projects(environment, "shop-more", 120)[-1]
    many = counts()
    assert many == few
    _, preview = _queries(superuser_client, urls[3])
    # The complete file list has every new project's folder, though its diff page shows only the first files.
    assert f"<li>+ environments/load/projects/{last.namespace}/kustomization.yaml</li>" in preview


def test_action_checkbox_is_django_s_html(superuser_client):
    environment = eks_environment_factory(name="load")
    project = _add_projects(environment, "shop", 1)[0]
    Project.objects.filter(pk=project.pk).update(slug="a-<b>&-\"q\"")
    project.refresh_from_db()
    from django.contrib import admin

    project_admin = admin.site._registry[Project]
    assert str(project_admin.action_checkbox(project)) == str(ModelAdmin.action_checkbox(project_admin, project))
    run = RenderRun.objects.create(reason="x")
    run_admin = admin.site._registry[RenderRun]
    assert str(run_admin.action_checkbox(run)) == str(ModelAdmin.action_checkbox(run_admin, run))
    _, page = _queries(superuser_client, reverse("admin:projects_project_changelist"))
    assert 'id="action-toggle"' in page and f'value="{project.pk}" class="action-select"' in page


def test_environment_list_counts_active_projects_and_node_groups_without_reading_every_project(superuser_client):
    from dashboard import selectors as dashboard_selectors

    busy = eks_environment_factory(name="busy")
    node_group_factory(busy, name="spot")
    node_group_factory(busy, name="system")
    Environment.objects.create(name="quiet", app_domain="quiet.example.com")
    _add_projects(busy, "shop", 5)
    Project.objects.filter(environment=busy, slug__in=["shop-0", "shop-1"]).update(state="hibernated")
    url = reverse("admin:deployments_environment_changelist")
    few, _ = _queries(superuser_client, url)
    _add_projects(busy, "more", 40)
    with CaptureQueriesContext(connection) as ctx:
        page = superuser_client.get(url).content.decode()
    assert len(ctx) == few
    # Counted per environment in a subquery (the (environment, state) index), not by joining every project.
    listing = next(q["sql"] for q in ctx.captured_queries if 'AS "_active_projects"' in q["sql"])
    assert 'LEFT OUTER JOIN "projects_project"' not in listing
    assert '<td class="field-active_projects">43</td>' in page and '<td class="field-node_group_count">2</td>' in page
    assert '<td class="field-active_projects">0</td>' in page  # quiet: no projects at all
    cards = {card.name: card for card in dashboard_selectors.environment_cards()}
    assert cards["busy"].active_projects == 43 and cards["quiet"].active_projects == 0
    # Sorting by the counts still works.
    assert superuser_client.get(url, {"o": "6"}).status_code == 200
    assert superuser_client.get(url, {"o": "-7"}).status_code == 200


@pytest.mark.parametrize("key", ["2f0b3a4e-8d1c-4c55-9e0f-6f2a1b7c9d10", "a/b c_é%:@~?#", 42])
def test_keyed_change_urls_match_django_reverse(key):
    """The list's row links put each key into one reversed URL: the same URL Django reverses per row."""
    from types import SimpleNamespace

    from django.contrib import admin
    from django.contrib.admin.views.main import ChangeList

    from deployments.adminkit import KeyedUrlChangeList

    changelist = object.__new__(KeyedUrlChangeList)
    changelist.opts, changelist.pk_attname = Project._meta, "id"
    changelist.model_admin = admin.site._registry[Project]
    row = SimpleNamespace(id=key)
    assert changelist.url_for_result(row) == ChangeList.url_for_result(changelist, row)
    assert changelist.url_for_result(row) == ChangeList.url_for_result(changelist, row)  # the cached template
