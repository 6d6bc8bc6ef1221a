"""Progress and log lines of a running job, saved as it goes so its admin page can follow it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from django.db.models import Case, F, TextField, Value, When
from django.db.models.functions import Concat
from django.utils import timezone

from jobs.models import JobRun

LOG_MAX_CHARS = 200_000

ProgressCallback = Callable[[int, str], None]


def stamp(line: str) -> str:
    """A log line with the time of day (UTC) in front."""
    return f"{timezone.now():%H:%M:%S} {line}"


def append(log: str, line: str) -> str:
    """``log`` with ``line`` added, capped at LOG_MAX_CHARS (a marker says where it was cut)."""
    if len(log) >= LOG_MAX_CHARS:
        return log
    log = f"{log}\n{line}" if log else line
    if len(log) >= LOG_MAX_CHARS:
        log = log[:LOG_MAX_CHARS] + "\n… (log truncated)"
    return log


def append_in_sql(model: type[JobRun], pk: int, line: str) -> None:
    """Append a stamped line to a run's log in one UPDATE (for rows other code may be writing meanwhile)."""
    line = stamp(line)
    model.objects.filter(pk=pk).update(log=Case(
        When(log="", then=Value(line)), default=Concat(F("log"), Value("\n" + line)), output_field=TextField()))


class Recorder:
    """Saves progress and log lines of a run as it goes.

    Only the changed fields are written (``update_fields``); progress-only updates are throttled to two a
    second, and progress never goes backwards. Lines reported from helper threads are kept in memory and saved
    by the run's own thread, which owns the database connection the run was loaded with.
    """

    def __init__(self, run: JobRun, callback: ProgressCallback | None = None) -> None:
        self.run = run
        self.callback = callback
        self._saved_at = 0.0
        self._last_line = ""
        self._dirty: set[str] = set()
        self._owner = threading.get_ident()
        self._mutex = threading.Lock()
        self.warnings: list[str] = []

    def log(self, line: str, *, percent: int | None = None) -> None:
        with self._mutex:
            if line and line != self._last_line:
                self._last_line = line
                self.run.log = append(self.run.log, stamp(line))
                self._dirty.add("log")
            if percent is not None:
                percent = max(0, min(100, int(percent)))
                if percent > self.run.progress:
                    self.run.progress = percent
                    self._dirty.add("progress")
            now = time.monotonic()
            if self._dirty and threading.get_ident() == self._owner and (
                    "log" in self._dirty or now - self._saved_at >= 0.5):
                self.run.save(update_fields=sorted(self._dirty))
                self._dirty.clear()
                self._saved_at = now
            current = self.run.progress
        if self.callback is not None:
            self.callback(current, line)

    def warn(self, line: str) -> None:
        """A problem that does not stop the run but makes its outcome "succeeded with warnings"."""
        self.warnings.append(line)
        self.log(f"WARNING {line}")

    def step(self, percent: int, line: str) -> None:
        self.log(line, percent=percent)

    def sub(self, start: int, end: int) -> ProgressCallback:
        """A progress callback for a sub-step that maps its 0..100 onto start..end of the run."""

        def progress(percent: int, message: str) -> None:
            self.log(message, percent=start + (end - start) * max(0, min(100, percent)) // 100)

        return progress

    def finish(self, **fields) -> None:
        """Record the outcome: the given fields, ``finished_at``, the warnings, progress 100 unless failed.

        A ``status=SUCCEEDED`` with warnings recorded becomes WARNINGS.
        """
        with self._mutex:
            if self.warnings and fields.get("status") == JobRun.Status.SUCCEEDED:
                fields["status"] = JobRun.Status.WARNINGS
            fields.setdefault("warning_count", len(self.warnings))
            for name, value in fields.items():
                setattr(self.run, name, value)
            self.run.finished_at = timezone.now()
            if self.run.status != JobRun.Status.FAILED:
                self.run.progress = 100
            self.run.save(update_fields=[*fields, "finished_at", "progress", "log"])
            self._dirty.clear()
        if self.callback is not None:
            self.callback(self.run.progress, f"{self.run.get_status_display()}.")
