"""The provider's bill, reconciled with the studio's records.

The API key's account is often shared with other tools, and a crash can lose a
task the studio made. `reconcile` lists a remote provider account's tasks for
as long as the provider keeps them (the catalog's `task_lifetime`: DashScope
24 h, §1.2a; WaveSpeed 7 days, §9.6), compares them with every task the
studio ever had (Task, written by `remember_task` wherever a task id is
saved) and records what the provider billed that the ledger does not know as
"billed outside the studio", once per task however often it runs. It reads
providers only through the contract (`listed_tasks`, `poll`); where a
provider cannot tell what a task cost, the finding says so and nothing is
recorded.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from . import billing, catalog
from .models import GenerationJob, LedgerEntry, Price, Reconciliation, Task
from .providers import get_provider
from .providers.base import (
    ListedTask,
    ProviderError,
    RemoteProvider,
    TaskResult,
    TaskState,
    as_remote,
)
from .queue import timing

log = logging.getLogger(__name__)

# States a task ends in that the provider keeps (an expired task is forgotten).
FINAL = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELED})
# Task queries share the provider's rate limit with the polls (DashScope 20 QPS,
# §1.6): stay well below.
QUERY_GAP = 0.1
# Seconds that differ by less than this are the same (the provider rounds to 0.01).
SECONDS_TOLERANCE = Decimal("0.01")


class NothingToReconcile(Exception):
    """The provider has no provider account (the local provider)."""


def remember_task(
    *,
    job: GenerationJob,
    task_id: str,
    status: str = "",
    billed_seconds: Decimal | None = None,
    opened: int | None = None,
    **fields: object,
) -> None:
    """Record that a job had this remote task, or the provider's latest word on it.

    Call wherever a task id is saved (submit, adoption) and when a task ends.
    `opened` is the task the attempt opened (Task.open) while its id was
    unknown: it takes the id rather than a second row being made.
    `status` is the provider's word; the record's normalized state follows it.
    `fields` are further Task fields the caller knows (times, cost, result).
    Never raises: a missing record is found again by the reconciliation.
    """
    if not task_id:
        return
    try:
        provider = get_provider(job.provider)
        remote = as_remote(provider)
        values: dict[str, object] = {"job": job, "provider": job.provider, **fields}
        if status:
            values["remote_status"] = status[:16]
            state = remote.states.get(status) if remote is not None else None
            if state is not None:
                values["state"] = state.value
        if billed_seconds is not None:
            values["billed_seconds"] = billed_seconds
        account = getattr(provider, "account", "")
        if not Task.objects.filter(account=account, remote_id=task_id).exists():
            # The job's record of this id made without the account's
            # fingerprint (migration 0017), else the task the attempt opened
            # while it waited for the id: that record becomes this one.
            mine = Task.objects.filter(job=job, remote_id=task_id, account="").first()
            target = mine.pk if mine is not None else opened
            if target is not None:
                Task.objects.filter(pk=target, remote_id__in=("", task_id)).update(
                    remote_id=task_id, account=account
                )
        Task.objects.update_or_create(
            account=account,
            remote_id=task_id,
            defaults=values,
            create_defaults={
                **values,
                "model": billing.model_name(
                    provider=job.provider, unit=Price.Unit.SECOND
                ),
                "submitted_at": job.submit_started_at or timezone.now(),
                "submit_started_at": job.submit_started_at,
                "submit_posted_at": job.submit_posted_at,
            },
        )
    except Exception:
        log.exception("job %s: could not record task %s", job.pk, task_id)


@dataclass(frozen=True, slots=True)
class Finding:
    """One task worth an admin's look, as stored in Reconciliation.findings."""

    task_id: str
    kind: str  # "unknown", "state", "seconds", "unreadable"
    status: str  # the provider's
    ours: str  # what the studio knew ("" when unknown)
    created_at: str  # ISO time, or ""
    seconds: str  # billed by the provider, or ""
    cost: str  # at the price table's unit price, or ""
    recorded: bool  # a ledger line was written for it (this run or before)
    note: str
    job_code: str = ""
    job_title: str = ""


def remote_provider_names() -> list[str]:
    """The enabled providers that have an account to reconcile, the default first."""
    return [spec.name for spec in catalog.enabled() if spec.remote]


