"""Money: prices, estimates, holds, settlement, budgets and alerts.

Every amount is a Decimal with 6 places, rounded half-up in exactly one
place, `amount_for`, when a ledger entry is written. Pages round to cents
for display only. The ledger is append-only; totals are sums over it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import (
    Case,
    Count,
    DecimalField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import catalog
from .catalog import S2V, Billing
from .models import (
    Budget,
    GenerationJob,
    LedgerEntry,
    Membership,
    Price,
    Task,
    Team,
    User,
)

_QS = TypeVar("_QS", bound="QuerySet[Any]")
log = logging.getLogger(__name__)

PLACES = Decimal("0.000001")
ZERO = Decimal("0")
ALERT_LEVELS = (80, 100)


class OverBudget(Exception):
    """A spend the budgets do not allow. `message` names the limit, the excess and who can raise it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def amount_for(quantity: Decimal, unit_price: Decimal) -> Decimal:
    """The one place money is rounded: 6 decimal places, half up."""
    return (quantity * unit_price).quantize(PLACES, rounding=ROUND_HALF_UP)


def currency() -> str:
    return settings.S2V_CURRENCY


# -- prices ---------------------------------------------------------------------------


def price_for(
    *, provider: str, unit: str, resolution: str = "", at: datetime | None = None
) -> Price | None:
    """The price line in force for a provider's unit, in the site currency."""
    at = at or timezone.now()
    model = _price_model(provider=provider, unit=unit)
    if model is None:
        return None
    return (
        Price.objects.filter(
            provider=provider,
            model=model,
            unit=unit,
            resolution=resolution if unit == Price.Unit.SECOND else "",
            currency=currency(),
            valid_from__lte=at,
        )
        .filter(Q(valid_to__isnull=True) | Q(valid_to__gt=at))
        .order_by("-valid_from")
        .first()
    )


def _price_model(*, provider: str, unit: str, model: str = S2V) -> str | None:
    """The name a provider's price lines go by: the catalog offer's own model name.

    A generation is priced by the offer's `remote_model`, a portrait check by its
    `check_model`; None when the provider or model is unknown, or the offer has
    no paid check.
    """
    try:
        offer = catalog.offer(provider, model)
    except (catalog.UnknownChoice, ImproperlyConfigured):
        return None
    if unit == Price.Unit.IMAGE:
        return offer.check_model or None
    return offer.remote_model


def model_name(*, provider: str, unit: str) -> str:
    """The model a ledger line names: the price table's, else the provider's name."""
    return _price_model(provider=provider, unit=unit) or provider


def unit_price(*, provider: str, unit: str, resolution: str = "") -> Decimal:
    """The price in force: the table's line, else the provider's own declared price.

    The fallback keeps a new provider (or a price line an admin deleted) from
    costing nothing; it applies only when the provider declares the site currency.
    """
    price = price_for(provider=provider, unit=unit, resolution=resolution)
    if price is not None:
        return price.unit_price
    from .providers import get_provider  # providers read settings; import at call time

    try:
        limits = get_provider(provider).limits
    except Exception:  # an provider that is not configured here declares nothing
        return ZERO
    if limits.currency != currency():
        return ZERO
    if unit == Price.Unit.IMAGE:
        return limits.price_per_check
    return limits.price_per_second.get(resolution, ZERO)


def generation_cost(*, provider: str, resolution: str, seconds: Decimal) -> Decimal:
    """What the price table says billed seconds of a provider's video cost."""
    price = unit_price(provider=provider, unit=Price.Unit.SECOND, resolution=resolution)
    return amount_for(seconds, price)


def hold_seconds(audio_seconds: float, rule: Billing | None = None) -> Decimal:
    """Seconds held for a clip, by the offer's billing rule.

    A provider that bills the input clip (WaveSpeed) bills exactly what its
    rule says, so that is held. One that bills the generated video's length
    (DashScope), which follows the audio, is held rounded up plus a margin for
    its own rounding, which keeps the settled amount within what was held.
    """
    if rule is not None and rule.basis == "input":
        return rule.seconds(Decimal(str(audio_seconds)))
    return Decimal(math.ceil(audio_seconds * 1.02 + 0.5))


