"""Background jobs: the shared job-run record, its progress recorder, its admin mixin and the enqueue door.

Every background job of the portal (renders, snapshot syncs, backup audits, cost syncs) is recorded in a
concrete subclass of ``jobs.models.JobRun``, reports through ``jobs.progress.Recorder`` and is shown by
``jobs.admin.JobRunAdminMixin``; jobs are handed to RQ (or run inline) only through ``jobs.queue.enqueue``.
"""