def reconcile(
    *, provider_name: str | None = None, now: datetime | None = None
) -> Reconciliation:
    """Compare an account's recent tasks with the studio's; record outside billing.

    The listing reaches back as far as the provider keeps tasks. Raises
    NothingToReconcile on a provider without a provider account. A listing
    that fails is kept on the run's `error`, not raised.
    """
    name = provider_name or catalog.default_provider()
    provider = as_remote(get_provider(name))
    if provider is None:
        raise NothingToReconcile(
            f"The {catalog.provider_label(name)} provider has no provider account: "
            "nothing to reconcile."
        )
    now = now or timezone.now()
    run = Reconciliation.objects.create(
        provider=name,
        account=provider.account,
        started_at=now,
        window_start=now - catalog.provider(name).task_lifetime,
        window_end=now,
    )
    try:
        rows = provider.listed_tasks(since=run.window_start)
    except ProviderError as exc:
        run.error = str(exc)
        run.finished_at = timezone.now()
        run.save()
        log.warning("reconciliation of %s: %s", name, run.error)
        return run

    ids = [row.task_id for row in rows]
    known = {
        r.remote_id: r
        for r in Task.objects.filter(
            account=provider.account, remote_id__in=ids
        ).select_related("job")
    }
    # Jobs from before task records existed still name their current task.
    legacy = {
        job.remote_task_id: job
        for job in GenerationJob.objects.filter(provider=name, remote_task_id__in=ids)
    }
    lost_since = (
        GenerationJob.objects.filter(
            provider=name, status=GenerationJob.Status.SUBMITTED, remote_task_id=""
        )
        .exclude(submit_started_at__isnull=True)
        .order_by("submit_started_at")
        .values_list("submit_started_at", flat=True)
        .first()
    )
    ledger = _Ledger(ids)
    unknowable = _unknowable(name, provider.account, before=run)
    findings: list[Finding] = []
    recorded = 0
    for row in rows:
        record = known.get(row.task_id)
        job = record.job if record else legacy.get(row.task_id)
        finding: Finding | None
        if record is None and job is None:
            finding, wrote = _unknown(
                provider,
                row,
                ledger,
                lost_since=lost_since,
                unknowable=unknowable,
            )
        else:
            finding, wrote = _known(provider, row, ledger, record=record, job=job)
        recorded += wrote
        if finding is not None:
            findings.append(finding)
    run.tasks_found = len(rows)
    run.entries_recorded = recorded
    run.findings = [asdict(f) for f in findings]
    run.finished_at = timezone.now()
    run.save()
    log.info(
        "reconciliation of %s: %d tasks, %d findings, %d ledger lines",
        name,
        len(rows),
        len(findings),
        recorded,
    )
    return run


class _Ledger:
    """What the ledger already says of the listed tasks, read in two queries."""

    def __init__(self, task_ids: list[str]) -> None:
        lines = LedgerEntry.objects.filter(
            remote_id__in=task_ids,
            billed=True,
            kind__in=[LedgerEntry.Kind.GENERATION, LedgerEntry.Kind.OUTSIDE],
        )
        self.charged: dict[str, Decimal] = {
            row["remote_id"]: row["seconds"] or Decimal(0)
            for row in lines.values("remote_id").annotate(seconds=Sum("seconds"))
        }
        # Seconds and money recorded as billed outside the studio, per task.
        self.outside: dict[str, tuple[Decimal, Decimal]] = {
            row["remote_id"]: (row["seconds"], row["amount"])
            for row in lines.filter(kind=LedgerEntry.Kind.OUTSIDE)
            .values("remote_id")
            .annotate(seconds=Sum("seconds"), amount=Sum("amount"))
        }
        self.settled = set(
            LedgerEntry.objects.filter(
                remote_id__in=task_ids, kind=LedgerEntry.Kind.GENERATION
            ).values_list("remote_id", flat=True)
        )

    def charged_for(self, task_id: str) -> Decimal:
        return self.charged.get(task_id, Decimal(0))

    def refresh(self, task_id: str) -> None:
        """Read one task's lines again, after a settlement may have added one."""
        fresh = _Ledger([task_id])
        self.charged[task_id] = fresh.charged_for(task_id)
        self.settled |= fresh.settled


def _unknowable(
    name: str, account: str, *, before: Reconciliation
) -> dict[str, Finding]:
    """The last run's findings on unknown tasks whose cost the provider would not tell.

    Asking again tells no more (a provider that does not report billed seconds
    never will), so a later run repeats them while the task's status stays.
    """
    last = (
        Reconciliation.objects.filter(
            provider=name, account=account, error="", finished_at__isnull=False
        )
        .exclude(pk=before.pk)
        .order_by("-started_at", "-id")
        .first()
    )
    if last is None:
        return {}
    return {
        f["task_id"]: Finding(**f)
        for f in last.findings
        if f["kind"] == "unknown" and not f["recorded"] and not f["seconds"]
    }


def _usage(provider: RemoteProvider, task_id: str) -> TaskResult:
    """What the provider says of a task: billed seconds and tier (not in the listing)."""
    time.sleep(QUERY_GAP)
    return provider.poll(task_id)