@dataclass(frozen=True, slots=True)
class Estimate:
    seconds: Decimal
    per_second: Decimal
    generation: Decimal
    check: Decimal
    currency: str

    @property
    def total(self) -> Decimal:
        return self.generation + self.check


def estimate(
    *,
    provider: str,
    resolution: str,
    audio_seconds: float,
    needs_check: bool = False,
    model: str = catalog.S2V,
) -> Estimate:
    """What a job of this provider and model would cost, as its offer bills it.

    `needs_check` adds the provider's paid portrait check, for offers that
    have one; the local check that applies to the others is free.
    """
    try:
        offer: catalog.Offer | None = catalog.offer(provider, model)
    except catalog.UnknownChoice:
        offer = None  # an old job of a provider no longer known: today's rule
    seconds = hold_seconds(audio_seconds, offer.billing if offer else None)
    per_second = unit_price(
        provider=provider, unit=Price.Unit.SECOND, resolution=resolution
    )
    paid_check = needs_check and (offer is None or bool(offer.check_model))
    check = unit_price(provider=provider, unit=Price.Unit.IMAGE) if paid_check else ZERO
    return Estimate(
        seconds=seconds,
        per_second=per_second,
        generation=amount_for(seconds, per_second),
        check=amount_for(Decimal(1), check) if paid_check else ZERO,
        currency=currency(),
    )


# -- usage ----------------------------------------------------------------------------


def month_start(now: datetime | None = None) -> datetime:
    now = timezone.localtime(now or timezone.now())
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class Usage:
    spent: Decimal  # billed this month
    held: Decimal  # holds not yet released (estimates of jobs in progress)
    seconds: Decimal  # billed seconds this month
    held_seconds: Decimal

    @property
    def committed(self) -> Decimal:
        return self.spent + self.held

    @property
    def committed_seconds(self) -> Decimal:
        return self.seconds + self.held_seconds


def usage(
    *, team: Team, user: User | None = None, now: datetime | None = None
) -> Usage:
    """This month's spend and outstanding holds, for a team or one member of it."""
    entries = LedgerEntry.objects.filter(team=team, currency=currency())
    if user is not None:
        entries = entries.filter(user=user)
    start = month_start(now)
    totals = entries.aggregate(
        spent_total=Sum("amount", filter=Q(billed=True, created_at__gte=start)),
        seconds_total=Sum(
            "seconds", filter=Q(billed=True, created_at__gte=start, kind="generation")
        ),
        # Holds of any month stay outstanding until released.
        held_total=Sum("amount", filter=Q(kind__in=["hold", "release"])),
        held_seconds_total=Sum("seconds", filter=Q(kind__in=["hold", "release"])),
    )
    return Usage(
        spent=totals["spent_total"] or ZERO,
        held=totals["held_total"] or ZERO,
        seconds=totals["seconds_total"] or ZERO,
        held_seconds=totals["held_seconds_total"] or ZERO,
    )


def with_usage(queryset: _QS, *, team_field: str, per_user: bool) -> _QS:
    """Annotate `spent` (billed this month) and `held` (outstanding holds), as `usage` counts them.

    One query for a whole list: teams (team_field="pk") or budgets
    (team_field="team", per_user=True, where a budget without a user is team-wide).
    """
    amount: DecimalField[Decimal, Decimal] = DecimalField(
        max_digits=14, decimal_places=6
    )

    def total(filters: Q, *, by_user: bool) -> Coalesce:
        rows = LedgerEntry.objects.filter(
            team=OuterRef(team_field), currency=currency()
        )
        rows = rows.filter(filters)
        if by_user:
            rows = rows.filter(user=OuterRef("user"))
        sums = (
            rows.order_by().values("team").annotate(total=Sum("amount")).values("total")
        )
        return Coalesce(
            Subquery(sums[:1], output_field=amount), Value(ZERO), output_field=amount
        )

    kinds = {
        "spent": Q(billed=True, created_at__gte=month_start()),
        "held": Q(kind__in=["hold", "release"]),
    }
    if not per_user:
        return queryset.annotate(
            **{k: total(q, by_user=False) for k, q in kinds.items()}
        )
    return queryset.annotate(
        **{
            k: Case(
                When(user__isnull=True, then=total(q, by_user=False)),
                default=total(q, by_user=True),
                output_field=amount,
            )
            for k, q in kinds.items()
        }
    )


