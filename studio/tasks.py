"""django-q2 entry points. They take ids and hand over to services."""

from __future__ import annotations

from . import services


def job_run(job_id: int) -> None:
    services.job_run(job_id=job_id)


def jobs_sweep() -> None:
    services.jobs_sweep()