def _price(provider: RemoteProvider, resolution: str) -> Decimal:
    return billing.unit_price(
        provider=provider.name,
        unit=Price.Unit.SECOND,
        resolution=resolution or catalog.TIER_480,
    )


def _cost(provider: RemoteProvider, seconds: Decimal, resolution: str) -> Decimal:
    return billing.generation_cost(
        provider=provider.name,
        resolution=resolution or catalog.TIER_480,
        seconds=seconds,
    )


def _created(row_time: datetime | None) -> str:
    return row_time.isoformat() if row_time else ""


def _unknown(
    provider: RemoteProvider,
    row: ListedTask,
    ledger: _Ledger,
    *,
    lost_since: datetime | None,
    unknowable: dict[str, Finding],
) -> tuple[Finding, int]:
    base = {
        "task_id": row.task_id,
        "status": row.status,
        "ours": "",
        "created_at": _created(row.submitted_at),
    }
    if row.state != TaskState.SUCCEEDED:
        note = (
            "Not billed: failures and cancellations are free."
            if not row.state.active
            else "Still running: another application is using the account's slot."
        )
        return Finding(
            kind="unknown", seconds="", cost="", recorded=False, note=note, **base
        ), 0
    if row.task_id in ledger.outside:
        # Recorded by an earlier run: no need to ask the provider again.
        recorded_seconds, amount = ledger.outside[row.task_id]
        return _billed_outside(recorded_seconds, amount, base), 0
    earlier = unknowable.get(row.task_id)
    if earlier is not None and earlier.status == row.status:
        return earlier, 0
    try:
        usage = _usage(provider, row.task_id)
    except ProviderError as exc:
        return _unreadable(exc, base), 0
    seconds, resolution = usage.billed_seconds, usage.resolution
    if seconds is None:
        # Not billed (the provider's word), or billed for seconds it does not
        # report: the note says which, and where to look. No cost is made up.
        return Finding(
            kind="unknown",
            seconds="",
            cost="",
            recorded=False,
            note=usage.billing_note
            or "The provider did not say how many seconds it billed.",
            **base,
        ), 0
    cost = _cost(provider, seconds, resolution)
    if (
        lost_since is not None
        and row.submitted_at is not None
        and row.submitted_at >= lost_since - timedelta(minutes=1)
    ):
        # A studio submit whose answer was lost may have made it: the sweep
        # adopts it, and then the job's own line charges it.
        return Finding(
            kind="unknown",
            seconds=str(seconds),
            cost=str(cost),
            recorded=False,
            note="May be a studio job whose submit answer was lost; "
            "not recorded until the sweep has looked for it.",
            **base,
        ), 0
    wrote = _record_outside(
        provider,
        task_id=row.task_id,
        seconds=seconds,
        resolution=resolution,
        job=None,
        reason="billed outside the studio: a task the studio never made "
        "(another application on the same key, or a lost one)",
    )
    return _billed_outside(seconds, cost, base), wrote


def _billed_outside(seconds: Decimal, cost: Decimal, base: dict[str, str]) -> Finding:
    """A finding for a task the ledger holds as billed outside the studio."""
    return Finding(
        kind="unknown",
        seconds=str(seconds),
        cost=str(cost),
        recorded=True,
        note="Billed outside the studio.",
        **base,
    )


