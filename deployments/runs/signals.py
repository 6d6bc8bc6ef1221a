"""Signals of the run life cycle, for apps that deployments must not import (governance: approval and audit).

* ``render_requested`` — sent by ``render_run_request`` before a (non dry-run) run is created, with
  ``environment_ids`` (None: all), ``user``, ``reason``, ``absorb``, ``allow_deletions`` and ``approval`` (the
  approval that releases this request, or None). A receiver that returns an object *holds* the request: no run is
  created and the caller gets ``RunRequest.held`` (its ``str`` says why, its ``get_absolute_url`` where to look).
* ``render_run_starting`` — sent by ``render_run_execute`` before a committing run reads its snapshot, with
  ``run``. A receiver that returns a non-empty string refuses the run (it fails as *refused*, nothing is
  committed, its environments stay dirty).
* ``render_run_trailers`` — sent before the commit with ``run``; receivers return a dict of extra commit trailers
  (``Approved-By``).
* ``render_run_committed`` — sent when a run committed (``commit_sha`` set) or found git already matching (no
  change), with ``run`` and ``snapshot_at`` (the time just before its snapshot was read: changes saved before it
  are in the commit).
"""

from django.dispatch import Signal

render_requested = Signal()
render_run_starting = Signal()
render_run_trailers = Signal()
render_run_committed = Signal()