def waiting_jobs(*, team: Team, user: User) -> int:
    return GenerationJob.objects.filter(
        team=team,
        created_by=user,
        status__in=[GenerationJob.Status.QUEUED, *GenerationJob.IN_FLIGHT],
    ).count()


def budgets_for(
    *, team: Team, user: User, lock: bool = False
) -> tuple[Budget, Budget | None]:
    """The team's budget row (created when missing) and the member's, if any."""
    Budget.objects.get_or_create(team=team, user=None)
    rows: QuerySet[Budget] = Budget.objects.filter(team=team).filter(
        Q(user__isnull=True) | Q(user=user)
    )
    if lock:
        # The team row's lock serialises every spend of the team (PostgreSQL).
        rows = rows.select_for_update().order_by("id")
    found = list(rows)
    team_budget = next(b for b in found if b.user_id is None)
    member = next((b for b in found if b.user_id == user.pk), None)
    return team_budget, member


def _admins_phrase(team: Team) -> str:
    names = list(
        Membership.objects.filter(team=team, role=Membership.Role.ADMIN)
        .select_related("user")
        .values_list("user__username", flat=True)[:3]
    )
    return f"a team admin ({', '.join(names)})" if names else "a site admin"


def _money(value: Decimal) -> str:
    symbol = {"USD": "$", "CNY": "¥"}.get(currency(), "")
    return f"{symbol}{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)}" + (
        "" if symbol else f" {currency()}"
    )


def check_budgets(
    *,
    team: Team,
    user: User,
    amount: Decimal,
    seconds: Decimal = ZERO,
    resolution: str = "",
    new_job: bool = False,
    lock: bool = True,
) -> None:
    """Raise OverBudget when this spend would pass a limit. Call inside a transaction."""
    team_budget, member = budgets_for(team=team, user=user, lock=lock)
    who = _admins_phrase(team)
    for budget, label in ((member, "your"), (team_budget, "the team's")):
        if budget is None:
            continue
        scope_user = user if budget.user_id else None
        if (
            resolution
            and budget.max_resolution
            and _tier(resolution) > _tier(budget.max_resolution)
        ):
            raise OverBudget(
                f"{resolution} is above {label} highest allowed resolution, "
                f"{budget.max_resolution}. Choose {budget.max_resolution}, or ask {who} to raise it."
            )
        if new_job and budget.max_waiting_jobs is not None:
            waiting = waiting_jobs(team=team, user=user)
            if waiting >= budget.max_waiting_jobs:
                raise OverBudget(
                    f"You already have {waiting} videos waiting or running; {label} limit is "
                    f"{budget.max_waiting_jobs}. Wait for one to finish, or ask {who} to raise it."
                )
        if not team_budget.stop_at_limit:
            continue  # the team only wants warnings
        used = usage(team=team, user=scope_user)
        if (
            budget.monthly_amount is not None
            and used.committed + amount > budget.monthly_amount
        ):
            over = used.committed + amount - budget.monthly_amount
            raise OverBudget(
                f"This would pass {label} monthly budget of {_money(budget.monthly_amount)} by "
                f"{_money(over)} ({_money(used.spent)} spent, {_money(used.held)} held for videos "
                f"in progress). Ask {who} to raise the budget."
            )
        if (
            budget.monthly_seconds is not None
            and seconds
            and used.committed_seconds + seconds > budget.monthly_seconds
        ):
            over = used.committed_seconds + seconds - budget.monthly_seconds
            raise OverBudget(
                f"This would pass {label} monthly allowance of {budget.monthly_seconds} s of "
                f"video by {over:.0f} s. Use a shorter clip, or ask {who} to raise it."
            )


def _tier(resolution: str) -> int:
    return int(resolution.rstrip("Pp") or 0)


