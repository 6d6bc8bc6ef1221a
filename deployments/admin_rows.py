"""The admin change list's rows, rendered from a plan made once per list instead of cell by cell.

Django's ``items_for_result`` (django.contrib.admin.templatetags.admin_list) resolves every column again for every
cell: it looks the name up among the model's fields (an exception for each admin method), asks for the empty value
display, builds the cell's classes, formats through ``format_html`` and, on a filtered list, resolves the change URL
of every row against the URLconf to carry the filters. On a 50-row page of 11 columns that is about a third of
the request. ``RowPlan`` decides all of that once per column and once per list; per cell it only reads the value
and formats it. The HTML is the same as Django's, byte for byte (tests/portal/test_admin_rows.py compares the two
for every list that uses it, filtered, sorted and as a popup).

Lists with inline editing (``list_editable``: a formset per row) are left to Django's own rows. The plan reads
columns with Django's own helpers (``lookup_field``, ``display_for_field``, ``display_for_value`` and the private
``_get_non_gfk_field`` that ``lookup_field`` uses): a Django upgrade that changes how rows render fails the
comparison tests instead of changing the pages unseen.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.admin.templatetags.admin_list import (
    ResultList,
    result_headers,
    result_hidden_fields,
    result_list,
)
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import (
    FieldIsAForeignKeyColumnName,
    _get_non_gfk_field,
    display_for_field,
    display_for_value,
    lookup_field,
)
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from django.db import models
from django.urls import NoReverseMatch
from django.utils.functional import Promise
from django.utils.safestring import SafeString, mark_safe


def _html(value) -> str:
    """``conditional_escape`` without its lazy-argument wrapper: text with ``__html__`` as it is, the rest escaped."""
    if isinstance(value, Promise):
        value = str(value)
    if hasattr(value, "__html__"):
        return value.__html__()
    return html.escape(str(value))


def _css_name(field_name, index: int) -> str:
    """The column's name in its ``field-<name>`` class, as Django's admin_list names it."""
    if callable(field_name):
        return f"lambda{index}" if field_name.__name__ == "<lambda>" else field_name.__name__
    return field_name


def _field_classes(field) -> str:
    return " nowrap" if isinstance(field, (models.DateField, models.TimeField, models.ForeignKey)) else ""


@dataclass
class _Column:
    """One list_display entry, resolved once: which way its value is read and how its cell is marked."""

    name: Any  # a field name, an admin or model attribute name, or a callable
    css: str  # "field-<name>"
    link: bool  # the cell links to the row's change page
    tag: str  # "th" for the first linking column, else "td"
    empty: str  # the admin's empty value display
    field: models.Field | None = None  # a concrete model field, read straight from the row
    getter: Callable | None = None  # an admin method or a callable: value = getter(row)
    getter_empty: str = ""  # the getter's own empty_value_display, else the admin's
    boolean: bool = False

    def cell(self, row, model_admin) -> tuple[str, str]:
        """The cell's class attribute value and its content (HTML), as items_for_result makes them."""
        try:
            if self.field is not None:
                return self.css + _field_classes(self.field), self._field_html(row, self.field)
            if self.getter is not None:
                value = self.getter(row)
                empty, boolean = self.getter_empty, self.boolean
            else:  # a model attribute, property or auto-created field: Django's lookup, row by row
                field, attr, value = lookup_field(self.name, row, model_admin)
                if field is not None and not field.auto_created:
                    return self.css + _field_classes(field), self._field_html(row, field)
                empty = getattr(attr, "empty_value_display", self.empty)
                boolean = getattr(attr, "boolean", False)
                if isinstance(attr, property) and hasattr(attr, "fget"):
                    boolean = getattr(attr.fget, "boolean", False)
        except ObjectDoesNotExist:
            return self.css, _html(self.empty)
        if isinstance(value, str) and value.strip() == "":
            value = ""
        css = "action-checkbox" if self.name == "action_checkbox" else self.css
        if isinstance(value, (datetime.date, datetime.time)):
            css += " nowrap"
        return css, _html(display_for_value(value, empty, boolean))

    def _field_html(self, row, field) -> str:
        if isinstance(field.remote_field, models.ManyToOneRel):
            related = getattr(row, field.name)
            return _html(self.empty if related is None else related)
        value = getattr(row, field.name)
        if isinstance(value, str) and value.strip() == "":
            value = ""
        return _html(display_for_field(value, field, self.empty, avoid_link=self.link))


