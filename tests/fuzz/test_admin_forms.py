"""Hostile input through the admin's add and change forms of every portal model (Hypothesis, ≥ 500 submissions).

Each example posts a valid form with one to three fields (inline rows included) replaced by hostile values:
unicode, huge strings, NUL bytes, negative and huge numbers, injection-looking text, bad Kubernetes quantities and
names. Checked for every submission: no HTTP 500 (an exception fails the test), a refusal re-renders the form with
its errors attached to fields (or the form's non-field errors, which the page shows), the database is unchanged
after a refusal, and whatever was accepted passes the models' full validation (nothing invalid is stored). At the
end the stored state is rendered by the renderer: nothing accepted breaks the GitOps tree.
"""

from __future__ import annotations

import datetime
import itertools
import os
from decimal import Decimal

import pytest
from django.contrib import admin
from django.forms import MultiWidget
from django.forms.formsets import TOTAL_FORM_COUNT
from django.test import RequestFactory
from django.urls import reverse
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from costs.models import EnvironmentCostSettings, Price
from deployments.models import Environment, NodeGroup, Secret
from deployments.rendering import tree_units
from deployments.selectors import environments_snapshot
from projects.models import Container, Project
from tests.factories import environment_factory, node_group_factory, project_factory, secret_factory

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "600"))

INJECTIONS = ["'; DROP TABLE deployments_environment; --", "{{ 7*7 }}", "{% raw %}", "<script>alert(1)</script>",
              "$(rm -rf /)", "`id`", "../../etc/passwd", "a\nkind: Secret", "x: |\n  y", "%s%s%n", "\\x00",
              "${jndi:ldap://x}", "null", "None", "true", "-", "a" * 64, "UPPER", "-leading", "trailing-",
              "under_score", "dot.ted", "spa ce", "ünïcödé", "名前", "🙂", "\u202eevil", "\r\n"]
QUANTITIES = ["1.5.5Gi", "-1Gi", "1e999", "10Zi", "0.0001m", "1Gb", "Gi", "1 Gi", "9" * 40 + "Gi", "+1", ".", "1m1",
              "NaN", "inf", "0x10", "1_000"]
NUMBERS = ["-1", "-2147483649", "2147483648", "9" * 30, "1e10", "1.5", "0", "NaN", "-0", "０", "٣"]

hostile = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=20).map(lambda s: s + "\x00" + s),
    st.integers(min_value=300, max_value=120_000).map(lambda n: "a" * n),
    st.sampled_from(INJECTIONS), st.sampled_from(QUANTITIES), st.sampled_from(NUMBERS),
    st.integers(min_value=-(10 ** 30), max_value=10 ** 30).map(str),
)

_seq = itertools.count(1)


@pytest.fixture
def world(settings, admin_user):
    settings.GITOPS_AUTO_RENDER = False  # renders are not what is tested here; saves only mark environments dirty
    env = environment_factory(name="fuzz-base")
    eks = environment_factory(name="fuzz-eks", kind=Environment.Kind.EKS, aws_account_id="123456789012",
                              aws_region="us-east-1", eks_cluster_name="fuzz", storage_provisioner="ebs-gp3",
                              image_registry="123456789012.dkr.ecr.us-east-1.amazonaws.com")
    group = node_group_factory(eks)
    secret = secret_factory(env)
    project = project_factory(env, containers=("frontend",))
    price = Price.objects.create(key="fuzz.price", description="fuzz", unit="hour", amount=Decimal("0.1"),
                                 as_of=datetime.date(2026, 1, 1))
    cost_settings = EnvironmentCostSettings.objects.create(environment=eks)
    return {Environment: env, NodeGroup: group, Secret: secret, Project: project, Price: price,
            EnvironmentCostSettings: cost_settings, "eks": eks}