# -- ledger writes ------------------------------------------------------------------


def record_check(
    *,
    team: Team,
    user: User,
    provider: str,
    billed: bool,
    reason: str = "",
    remote_id: str = "",
) -> LedgerEntry:
    """One portrait-check call: billed whenever the provider answered, pass or fail."""
    price = unit_price(provider=provider, unit=Price.Unit.IMAGE)
    entry = LedgerEntry.objects.create(
        team=team,
        user=user,
        kind=LedgerEntry.Kind.CHECK,
        provider=provider,
        model=model_name(provider=provider, unit=Price.Unit.IMAGE),
        unit=Price.Unit.IMAGE,
        quantity=Decimal(1),
        unit_price=price,
        amount=amount_for(Decimal(1), price) if billed else ZERO,
        currency=currency(),
        billed=billed,
        reason=reason[:255],
        remote_id=remote_id[:128],
    )
    if billed and entry.amount:
        alert_if_needed(team=team, user=user)
    return entry


def hold(*, job: GenerationJob) -> LedgerEntry:
    """Hold a job's estimate against its budgets (inside job creation's transaction)."""
    est = estimate(
        provider=job.provider,
        model=job.model,
        resolution=job.resolution,
        audio_seconds=job.audio.duration,
    )
    job.estimate = est.generation
    job.save(update_fields=["estimate"])
    return _job_entry(
        job,
        LedgerEntry.Kind.HOLD,
        quantity=est.seconds,
        unit_price=est.per_second,
        amount=est.generation,
        seconds=est.seconds,
        currency=est.currency,
        reason="admin override of the budget"
        if job.budget_override
        else "estimate held at submit",
    )


def _job_entry(job: GenerationJob, kind: str, **fields: object) -> LedgerEntry:
    """A money entry about one job's generation, with the job's own facts filled in."""
    return LedgerEntry.objects.create(
        team=job.team,
        user=job.created_by,
        job=job,
        kind=kind,
        provider=job.provider,
        model=model_name(provider=job.provider, unit=Price.Unit.SECOND),
        resolution=job.resolution,
        unit=Price.Unit.SECOND,
        **fields,
    )


LOST_RESULT_REASON = "billed by the provider; the video could not be saved"


def current_task(job: GenerationJob) -> Task | None:
    """The task a job's generation line charges: the one its remote id names."""
    if not job.remote_task_id:
        return None
    return (
        Task.objects.filter(job=job, remote_id=job.remote_task_id).order_by("id").last()
    )


def job_finished(*, job_id: int) -> None:
    """Settle a finished job: release its hold, and charge it if the provider billed.

    A failed job whose task SUCCEEDED is charged too: the provider billed it.

    Safe to call any number of times: each money entry exists once per job.
    """
    job = (
        GenerationJob.objects.select_related("team", "created_by")
        .filter(pk=job_id)
        .first()
    )
    if job is None or not job.is_terminal:
        return
    held = LedgerEntry.objects.filter(job=job, kind=LedgerEntry.Kind.HOLD).first()
    try:
        with transaction.atomic():
            if held is not None:
                _job_entry(
                    job,
                    LedgerEntry.Kind.RELEASE,
                    quantity=-held.quantity,
                    unit_price=held.unit_price,
                    amount=-held.amount,
                    seconds=-held.seconds,
                    currency=held.currency,
                    reason=f"job {job.get_status_display().lower()}",
                )
            lost = job.paid_for_nothing
            task = current_task(job)
            billed = job.status == GenerationJob.Status.SUCCEEDED or lost
            seconds = (job.billed_seconds or ZERO) if billed else ZERO
            reason = "billed seconds × unit price"
            if lost:
                reason = LOST_RESULT_REASON + (
                    f" ({job.error_code})" if job.error_code else ""
                )
                if job.billed_seconds is None and held is not None:
                    # The provider did not say how long: the held seconds are
                    # the best guess, and the reconciliation corrects it.
                    seconds = held.seconds
                    reason += "; seconds estimated"
            elif not billed:
                reason = f"not billed: {job.get_status_display().lower()}" + (
                    f" ({job.error_code})" if job.error_code else ""
                )
            price = unit_price(
                provider=job.provider, unit=Price.Unit.SECOND, resolution=job.resolution
            )
            amount = amount_for(seconds, price)
            _job_entry(
                job,
                LedgerEntry.Kind.GENERATION,
                quantity=seconds,
                unit_price=price,
                amount=amount,
                seconds=seconds,
                currency=currency(),
                billed=billed,
                reason=reason[:255],
                remote_id=job.remote_task_id,
                task=task,
            )
            if lost:
                # The money is gone: the job shows what it cost, for nothing,
                # and so does the task the provider billed.
                GenerationJob.objects.filter(pk=job.pk).update(
                    cost=amount, currency=currency()
                )
                if task is not None:
                    Task.objects.filter(pk=task.pk).update(
                        cost=amount, currency=currency()
                    )
    except IntegrityError:
        return  # settled already, by another worker or an earlier call
    if billed:
        alert_if_needed(team=job.team, user=job.created_by)


