"""Admin building blocks shared by the apps' admin modules (no model is registered here)."""

from urllib.parse import quote as url_quote

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_permission_codename
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.urls import NoReverseMatch, reverse
from django.utils.html import escape, format_html, format_html_join
from django.utils.http import RFC3986_SUBDELIMS
from django.utils.safestring import mark_safe
from django.utils.translation import gettext

from deployments import access, changes
from deployments.models import RenderRun


def diff_paths(diff: str) -> list[str]:
    """The paths a git unified diff touches, in order, from its ``diff --git a/X b/X`` headers."""
    return [line.partition(" b/")[2] or line[len("diff --git "):]
            for line in diff.splitlines() if line.startswith("diff --git ")]


def diff_file_list(diff: str, *, min_files: int = 2):
    """An HTML list of the files in ``diff`` linking to their headers in ``diff_html`` (empty below min_files)."""
    paths = diff_paths(diff)
    if len(paths) < min_files:
        return ""
    items = format_html_join("", '<li><a href="#diff-file-{}">{}</a></li>', enumerate(paths))
    return format_html('<p>{} files changed:</p><ol class="diff-files">{}</ol>', len(paths), items)


def diff_html(diff: str):
    """A unified diff as escaped HTML lines, coloured by kind (added, removed, hunk header, file header); each
    file header carries the anchor ``diff-file-N`` that ``diff_file_list`` links to.

    The diff is escaped once as a whole (escaping changes none of the line prefixes the kinds are read from), then
    cut into lines: a page of 200 files is tens of thousands of lines."""
    file_prefixes = ("+++", "---", "diff ", "index ", "new file", "deleted file")
    out = []
    index = 0
    for line in escape(diff).splitlines():
        if line.startswith("diff --git "):
            out.append(f'<span class="diff-file" id="diff-file-{index}">{line}\n</span>')
            index += 1
            continue
        if line.startswith(file_prefixes):
            css = "diff-file"
        elif line.startswith("@@"):
            css = "diff-hunk"
        elif line.startswith("+"):
            css = "diff-add"
        elif line.startswith("-"):
            css = "diff-del"
        else:
            css = "diff-ctx"
        out.append(f'<span class="{css}">{line}\n</span>')
    return mark_safe("".join(out))  # every line comes from escape() above


def audit_link(**params) -> str:
    """Link to the audit trail filtered by ``params`` (environment=<id>, project=<uuid>), when it is installed."""
    try:
        url = reverse("admin:governance_audit")
    except NoReverseMatch:
        return "-"
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return format_html('<a href="{}?{}">History of every change, with the commits that shipped it</a>', url, query)


def run_link(run: RenderRun):
    url = reverse("admin:deployments_renderrun_change", args=[run.pk])
    return format_html('<a href="{}">#{}</a>', url, run.pk)


class KeysFirstPaginator(Paginator):
    """The admin's paginator for long lists: a page reads the primary keys of its rows first (the list's ORDER BY
    ... LIMIT/OFFSET sorts only the ordering columns and the keys, not every selected column of every row before
    the offset), then its rows by those keys in the same order (select_related and prefetch_related as the list
    asks). Two queries per page whatever the page number or the number of rows; the same rows in the same order as
    one sliced query of the same queryset."""

    def page(self, number):
        """The page ``number`` (1-based) as Paginator.page gives it, its object_list a queryset of its rows by key.
        Raises InvalidPage (PageNotAnInteger, EmptyPage) as Paginator.page does."""
        page = super().page(number)
        rows = page.object_list
        if isinstance(rows, QuerySet) and rows.query.is_sliced:
            page.object_list = self.object_list.filter(pk__in=self.page_keys(rows))
        return page

    def page_keys(self, rows: QuerySet) -> list:
        """The primary keys of a page's rows; ``rows`` is the list sliced to the page, as Paginator.page slices it."""
        return list(rows.values_list("pk", flat=True))


