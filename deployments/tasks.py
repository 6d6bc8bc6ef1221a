"""RQ job functions: thin. Each takes ids, loads nothing itself and calls one service (deployments.runs)."""

from deployments import runs


def render_run_job(run_id: int) -> str:
    """Execute one render run on the ``gitops`` queue; the outcome is recorded on the RenderRun row."""
    return runs.render_run_execute(run_id=run_id).status


def render_runs_recover_job() -> dict:
    """Scheduled: repair runs left by dead workers and lost jobs (deployments.runs.render_runs_recover)."""
    return runs.render_runs_recover()
