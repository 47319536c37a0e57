"""django-q2 entry points. They take ids and hand over to services."""

from __future__ import annotations

import logging

from . import reconcile, services
from .queue import poll, submit

log = logging.getLogger(__name__)


def job_run(job_id: int) -> None:
    """Local providers: claim and render one job."""
    services.job_run(job_id=job_id)


def dispatch(provider_name: str) -> None:
    """Remote providers: fill the account's free slots and submit from this worker."""
    submit.dispatch_and_submit(provider_name=provider_name)


def job_submit(job_id: int) -> None:
    submit.job_submit(job_id=job_id)


def job_poll(job_id: int) -> None:
    poll.job_poll(job_id=job_id)


def jobs_sweep() -> None:
    services.jobs_sweep()


def reconcile_account() -> None:
    """The scheduled comparison of each enabled remote provider's tasks with the studio's."""
    for name in reconcile.remote_provider_names():
        try:
            reconcile.reconcile(provider_name=name)
        except Exception:  # one provider's trouble must not skip the others
            log.exception("reconciliation of %s failed", name)
