"""Render environments into the GitOps repository in the foreground, with a text progress bar.

    python manage.py render_gitops                          # every environment (prunes removed ones)
    python manage.py render_gitops --environment minikube   # one or more environments
    python manage.py render_gitops --dry-run                # print the diff, commit nothing
    python manage.py render_gitops --full --message "Re-render after a template change"

It runs the same service as the queued jobs (deployments.runs) and records a RenderRun; the exit code is
non-zero when the run fails, with the validation problems printed (file, rule, message).
"""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from deployments import runs
from deployments.models import Environment, RenderRun

BAR_WIDTH = 30


class Command(BaseCommand):
    help = "Render environments into the GitOps repository and commit (or, with --dry-run, print the diff)."

    def add_arguments(self, parser):
        parser.add_argument("--environment", action="append", dest="environments", metavar="NAME", default=[],
                            help="Environment to render (repeatable). Default: all environments.")
        parser.add_argument("--dry-run", action="store_true", help="Print the diff; commit nothing.")
        parser.add_argument("--message", default="", help="Why: goes into the commit message and Reason trailer.")
        parser.add_argument("--full", action="store_true",
                            help="Re-render every unit even when its fingerprint did not change.")

    def handle(self, *args, environments, dry_run, message, full, **options):
        environment_ids = None
        if environments:
            found = dict(Environment.objects.filter(name__in=environments).values_list("name", "pk"))
            unknown = [name for name in environments if name not in found]
            if unknown:
                raise CommandError(f"Unknown environment(s): {', '.join(unknown)}. "
                                   f"Known: {', '.join(Environment.objects.values_list('name', flat=True))}.")
            environment_ids = [found[name] for name in environments]
        try:
            result = runs.render_run_request(environment_ids=environment_ids, user=None, enqueue=False, absorb=False,
                                             reason=message or "render_gitops command", dry_run=dry_run)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        if result.run is None:
            raise CommandError(f"Nothing rendered: {result.held}")
        run = result.run

        self._tty = self.stdout.isatty()
        self._last = None
        run = runs.render_run_execute(run_id=run.pk, full=full, progress=self._progress)
        if self._tty:
            self.stdout.write("")

        counts = f"{run.files_added} added, {run.files_changed} changed, {run.files_deleted} deleted"
        if run.status == RenderRun.Status.FAILED:
            self.stderr.write(f"Run {run.pk} failed.")
            if run.error_file:
                self.stderr.write(f"First problem in: {run.error_file}")
            self.stderr.write(run.error)
            raise CommandError(f"Render run {run.pk} failed; nothing was committed.")
        if dry_run:
            self.stdout.write(run.diff, ending="" if run.diff.endswith("\n") or not run.diff else "\n")
            self.stdout.write(self.style.SUCCESS(f"Dry run {run.pk}: {counts}; nothing committed."))
        elif run.status == RenderRun.Status.NO_CHANGE:
            self.stdout.write(self.style.SUCCESS(f"Run {run.pk}: no change; the repository already matches."))
        else:
            self.stdout.write(self.style.SUCCESS(f"Run {run.pk}: committed {run.commit_sha} ({counts})."))

    def _progress(self, percent: int, message: str) -> None:
        filled = BAR_WIDTH * percent // 100
        bar = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {percent:3d}%"
        if self._tty:
            # One line, redrawn in place.
            self.stdout.write(f"\r{bar} {message[:80]:<80}", ending="")
            self.stdout.flush()
        elif (percent, message) != self._last:
            self.stdout.write(f"{bar} {message}")
        self._last = (percent, message)
