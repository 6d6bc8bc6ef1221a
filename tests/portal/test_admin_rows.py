"""The change lists rendered from a row plan (deployments.admin_rows) give Django's HTML byte for byte: every
registered admin that uses the plan and a test admin with every kind of column, plain, sorted, filtered, searched
and as a popup; the page itself carries the planned rows."""

import datetime

import pytest
from django.contrib import admin
from django.contrib.admin.templatetags.admin_list import items_for_result
from django.contrib.auth import get_user_model
from django.test import RequestFactory
from django.urls import resolve, reverse

from deployments.admin_rows import RowPlan
from deployments.adminkit import PlannedRowsMixin
from deployments.models import RenderRun
from projects.models import HibernationRun, Project
from tests.factories import (
    container_factory,
    eks_environment_factory,
    node_group_factory,
    project_factory,
    secret_factory,
)

pytestmark = pytest.mark.django_db

PLANNED_ADMINS = sorted((model_admin for model_admin in admin.site._registry.values()
                         if isinstance(model_admin, PlannedRowsMixin)), key=lambda a: a.opts.label)


@pytest.fixture
def superuser():
    return get_user_model().objects.create_superuser("root", "root@example.com", "a-long-test-password")


@pytest.fixture
def rows(superuser):
    """Rows with the values that format differently: empty, None, choices, dates, foreign keys, hibernated
    projects, a failed run triggered by a user, characters to escape."""
    environment = eks_environment_factory(name="rows")
    node_group_factory(environment)
    secret_factory(environment, description='<b>"quoted"</b> & more')
    shop = project_factory(environment, name="Shop <script>", owner="ann")
    container_factory(shop, directory="db", role="database", image="postgres:16", port=5432)
    hibernated = project_factory(environment, state=Project.State.HIBERNATED, owner="ann.bob",
                                 last_activity_at=datetime.datetime(2026, 11, 1, 12, 0, tzinfo=datetime.UTC))
    run = RenderRun.objects.create(triggered_by=superuser, reason="a <reason> & more", status="failed")
    run.environments.add(environment)
    RenderRun.objects.create(reason="")
    HibernationRun.objects.create(project=hibernated, stamp="20261101-120000", snapshot_render_run=run)


def _changelist(model_admin, user, params: dict):
    url = reverse(f"admin:{model_admin.opts.app_label}_{model_admin.opts.model_name}_changelist")
    request = RequestFactory().get(url, params)
    request.user = user
    request.resolver_match = resolve(url)  # the admin keeps a list's filters only on its own URL
    return model_admin.get_changelist_instance(request)


def _assert_same_rows(model_admin, user, params):
    cl = _changelist(model_admin, user, params)
    plan = RowPlan(cl)
    expected = ["".join(items_for_result(cl, row, None)) for row in cl.result_list]
    assert expected, f"{model_admin.opts.label} {params}: no rows to compare"
    assert [plan.row_html(row) for row in cl.result_list] == expected, (model_admin.opts.label, params)


def _param_sets(model_admin) -> list[dict]:
    sets = [{}, {"o": "-2.1"}, {"_popup": "1"}]
    if model_admin.search_fields:
        sets.append({"q": "o"})
    return sets


def test_planned_admins_are_the_long_lists():
    labels = {model_admin.opts.label for model_admin in PLANNED_ADMINS}
    assert {"projects.Project", "deployments.Environment", "deployments.RenderRun"} <= labels


@pytest.mark.parametrize("model_admin", PLANNED_ADMINS, ids=lambda a: a.opts.label)
def test_rows_are_django_rows(model_admin, superuser, rows):
    for params in _param_sets(model_admin):
        _assert_same_rows(model_admin, superuser, params)


@pytest.mark.parametrize("params", [{"role": "database"}, {"state": "hibernated"}, {"role": "frontend", "o": "3"},
                                    {"q": "shop", "_popup": "1", "_to_field": "id"}])