class GroupedKeysPaginator(KeysFirstPaginator):
    """KeysFirstPaginator for a list ordered first by a field of a related row (a *group*: the projects' environment
    by its name) and then, within a group, by columns that an index starting with the group's key covers (slug, as
    in the (environment_id, slug) unique index).

    Ordered that way, PostgreSQL cannot walk the index across groups: with a filter (an EXISTS on containers) it
    evaluates the filter for every row of the table before it sorts and keeps 50 (10–14 ms at 10,000 projects).
    Here a page's keys are read group by group in the list's order of groups, each through the index in its own
    order and stopping at the page's end; a group that lies wholly before the page is only counted (through the
    same index). The rows are then read by key in the list's own order, as KeysFirstPaginator does: the same rows
    in the same order as one sliced query of the same queryset. Queries: the count, the groups' order, one per
    group before or on the page (however many rows the list has), the rows. Any other ordering (a column header
    clicked) and DISTINCT lists page as KeysFirstPaginator does.

    Subclasses set ``group`` (the foreign key, e.g. "environment"), ``group_field`` (the related model's field the
    list is ordered by first, e.g. "name") and ``within`` (the rest of the ordering, e.g. ("slug", "-pk")).
    """

    group = ""
    group_field = ""
    within: tuple[str, ...] = ()

    def _grouped(self) -> QuerySet | None:
        """The list when it is ordered as this paginator expects and not DISTINCT (else None: KeysFirstPaginator's
        paging)."""
        rows = self.object_list
        expected = (f"{self.group}__{self.group_field}", *self.within)
        if (isinstance(rows, QuerySet) and not rows.query.is_sliced and not rows.query.distinct
                and tuple(rows.query.order_by) == expected):
            return rows
        return None

    def page_keys(self, rows: QuerySet) -> list:
        """The page's keys, group by group (see the class docstring) when the list is ordered by its groups."""
        grouped = self._grouped()
        if grouped is None:
            return super().page_keys(rows)
        skip, wanted, keys = rows.query.low_mark, rows.query.high_mark - rows.query.low_mark, []
        related = grouped.model._meta.get_field(self.group).related_model
        for key in related._default_manager.order_by(self.group_field, "pk").values_list("pk", flat=True):
            if len(keys) >= wanted:
                break
            members = grouped.filter(**{f"{self.group}_id": key}).order_by(*self.within)
            if skip:
                size = members.count()
                if size <= skip:
                    skip -= size
                    continue
            keys += members.values_list("pk", flat=True)[skip:skip + wanted - len(keys)]
            skip = 0
        return keys


class KeyedUrlChangeList(ChangeList):
    """Django's ChangeList whose row links (``url_for_result``: the change page of each row) reverse the change
    URL once per list and put each row's quoted key into it, instead of resolving the URL pattern once per row.
    Same URLs as ChangeList.url_for_result."""

    KEY_PLACEHOLDER = "0key0"  # reversed in place of a key; quote() never yields it from a key of another shape

    def change_url_template(self) -> str | None:
        """The change page URL with KEY_PLACEHOLDER where a row's quoted key goes; None when the URL pattern does
        not take the key exactly once. Raises NoReverseMatch when the admin has no change page."""
        if not hasattr(self, "_change_url_template"):
            template = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
                               args=(self.KEY_PLACEHOLDER,), current_app=self.model_admin.admin_site.name)
            self._change_url_template = template if template.count(self.KEY_PLACEHOLDER) == 1 else None
        return self._change_url_template

    def quoted_key(self, result) -> str:
        """``result``'s primary key as it stands in its change URL: admin quoting, then URL quoting as reverse()
        does."""
        return url_quote(str(quote(getattr(result, self.pk_attname))), safe=RFC3986_SUBDELIMS + "/~:@")

    def url_for_result(self, result) -> str:
        """The change page URL (str) of ``result``, a model instance of this list."""
        template = self.change_url_template()
        if template is None:
            return super().url_for_result(result)
        before, _, after = template.partition(self.KEY_PLACEHOLDER)
        return before + self.quoted_key(result) + after


class PlainActionCheckboxMixin:
    """The list's action checkbox as one formatted string instead of a form widget rendered through a template
    (Django's ``action_checkbox``: about a third of a 50-row list page's rendering). Same HTML."""

    @admin.display(description=mark_safe('<input type="checkbox" id="action-toggle">'))
    def action_checkbox(self, obj):
        label = format_html(gettext("Select this object for an action - {}"), str(obj))
        return format_html('<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
                           helpers.ACTION_CHECKBOX_NAME, str(obj.pk), label)


class PlannedRowsMixin(PlainActionCheckboxMixin):
    """A ModelAdmin whose change list renders its rows from a plan made once per list (deployments.admin_rows:
    the same HTML as Django's rows at about a third of their cost), links them through KeyedUrlChangeList and
    writes the action checkbox as one string (PlainActionCheckboxMixin).
    Its change list template is Django's, with the rows block replaced (admin/deployments/
    planned_rows_change_list.html)."""

    change_list_template = "admin/deployments/planned_rows_change_list.html"

    def get_changelist(self, request, **kwargs):
        return KeyedUrlChangeList


