"""The admin's form renderer: Django's Jinja2 templates where Django ships them, Django's templates for the admin's
own widgets, and the same HTML as Django's template renderer for every widget the portal's pages use."""

import re

import pytest
from django import forms
from django.contrib.admin import widgets as admin_widgets
from django.contrib.admin.sites import site
from django.forms.renderers import DjangoTemplates, get_default_renderer

from deployments.forms import EnvironmentForm
from deployments.models import Environment
from portal.form_renderer import BuiltinJinja2FormRenderer


def _normalized(html: str) -> str:
    # Jinja2 escapes an apostrophe as &#39;, Django as &#x27; (the same character); whitespace between tags aside.
    return re.sub(r"\s+", " ", html.replace("&#39;", "&#x27;")).replace("> <", "><").strip()


def test_settings_use_it():
    assert isinstance(get_default_renderer(), BuiltinJinja2FormRenderer)


def test_builtin_templates_come_from_jinja2_and_admin_widgets_from_django():
    renderer = BuiltinJinja2FormRenderer()
    assert type(renderer.get_template("django/forms/widgets/input.html")).__module__.endswith("jinja2")
    assert type(renderer.get_template("django/forms/label.html")).__module__.endswith("jinja2")
    assert type(renderer.get_template("admin/widgets/related_widget_wrapper.html")).__module__.endswith("django")


class _EveryWidget(forms.Form):
    text = forms.CharField(initial="it's <b>", help_text="help & more")
    number = forms.IntegerField(initial=3, required=False)
    choice = forms.ChoiceField(choices=[("a", "A's"), ("b", "B")], initial="b")
    many = forms.MultipleChoiceField(choices=[("a", "A"), ("b", "B")], widget=forms.CheckboxSelectMultiple)
    radio = forms.ChoiceField(choices=[("x", "X"), ("y", "Y")], widget=forms.RadioSelect)
    flag = forms.BooleanField(required=False, initial=True)
    notes = forms.CharField(widget=forms.Textarea, initial="line\n<two>")
    hidden = forms.CharField(widget=forms.HiddenInput, initial="h")
    when = forms.SplitDateTimeField(widget=admin_widgets.AdminSplitDateTime, required=False)
    day = forms.DateField(widget=admin_widgets.AdminDateWidget, required=False)
    url = forms.URLField(widget=admin_widgets.AdminURLFieldWidget, initial="https://example.com/?a=1&b=2",
                         assume_scheme="https")


def test_same_html_as_django_templates_for_every_kind_of_widget():
    django_html = _EveryWidget(renderer=DjangoTemplates()).render()
    ours = _EveryWidget(renderer=BuiltinJinja2FormRenderer()).render()
    assert _normalized(ours) == _normalized(django_html)
    bound = {"text": "", "number": "x", "choice": "zz", "radio": "y"}
    assert _normalized(_EveryWidget(bound, renderer=BuiltinJinja2FormRenderer()).render()) == _normalized(
        _EveryWidget(bound, renderer=DjangoTemplates()).render())  # with errors


@pytest.mark.django_db
def test_same_html_for_the_environment_form_with_related_field_wrappers(rf, admin_user):
    request = rf.get("/")
    request.user = admin_user
    model_admin = site._registry[Environment]
    form_class = model_admin.get_form(request)
    assert form_class is not None and issubclass(form_class, EnvironmentForm)
    outputs = []
    for renderer in (DjangoTemplates(), BuiltinJinja2FormRenderer()):
        form = form_class(renderer=renderer)
        outputs.append(_normalized("".join(str(field) + field.label_tag() for field in form)))
    assert outputs[0] == outputs[1]
