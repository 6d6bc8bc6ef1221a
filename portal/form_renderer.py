"""The form renderer of the admin's pages (settings.FORM_RENDERER).

Django renders every form widget and label through a template: an environment or project page renders about 60
widgets and 30 labels, about a third of the page's time with Django's template engine. Django ships the same
built-in widget, label and form templates for Jinja2 (django/forms/jinja2, what ``django.forms.renderers.Jinja2``
uses), which render the same HTML several times faster; the admin's own widget templates (related-field
wrappers, date and time widgets, raw id inputs) exist only as Django templates.

As with Django's own renderers (whose built-in folder is searched first), overriding one of Django's built-in form
templates (``django/forms/...``) would need ``django.forms.renderers.TemplatesSetting``; the portal overrides none.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from django.forms.renderers import BaseRenderer, DjangoTemplates, Jinja2


class BuiltinJinja2FormRenderer(BaseRenderer):
    """Django's Jinja2 templates for the templates Django ships for them (``django/forms/...``); Django's template
    engine (``django.forms.renderers.DjangoTemplates``) for every other name, i.e. the admin's widgets and any
    app's own widget template. Both engines keep their loaded templates (and reload them in development)."""

    def __init__(self) -> None:
        self._jinja2 = Jinja2()
        self._django = DjangoTemplates()

    @cached_property
    def _jinja2_names(self) -> frozenset[str]:
        """Every template of django/forms/jinja2, by its name ("django/forms/widgets/input.html")."""
        import django.forms

        root = Path(django.forms.__file__).parent / "jinja2"
        return frozenset(path.relative_to(root).as_posix() for path in root.rglob("*.html"))

    def get_template(self, template_name: str):
        engine = self._jinja2 if template_name in self._jinja2_names else self._django
        return engine.get_template(template_name)