def _known(
    provider: RemoteProvider,
    row: ListedTask,
    ledger: _Ledger,
    *,
    record: Task | None,
    job: GenerationJob | None,
) -> tuple[Finding | None, int]:
    ours = (record.remote_status if record else "") or (
        job.remote_status if job else ""
    )
    our_state = provider.states.get(ours)
    job_done = job is None or job.is_terminal or job.remote_task_id != row.task_id
    base = {
        "task_id": row.task_id,
        "status": row.status,
        "ours": ours or "submitted",
        "created_at": _created(row.submitted_at),
        "job_code": str(job.code) if job else "",
        "job_title": job.display_title if job else "",
    }
    state_differs = row.state in FINAL and (
        (our_state in FINAL and our_state != row.state)
        # The studio gave up on (or moved on from) a task the provider finished.
        or (our_state not in FINAL and job_done and row.state == TaskState.SUCCEEDED)
    )
    if row.state != TaskState.SUCCEEDED:
        if not state_differs:
            return None, 0
        return Finding(
            kind="state",
            seconds="",
            cost="",
            recorded=False,
            note="The states disagree; the provider did not bill it.",
            **base,
        ), 0
    provider_seconds = record.billed_seconds if record else None
    resolution = job.resolution if job else ""
    if provider_seconds is None:
        try:
            usage = _usage(provider, row.task_id)
        except ProviderError as exc:
            return _unreadable(exc, base), 0
        provider_seconds = usage.billed_seconds
        resolution = usage.resolution or resolution
        if job is not None and provider_seconds is not None:
            # Kept (the provider's seconds, not its state: that stays the
            # studio's own), so the next runs need not ask again.
            remember_task(job=job, task_id=row.task_id, billed_seconds=provider_seconds)
    if provider_seconds is None:
        return None, 0
    if not job_done and not state_differs:
        return None, 0  # the studio is still copying its result: the job bills it
    if (
        job is not None
        and job.is_terminal
        and job.remote_task_id == row.task_id
        and row.task_id not in ledger.settled
    ):
        # Settle it first: were a crash to have left the job unsettled, this run
        # and the late settlement would both charge the task.
        billing.job_finished(job_id=job.pk)
        ledger.refresh(row.task_id)
    charged = ledger.charged_for(row.task_id)
    missing = provider_seconds - charged
    if not state_differs and abs(missing) < SECONDS_TOLERANCE:
        return None, 0
    cost = _cost(provider, provider_seconds, resolution)
    wrote = 0
    if missing >= SECONDS_TOLERANCE:
        wrote = _record_outside(
            provider,
            task_id=row.task_id,
            seconds=missing,
            resolution=resolution,
            job=job,
            reason=f"billed outside the studio: the provider billed {provider_seconds} s "
            f"of a task the studio {'had as ' + ours if ours else 'knew'}"
            f" and charged {charged} s",
        )
    recorded = missing >= SECONDS_TOLERANCE or row.task_id in ledger.outside
    if state_differs:
        note = f"The studio had it as {ours or 'submitted'}; the provider finished and billed it."
    elif missing > 0:
        note = (
            f"The provider billed {provider_seconds} s; the studio charged {charged} s."
        )
    else:
        note = (
            f"The studio charged {charged} s; the provider billed only "
            f"{provider_seconds} s. Nothing recorded: check the job's line."
        )
    return Finding(
        kind="state" if state_differs else "seconds",
        seconds=str(provider_seconds),
        cost=str(cost),
        recorded=recorded,
        note=note,
        **base,
    ), wrote


def _record_outside(
    provider: RemoteProvider,
    *,
    task_id: str,
    seconds: Decimal,
    resolution: str,
    job: GenerationJob | None,
    reason: str,
) -> int:
    """One ledger line per provider task; 0 when an earlier run wrote it."""
    price = _price(provider, resolution)
    try:
        with transaction.atomic():
            LedgerEntry.objects.create(
                team=job.team if job else None,
                user=job.created_by if job else None,
                job=job,
                kind=LedgerEntry.Kind.OUTSIDE,
                provider=provider.name,
                model=billing.model_name(
                    provider=provider.name, unit=Price.Unit.SECOND
                ),
                resolution=resolution,
                unit=Price.Unit.SECOND,
                quantity=seconds,
                unit_price=price,
                amount=billing.amount_for(seconds, price),
                currency=billing.currency(),
                seconds=seconds,
                billed=True,
                reason=reason[:255],
                remote_id=task_id[:128],
            )
    except IntegrityError:
        return 0
    return 1


def latest(*, provider_name: str | None = None) -> Reconciliation | None:
    return (
        Reconciliation.objects.filter(
            provider=provider_name or catalog.default_provider()
        )
        .order_by("-started_at", "-id")
        .first()
    )


def summary(run: Reconciliation) -> str:
    """One line saying what a run found, for the command and the page's message."""
    if run.error:
        return run.error
    unknown = sum(1 for f in run.findings if f["kind"] == "unknown")
    other = len(run.findings) - unknown
    span = timing.span(run.window_end - run.window_start)
    return (
        f"{run.tasks_found} tasks in the last {span}; {unknown} unknown to "
        f"the studio, {other} disagreeing or unreadable; "
        f"{run.entries_recorded} new ledger "
        f"line{'s' if run.entries_recorded != 1 else ''} billed outside the studio."
    )


def window(provider_name: str) -> str:
    """How far back a provider's reconciliation looks, in words: "24 h", "7 days"."""
    return timing.span(catalog.provider(provider_name).task_lifetime)


def _unreadable(exc: ProviderError, base: dict[str, str]) -> Finding:
    """A finding for a task whose billed seconds the provider would not tell."""
    return Finding(
        kind="unreadable",
        seconds="",
        cost="",
        recorded=False,
        note=f"Its billed seconds could not be read ({exc.code or exc.kind}); "
        "the next run asks again.",
        **base,
    )