def _serialize(bound_field, prefix_name: str, data: dict) -> None:
    value = bound_field.value()
    widget = bound_field.field.widget
    if isinstance(widget, MultiWidget):
        parts = widget.decompress(value)
        for index, part in enumerate(parts):
            data[f"{prefix_name}_{index}"] = "" if part is None else str(part)
    elif isinstance(value, bool) or bound_field.field.__class__.__name__ == "BooleanField":
        if value:
            data[prefix_name] = "on"
    elif isinstance(value, (list, tuple)):
        data[prefix_name] = [str(item) for item in value]
    else:
        data[prefix_name] = "" if value is None else str(value)


def _form_data(model_admin, request, obj) -> tuple[dict, list[str]]:
    """POST data the page would send unchanged (for ``obj``, or for a new object when it is unsaved), and the
    names of the editable fields (inline row fields included)."""
    form_class = model_admin.get_form(request, obj if obj.pk else None)
    form = form_class(instance=obj)
    data: dict = {}
    names: list[str] = []
    for bound in form:
        _serialize(bound, bound.html_name, data)
        names.append(bound.html_name)
    if not obj.pk:
        data.update(_ADD_EXTRA.get(type(obj), {}))
    for formset, _inline in model_admin.get_formsets_with_inlines(request, obj if obj.pk else None):
        fs = formset(instance=obj, prefix=formset.get_default_prefix())
        rows = list(fs.initial_forms) if obj.pk else []
        data[f"{fs.prefix}-{TOTAL_FORM_COUNT}"] = str(len(rows) + (1 if not obj.pk else 0))
        data[f"{fs.prefix}-INITIAL_FORMS"] = str(len(rows))
        data[f"{fs.prefix}-MIN_NUM_FORMS"] = "0"
        data[f"{fs.prefix}-MAX_NUM_FORMS"] = "1000"
        for row in rows:
            for bound in row:
                _serialize(bound, bound.html_name, data)
                if not bound.html_name.endswith("-DELETE"):  # deleting a row is an action, not input
                    names.append(bound.html_name)
        if not obj.pk:  # one new row on add pages, valid by default
            extra = fs.empty_form
            extra.prefix = f"{fs.prefix}-0"
            for field_name, value in _NEW_ROWS.get(fs.model, {}).items():
                data[f"{extra.prefix}-{field_name}"] = value
                names.append(f"{extra.prefix}-{field_name}")
    return data, names


_ADD_EXTRA = {Secret: {"value": "a-new-value"}}  # write-only fields a new object needs

_NEW_ROWS = {
    NodeGroup: {"name": "fuzz-ng", "capacity_type": "ON_DEMAND", "instance_types": "t3.large", "min_size": "1",
                "desired_size": "2", "max_size": "3", "disk_size_gb": "50", "hosts": "platform"},
    Secret: {"secret_name": "tesslate-app-secrets", "key": "FUZZ_KEY", "value": "a-value"},
    Container: {"directory": "frontend", "role": "frontend", "image": "tesslate-devserver:latest", "port": "3000",
                "cpu_request": "100m", "cpu_limit": "1", "memory_request": "256Mi", "memory_limit": "1Gi",
                "data_volume_size": "1Gi"},
}


def _new_object(model, world):
    n = next(_seq)
    env = world[Environment]
    return {
        Environment: lambda: Environment(name=f"fuzz-new-{n}", app_domain=f"new{n}.example.com"),
        NodeGroup: lambda: NodeGroup(environment=world["eks"], name=f"ng-new-{n}", instance_types="t3.large"),
        Secret: lambda: Secret(environment=env, key=f"NEW_{n}"),
        Project: lambda: Project(environment=env, name=f"New {n}", slug=f"new-{n}", owner=f"user-{n}"),
        Price: lambda: Price(key=f"fuzz.new.{n}", description="new", unit="hour", amount=Decimal("1"),
                             as_of=datetime.date(2026, 1, 1)),
        EnvironmentCostSettings: lambda: EnvironmentCostSettings(environment=environment_factory()),
    }[model]()


def _counts() -> dict:
    return {model: model.objects.count() for model in
            (Environment, NodeGroup, Secret, Project, Container, Price, EnvironmentCostSettings)}


