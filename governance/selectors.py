"""Reads of the audit trail: history rows of every audited model as one list, with their changes and commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from governance.models import AUDITED_MODELS

ACTIONS = {"+": "created", "~": "changed", "-": "deleted"}
# Fields that say nothing about the change itself (a secret's rotation time goes with its version).
QUIET_FIELDS = {"updated_at", "created_at", "last_rotated_at", "needs_render", "sealed_for", "synced_version"}


@dataclass(frozen=True)
class AuditEntry:
    """One create, change or delete: ``changes`` is [(field, old, new)] as text; a secret's value shows only as
    ``("value", "version 3", "version 4")``, never the value."""

    at: datetime
    user: str
    action: str          # created | changed | deleted
    model: str           # environment | node group | secret | project | container
    object_id: str
    object_label: str
    environment_id: int | None
    changes: tuple[tuple[str, str, str], ...]
    run_id: int | None
    commit_sha: str

    @property
    def changes_text(self) -> str:
        return "; ".join(f"{field}: {old} → {new}" for field, old, new in self.changes)


def _changes(record) -> tuple[tuple[str, str, str], ...]:
    if record.history_type != "~":
        return ()
    previous = record.prev_record
    if previous is None:
        return ()
    found = []
    # Every tracked field, editable or not (the version is not editable); foreign keys by id.
    for field in record.tracked_fields:
        if field.name in QUIET_FIELDS or field.primary_key:
            continue
        old, new = getattr(previous, field.attname), getattr(record, field.attname)
        if old == new:
            continue
        if field.name == "version":
            found.append(("value", f"version {old}", f"version {new}"))
        else:
            found.append((field.name, str(old), str(new)))
    return tuple(found)


def audit_entries(*, environment_ids: set[int] | None, commit_sha: str = "", environment_id: int | None = None,
                  project_id: str = "", model: str = "", user: str = "", query: str = "",
                  limit: int = 500) -> list[AuditEntry]:
    """History rows, newest first, at most ``limit``.

    ``environment_ids``: what the reader may see (None: everything). Filters: ``commit_sha`` (a prefix of the
    commit that shipped the change), ``environment_id``, ``project_id`` (the project and its containers),
    ``model`` (model name, e.g. "nodegroup"), ``user`` (username), ``query`` (text in the object's label or the
    username). Saves that changed nothing visible (a reseal) are left out.
    """
    entries: list[AuditEntry] = []
    for audited in AUDITED_MODELS:
        if model and audited._meta.model_name != model:
            continue
        rows = audited.history.model.objects.select_related("history_user", "render_run")
        if environment_ids is not None:
            rows = rows.filter(audit_environment_id__in=environment_ids)
        if commit_sha:
            rows = rows.filter(render_run__commit_sha__startswith=commit_sha.strip().lower())
        if environment_id is not None:
            rows = rows.filter(audit_environment_id=environment_id)
        if project_id:
            label = audited._meta.label_lower
            if label == "projects.project":
                rows = rows.filter(id=project_id)
            elif label == "projects.container":
                rows = rows.filter(project_id=project_id)
            else:
                continue
        if user:
            rows = rows.filter(history_user__username=user)
        for record in rows.order_by("-history_date", "-history_id")[:limit]:
            try:
                label = str(record.instance)
            except Exception:  # noqa: BLE001 - a deleted row whose parent is gone too: name it by id
                label = f"{audited._meta.verbose_name} {record.id}"
            if query and query.lower() not in label.lower() and query.lower() not in (
                    record.history_user.username.lower() if record.history_user else "system"):
                continue
            changes = _changes(record)
            if record.history_type == "~" and not changes:
                continue
            entries.append(AuditEntry(
                at=record.history_date, user=record.history_user.get_username() if record.history_user else "system",
                action=ACTIONS[record.history_type], model=str(audited._meta.verbose_name),
                object_id=str(record.id), object_label=label, environment_id=record.audit_environment_id,
                changes=changes, run_id=record.render_run_id,
                commit_sha=record.render_run.commit_sha if record.render_run else "",
            ))
    entries.sort(key=lambda entry: entry.at, reverse=True)
    return entries[:limit]