def release_stale_holds() -> int:
    """Settle finished jobs whose hold was never released (a crash between the two)."""
    stale = (
        GenerationJob.objects.filter(
            status__in=GenerationJob.TERMINAL, ledger__kind=LedgerEntry.Kind.HOLD
        )
        .exclude(ledger__kind=LedgerEntry.Kind.RELEASE)
        .annotate(n=Count("ledger"))
    )
    count = 0
    for job_id in stale.values_list("pk", flat=True):
        job_finished(job_id=job_id)
        count += 1
    return count


# -- alerts ---------------------------------------------------------------------------


def alert_if_needed(*, team: Team, user: User | None = None) -> None:
    """Email the team's admins when spend passes 80 % or 100 % of a budget (once per month)."""
    month = timezone.localtime().strftime("%Y-%m")
    for budget in Budget.objects.filter(team=team).filter(
        Q(user__isnull=True) | Q(user=user)
    ):
        if budget.monthly_amount is None or budget.monthly_amount <= 0:
            continue
        used = usage(team=team, user=budget.user if budget.user_id else None)
        percent = used.spent / budget.monthly_amount * 100
        level = max((lvl for lvl in ALERT_LEVELS if percent >= lvl), default=0)
        already = budget.alerted_level if budget.alerted_month == month else 0
        if level <= already:
            continue
        updated = Budget.objects.filter(
            pk=budget.pk,
            alerted_level=budget.alerted_level,
            alerted_month=budget.alerted_month,
        ).update(alerted_level=level, alerted_month=month)
        if not updated:
            continue  # another process sent it
        whose = f"{budget.user}'s budget" if budget.user_id else "the team budget"
        recipients = list(
            Membership.objects.filter(team=team, role=Membership.Role.ADMIN)
            .exclude(user__email="")
            .values_list("user__email", flat=True)
        )
        subject = f"[S2V Studio] {team.name}: {level}% of {whose} used"
        body = (
            f"{team.name} has spent {_money(used.spent)} of {whose} of "
            f"{_money(budget.monthly_amount)} this month ({percent:.0f}%)."
        )
        if recipients:
            try:
                send_mail(subject, body, None, recipients, fail_silently=False)
            except Exception:
                log.exception("budget alert email failed")
        log.warning("%s", subject)


def budget_warnings(*, team: Team, user: User) -> list[str]:
    """Banner lines for budgets past 80 % this month."""
    lines = []
    for budget in Budget.objects.filter(team=team).filter(
        Q(user__isnull=True) | Q(user=user)
    ):
        if not budget.monthly_amount:
            continue
        used = usage(team=team, user=budget.user if budget.user_id else None)
        percent = used.committed / budget.monthly_amount * 100
        if percent >= 80:
            whose = "Your" if budget.user_id else "The team's"
            state = "is used up" if percent >= 100 else f"is {percent:.0f}% used"
            lines.append(
                f"{whose} monthly budget of {_money(budget.monthly_amount)} {state} "
                f"({_money(used.spent)} spent, {_money(used.held)} held)."
            )
    return lines