class ServiceAdminMixin:
    """Every write of this admin goes through a service; one admin request gives one render request.

    ``changeform_view``, ``delete_view`` and ``changelist_view`` (bulk actions) run inside
    ``changes.change_batch``: the services record which environments changed, and when the request's writes are
    committed one run is requested. The message then says what really happened to it: queued, absorbed into a
    run already queued, or not queued (Redis unreachable) and retried by the recovery job.
    Subclasses give ``service_save(request, obj)`` and ``service_delete(request, obj)``; inline models are
    handled through ``inline_services``: {model: (save, delete)}.
    """

    inline_services: dict = {}

    def _batched(self, request, view, *args, **kwargs):
        with changes.change_batch(user=request.user) as batch:
            response = view(request, *args, **kwargs)
        self._report_render(request, batch.request)
        return response

    def _report_render(self, request, result) -> None:
        if result is None:
            return
        if result.held is not None:
            url = getattr(result.held, "get_absolute_url", lambda: "")()
            self.message_user(request, format_html(
                "Saved. Not shipped yet: {} — <a href=\"{}\">see its diff</a>.", str(result.held), url or "#"),
                messages.WARNING)
            return
        run, created = result
        ticket = result.ticket
        if not created:
            self.message_user(request, format_html("Render run {} (already queued) ships this change too.",
                                                   run_link(run)), messages.INFO)
        elif ticket is not None and ticket.handed_over is False:
            self.message_user(request, format_html(
                "Saved, but render run {} could not be queued: {} The change is kept and marked for render; the "
                "recovery job queues the run again as soon as the queue is back.", run_link(run), ticket.error,
            ), messages.WARNING)
        else:
            run.refresh_from_db(fields=["status"])
            self.message_user(request, format_html(
                "Render run {} ({}) ships this change to git; its page shows the progress and the commit.",
                run_link(run), run.get_status_display().lower()), messages.INFO)

    def changeform_view(self, request, *args, **kwargs):
        return self._batched(request, super().changeform_view, *args, **kwargs)

    def delete_view(self, request, *args, **kwargs):
        return self._batched(request, super().delete_view, *args, **kwargs)

    def changelist_view(self, request, *args, **kwargs):
        return self._batched(request, super().changelist_view, *args, **kwargs)

    def save_model(self, request, obj, form, change):
        if change and not form.has_changed():
            return
        self.service_save(request, obj, form)

    def save_related(self, request, form, formsets, change):
        if change and not form.has_changed() and any(formset.has_changed() for formset in formsets):
            # The object itself is unchanged but an inline changed: name the object in the run's reason.
            changes.environments_changed(self.render_environment_ids(form.instance), user=request.user,
                                         reason=f"Changed {form.instance._meta.verbose_name} {form.instance}")
        super().save_related(request, form, formsets, change)

    def render_environment_ids(self, obj) -> set[int]:
        return {obj.environment_id} if getattr(obj, "environment_id", None) else set()

    def save_formset(self, request, form, formset, change):
        save, delete = self.inline_services[formset.model]
        formset.save(commit=False)  # sets the parent on new rows and collects deletions
        for obj in formset.deleted_objects:
            delete(obj, request.user)
        for inline_form in formset.forms:
            if inline_form in formset.deleted_forms or not inline_form.has_changed():
                continue
            save(inline_form, inline_form.instance, request.user)
        formset.save_m2m()

    def delete_model(self, request, obj):
        self.service_delete(request, obj)

    def delete_queryset(self, request, queryset):
        objects = list(queryset)
        names = ", ".join(str(obj) for obj in objects[:5]) + (" …" if len(objects) > 5 else "")
        with changes.reason(f"Deleted {queryset.model._meta.verbose_name_plural} {names}"):
            for obj in objects:
                self.service_delete(request, obj)


class EnvironmentScopedAdminMixin:
    """Lists, pages, inlines and actions show and allow only what the user's per-environment grants allow.

    Every ``has_*_permission`` is answered by ``deployments.access`` for the object's environment(s) (without an
    object: "in some environment"); querysets are filtered to the environments where the user has the model's
    view (or change) permission, so a forged URL to another environment's object is a 404. For an inline,
    ``obj`` is the parent, whose environment decides. Foreign keys to environments offer only the environments
    where the user may add or change this model.
    """

    environment_lookup: str | None = None  # default: deployments.access.ENVIRONMENT_LOOKUPS

    def _scoped_perm(self, request, action: str, obj=None) -> bool:
        opts = self.opts
        perm = f"{opts.app_label}.{get_permission_codename(action, opts)}"
        if obj is None:
            return access.environment_ids(request.user, perm) != set()
        return access.allowed(request.user, perm, access.environment_ids_of(obj))

    def has_view_permission(self, request, obj=None):
        return self._scoped_perm(request, "view", obj) or self._scoped_perm(request, "change", obj)

    def has_add_permission(self, request, *args):
        obj = args[0] if args else None  # inlines receive the parent object
        return self._scoped_perm(request, "add", obj) and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None):
        return self._scoped_perm(request, "change", obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._scoped_perm(request, "delete", obj) and super().has_delete_permission(request, obj)

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def get_queryset(self, request):
        return self.scope_queryset(request, super().get_queryset(request))

    def scope_queryset(self, request, queryset):
        """Only the rows in environments where the user may view (or change) this model."""
        ids = access.viewable_environment_ids(request.user, queryset.model._meta.label_lower)
        return access.filter_by_ids(queryset, ids, self.environment_lookup)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "environment":
            opts = self.opts
            ids = access.environment_ids(request.user, f"{opts.app_label}.change_{opts.model_name}")
            add = access.environment_ids(request.user, f"{opts.app_label}.add_{opts.model_name}")
            if ids is not None and add is not None:
                kwargs["queryset"] = db_field.remote_field.model.objects.filter(pk__in=ids | add)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