class RowPlan:
    """How each column of a ChangeList's rows is read and formatted, decided once for the list.

    ``rows()`` yields one ``ResultList`` per row of ``cl.result_list`` holding the row's cells as one SafeString:
    Django's change_list_results.html writes ``<tr>``, the items, ``</tr>``, so the page is the same as with one
    item per cell."""

    def __init__(self, cl):
        self.cl = cl
        model_admin = cl.model_admin
        empty = model_admin.get_empty_value_display()
        self.columns: list[_Column] = []
        first = True
        for index, name in enumerate(cl.list_display):
            if cl.list_display_links is None:
                link = False
            elif first and not cl.list_display_links:
                link = True
            else:
                link = name in cl.list_display_links
            column = _Column(name=name, css=f"field-{_css_name(name, index)}", link=link,
                             tag="th" if link and first else "td", empty=empty)
            first = first and not link
            field = None
            if not callable(name):
                try:
                    field = _get_non_gfk_field(cl.lookup_opts, name)
                except (FieldDoesNotExist, FieldIsAForeignKeyColumnName):
                    field = None
            if field is not None:
                column.field = None if field.auto_created else field
            elif callable(name) or (hasattr(model_admin, name) and name != "__str__"):
                column.getter = name if callable(name) else getattr(model_admin, name)
                column.getter_empty = getattr(column.getter, "empty_value_display", empty)
                column.boolean = getattr(column.getter, "boolean", False)
            self.columns.append(column)
        self._link = self._link_builder()
        self._popup_key = None
        if cl.is_popup:
            self._popup_key = str(cl.to_field) if cl.to_field else cl.lookup_opts.pk.attname

    def _link_builder(self) -> Callable[[Any], str | None]:
        """A function row -> its change URL with the list's filters kept (None: no change page), as
        items_for_result builds it. When the URL is known up to the row's key (KeyedUrlChangeList), the filters,
        the same for every row, are added once to the URL with a placeholder key; each row's key then goes in."""
        cl = self.cl
        context = {"preserved_filters": cl.preserved_filters, "opts": cl.opts}
        try:
            template = cl.change_url_template() if hasattr(cl, "change_url_template") else None
        except NoReverseMatch:
            template = None
        if template is not None:
            with_filters = add_preserved_filters(context, template)
            if with_filters.count(cl.KEY_PLACEHOLDER) == 1:
                before, _, after = with_filters.partition(cl.KEY_PLACEHOLDER)
                quoted_key = cl.quoted_key
                return lambda row: before + quoted_key(row) + after

        def per_row(row):
            try:
                url = cl.url_for_result(row)
            except NoReverseMatch:
                return None
            return add_preserved_filters(context, url)

        return per_row

    def row_html(self, row) -> SafeString:
        """One row's cells (``<th>``/``<td>`` elements) as items_for_result renders them, joined."""
        model_admin = self.cl.model_admin
        cells = []
        for column in self.columns:
            css, content = column.cell(row, model_admin)
            if column.link:
                url = self._link(row)
                if url is not None:
                    popup = ""
                    if self._popup_key is not None:
                        popup = f' data-popup-opener="{_html(row.serializable_value(self._popup_key))}"'
                    content = f'<a href="{html.escape(url)}"{popup}>{content}</a>'
            cells.append(f'<{column.tag} class="{css}">{content}</{column.tag}>')
        return mark_safe("".join(cells))

    def rows(self):
        """One ResultList (no form) per row of the list's page."""
        for row in self.cl.result_list:
            yield ResultList(None, [self.row_html(row)])


def planned_result_list(cl) -> dict:
    """The context of change_list_results.html as Django's ``result_list`` gives it, rows from a RowPlan (Django's
    own rows when the list edits inline)."""
    if cl.formset:
        return result_list(cl)
    headers = list(result_headers(cl))
    return {
        "cl": cl,
        "result_hidden_fields": list(result_hidden_fields(cl)),
        "result_headers": headers,
        "num_sorted_fields": sum(1 for h in headers if h["sortable"] and h["sorted"]),
        "results": list(RowPlan(cl).rows()),
    }