def test_filtered_project_rows_keep_the_filters_in_their_links(params, superuser, rows):
    model_admin = admin.site._registry[Project]
    _assert_same_rows(model_admin, superuser, params)
    cl = _changelist(model_admin, superuser, params)
    if "_popup" not in params:
        assert "_changelist_filters=" in RowPlan(cl).row_html(cl.result_list[0])


class EveryKindOfColumn(admin.ModelAdmin):
    """Columns of each kind items_for_result tells apart."""

    list_display = ["slug", "environment", "state", "last_activity_at", "created_at", "namespace", "is_rendered",
                    "environment__name", "__str__", "flag", "maybe_empty", "lambda_column", "raises"]
    list_display_links = ["state", "environment"]

    @admin.display(boolean=True)
    def flag(self, obj):
        return obj.state == Project.State.ACTIVE

    @admin.display(empty_value="(nothing)")
    def maybe_empty(self, obj):
        return None if obj.state == Project.State.HIBERNATED else datetime.date(2026, 12, 1)

    def raises(self, obj):
        raise Project.DoesNotExist

    lambda_column = staticmethod(lambda obj: f"<{obj.slug}>")


@pytest.mark.parametrize("params", [{}, {"_popup": "1"}, {"o": "1"}, {"state__exact": "active"}])
def test_every_kind_of_column(params, superuser, rows):
    model_admin = EveryKindOfColumn(Project, admin.site)
    model_admin.list_display = [*model_admin.list_display, lambda obj: obj.last_activity_at]
    _assert_same_rows(model_admin, superuser, params)


def test_list_without_links_and_with_default_links(superuser, rows):
    for links in (None, ()):
        model_admin = EveryKindOfColumn(Project, admin.site)
        model_admin.list_display_links = links
        _assert_same_rows(model_admin, superuser, {})


def test_the_page_carries_the_planned_rows(client, superuser, rows):
    client.force_login(superuser)
    model_admin = admin.site._registry[Project]
    response = client.get(reverse("admin:projects_project_changelist"), {"role": "database"})
    assert response.status_code == 200
    assert response.templates[0].name == "admin/deployments/planned_rows_change_list.html"
    cl = response.context["cl"]
    page = response.content.decode()
    for row in cl.result_list:
        assert "<tr>" + "".join(items_for_result(cl, row, None)) + "</tr>" in page
    assert model_admin.change_list_template == "admin/deployments/planned_rows_change_list.html"


def test_every_inline_builds_its_empty_form_once_per_page(client, superuser, rows, monkeypatch):
    """The admin reads an inline's empty form (the "Add another" row) several times while rendering; each inline
    of the portal builds it once, and the page still carries it (the __prefix__ row)."""
    from django.forms import BaseForm

    from deployments.models import Environment

    built = []
    original_init = BaseForm.__init__

    def counting_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if self.prefix and "__prefix__" in self.prefix:
            built.append(self.prefix)

    monkeypatch.setattr(BaseForm, "__init__", counting_init)
    client.force_login(superuser)
    environment = Environment.objects.get(name="rows")
    project = Project.objects.filter(environment=environment).first()
    pages = [(reverse("admin:deployments_environment_change", args=[environment.pk]), True),
             (reverse("admin:projects_project_change", args=[project.pk]), True),
             # read-only volumes of a hibernation run: no "Add another" row on the page
             (reverse("admin:projects_hibernationrun_change", args=[HibernationRun.objects.get().pk]), False)]
    for url, can_add in pages:
        built.clear()
        response = client.get(url)
        assert response.status_code == 200
        assert built and len(built) == len(set(built)), (url, built)
        if can_add:
            for prefix in built:
                assert f'id="{prefix.replace("__prefix__", "empty")}"' in response.content.decode(), (url, prefix)


def test_every_registered_inline_uses_the_formset_that_builds_its_empty_form_once():
    from deployments.forms import EmptyFormOnceInlineFormSet

    inlines = [(model_admin, inline) for model_admin in admin.site._registry.values() for inline in model_admin.inlines]
    assert inlines
    for model_admin, inline in inlines:
        assert issubclass(inline.formset, EmptyFormOnceInlineFormSet), (model_admin, inline)
