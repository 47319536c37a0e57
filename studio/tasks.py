"""django-q2 entry points. They take ids and hand over to services."""

from __future__ import annotations

import contextlib

from . import catalog, dispatcher, reconcile, services


def job_run(job_id: int) -> None:
    """Local providers: claim and render one job."""
    services.job_run(job_id=job_id)


def dispatch(provider_name: str) -> None:
    """Remote providers: fill the account's free slots and submit from this worker."""
    dispatcher.dispatch_and_submit(provider_name=provider_name)


def job_submit(job_id: int) -> None:
    dispatcher.job_submit(job_id=job_id)


def job_poll(job_id: int) -> None:
    dispatcher.job_poll(job_id=job_id)


def jobs_sweep() -> None:
    services.jobs_sweep()


def reconcile_account() -> None:
    """The scheduled comparison of each enabled provider's task listing with the studio's."""
    for spec in catalog.enabled():
        if not spec.remote:
            continue
        with contextlib.suppress(reconcile.NothingToReconcile):  # not listable yet
            reconcile.reconcile(provider_name=spec.name)