def _errors(response) -> tuple[dict, list]:
    form = response.context["adminform"].form
    inline_errors = []
    for inline in response.context["inline_admin_formsets"]:
        inline_errors += [e for e in inline.formset.errors if e] + list(inline.formset.non_form_errors())
    return dict(form.errors), inline_errors


TARGETS = [(model, action) for model in (Environment, NodeGroup, Secret, Project, Price, EnvironmentCostSettings)
           for action in ("add", "change")]


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_hostile_submissions_never_500_and_never_store_invalid_rows(client, admin_user, world, data):
    client.force_login(admin_user)
    model, action = data.draw(st.sampled_from(TARGETS), label="target")
    model_admin = admin.site._registry[model]
    request = RequestFactory().get("/")
    request.user = admin_user
    obj = model.objects.get(pk=world[model].pk) if action == "change" else _new_object(model, world)
    post, names = _form_data(model_admin, request, obj)
    # Draws must not depend on the database (earlier examples change it): pick fields by index, modulo.
    picks = data.draw(st.lists(st.tuples(st.integers(min_value=0, max_value=10_000), hostile), min_size=1,
                               max_size=3), label="fields and values")
    fields = []
    for index, value in picks:
        name = names[index % len(names)]
        post[name] = value
        fields.append(name)
    post["_save"] = "Save"
    meta = model._meta
    url = (reverse(f"admin:{meta.app_label}_{meta.model_name}_add") if action == "add" else
           reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk]))
    before = _counts()
    newest = model.objects.order_by("-pk").values_list("pk", flat=True).first() if action == "add" else None

    response = client.post(url, post)  # an exception in the view fails the test (no silent 500)

    assert response.status_code in (200, 302), (response.status_code, fields)
    if response.status_code == 200:
        form_errors, inline_errors = _errors(response)
        assert form_errors or inline_errors, f"refused without saying why: {fields}"
        allowed = set(response.context["adminform"].form.fields) | {"__all__"}
        assert set(form_errors) <= allowed, form_errors
        assert _counts() == before, "a refused submission changed the database"
        event(f"{meta.model_name} {action}: refused")
        return
    event(f"{meta.model_name} {action}: accepted")
    # Accepted: whatever was stored passes full validation (the model's own rules, field by field).
    if action == "add":
        saved = model.objects.exclude(pk=newest).order_by("-pk").first() if newest else model.objects.last()
    else:
        saved = model.objects.get(pk=obj.pk)
    saved.full_clean()
    for child in _children(saved):
        child.full_clean()
    environment_id = saved.pk if isinstance(saved, Environment) else getattr(saved, "environment_id", None)
    if environment_id:
        _render(environment_id)


def _render(environment_id: int) -> None:
    """The renderer takes the accepted state: every unit of the environment renders to bytes."""
    units = tree_units(environments_snapshot(environment_ids=[environment_id]))
    for unit in units:
        if unit.key != "shared:platform-base":
            files = unit.render()
            assert all(isinstance(body, bytes) for body in files.values())


def _children(obj):
    if isinstance(obj, Environment):
        return [*obj.node_groups.all(), *obj.secrets.all()]
    if isinstance(obj, Project):
        return list(obj.containers.all())
    return []


@pytest.mark.parametrize("model,action", TARGETS, ids=[f"{m._meta.model_name}-{a}" for m, a in TARGETS])
def test_unchanged_forms_are_accepted(client, admin_user, world, model, action):
    """The fuzz test's starting point is a valid submission: refusals come from the hostile values alone."""
    client.force_login(admin_user)
    model_admin = admin.site._registry[model]
    request = RequestFactory().get("/")
    request.user = admin_user
    obj = model.objects.get(pk=world[model].pk) if action == "change" else _new_object(model, world)
    post, _names = _form_data(model_admin, request, obj)
    post["_save"] = "Save"
    meta = model._meta
    url = (reverse(f"admin:{meta.app_label}_{meta.model_name}_add") if action == "add" else
           reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk]))
    response = client.post(url, post)
    assert response.status_code == 302, _errors(response)
