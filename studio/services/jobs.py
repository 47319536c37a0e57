"""Jobs: create, retry, cancel, variants, title and notes, and the local render path.

Creating a job chooses its provider, checks its parameters and holds its
budget; job_run renders a local job and proves its worker alive as it goes.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import cast

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django_q.tasks import async_task

from studio import billing, catalog, lifecycle, scratch, selectors
from studio.broker import current_cluster
from studio.files import stored_path
from studio.media.images import InputError
from studio.media.video import probe_video
from studio.models import (
    AudioClip,
    FaceCheck,
    GenerationJob,
    Portrait,
    Price,
    Task,
    Team,
    User,
)
from studio.providers import get_provider
from studio.providers.base import (
    GenerationRequest,
    InputFile,
    ProviderError,
    TaskResult,
    TaskState,
)
from studio.queue import poll, slots

from .errors import Rejected
from .inputs import audio_problems, portrait_checker, portrait_verdict

log = logging.getLogger(__name__)


ZERO = Decimal("0")


# How often a running job writes its progress (and so proves its worker alive).
PROGRESS_EVERY = 0.5


def job_create(
    *,
    team: Team,
    user: User,
    portrait: Portrait,
    audio: AudioClip,
    resolution: str,
    title: str = "",
    retry_of: GenerationJob | None = None,
    budget_override: bool = False,
    provider: str = "",
    model: str = catalog.S2V,
    params: Mapping[str, object] | None = None,
) -> GenerationJob:
    """Queue a generation and hold its estimate against the budgets.

    `provider` is a catalog name the team may use (default: the team's first);
    `params` are the model's parameters beyond the tier (prompt, seed), kept
    only where the provider takes them. Raises Rejected when the inputs cannot
    succeed, the choice is not open to the team, or a budget does not allow
    it. `budget_override` (team admins only) lets one job past the money and
    seconds limits; it is recorded in the ledger.
    """
    provider_name = provider_choose(team=team, provider=provider)
    try:
        offer = catalog.offer(provider_name, model)
    except catalog.UnknownChoice as exc:
        raise Rejected(exc.message, code="model") from exc
    title = _clean_title(title)
    if portrait.team_id != team.pk or audio.team_id != team.pk:
        raise Rejected("These files belong to another team.")
    if resolution not in offer.limits.resolutions:
        choices = " or ".join(offer.limits.resolutions)
        raise Rejected(f"Choose a resolution of {choices}.", code="resolution")
    clean = job_params(provider=provider_name, model=model, params=params or {})
    if catalog.provider(provider_name).remote and not billing.unit_price(
        provider=provider_name, unit=Price.Unit.SECOND, resolution=resolution
    ):
        # A provider that bills with no price here would spend unseen money.
        raise Rejected(
            f"{catalog.provider_label(provider_name)} has no {resolution} price in "
            f"{billing.currency()} in the price table, so the studio cannot hold or "
            "record what it costs. Ask an admin to add one (admin: Prices).",
            code="price",
        )
    # The audio first: a clip the provider cannot take must not cost a paid check.
    if problems := audio_problems(
        duration=audio.duration, size=audio.size, limits=offer.limits
    ):
        label = catalog.provider_label(provider_name)
        raise Rejected(f"{label}: " + " ".join(problems), code="audio")
    verdict = portrait_verdict(
        portrait=portrait, provider=portrait_checker(provider_name, model), user=user
    )
    if not verdict.check_pass:
        raise Rejected(verdict.message or "The portrait did not pass the check.")

    est = billing.estimate(
        provider=provider_name,
        model=model,
        resolution=resolution,
        audio_seconds=audio.duration,
    )
    with transaction.atomic():
        try:
            billing.check_budgets(
                team=team,
                user=user,
                amount=ZERO if budget_override else est.generation,
                seconds=ZERO if budget_override else est.seconds,
                resolution=resolution,
                new_job=True,
            )
        except billing.OverBudget as exc:
            raise Rejected(exc.message, code="budget") from exc
        job = GenerationJob.objects.create(
            team=team,
            created_by=user,
            portrait=portrait,
            audio=audio,
            resolution=resolution,
            provider=provider_name,
            model=model,
            params=clean,
            title=title,
            retry_of=retry_of,
            budget_override=budget_override,
        )
        billing.hold(job=job)
        _enqueue_after_commit(job)
    return job


def provider_choose(*, team: Team, provider: str = "") -> str:
    """The provider a job of this team runs on: the one asked for, if the team may use it.

    Without a choice, the team's first. Raises Rejected, in words that say
    what to choose instead, for a provider that is not enabled or not allowed.
    """
    usable = selectors.team_providers(team=team)
    if not provider:
        if not usable:
            raise Rejected(
                "Your team may not use any of the providers this studio offers. "
                "Ask a team admin to allow one on the team page.",
                code="provider",
            )
        return usable[0]
    if provider in usable:
        return provider
    label = catalog.provider_label(provider)
    choices = " or ".join(catalog.provider_label(n) for n in usable)
    if provider not in catalog.enabled_names():
        why = f"{label} is not offered by this studio."
    else:
        why = f"Your team may not use {label}."
    if choices:
        why += f" Choose {choices}, or ask a team admin to allow it on the team page."
    else:
        why += " Ask a team admin to allow a provider on the team page."
    raise Rejected(why, code="provider")


SEED_MAX = 2**31 - 1


PROMPT_MAX = 2000


def job_params(
    *, provider: str, model: str, params: Mapping[str, object]
) -> dict[str, object]:
    """The parameters a job keeps: those the offer takes, checked; blanks dropped.

    A seed of -1 (random) is the default and is not kept. Raises Rejected with
    what to enter instead.
    """
    offer = catalog.offer(provider, model)
    spec = catalog.model(model)
    clean: dict[str, object] = {}
    for name in sorted(offer.takes):
        param = spec.param(name)
        raw = params.get(name)
        text = "" if raw is None else str(raw).strip()
        if param is None or not text:
            continue
        if param.kind == "seed":
            try:
                seed = int(text)
            except ValueError:
                seed = -2
            if not -1 <= seed <= SEED_MAX:
                raise Rejected(
                    f"The seed must be a whole number from -1 to {SEED_MAX}; "
                    "-1 picks one at random.",
                    code="seed",
                )
            if seed != -1:
                clean[name] = seed
        else:
            if len(text) > PROMPT_MAX:
                raise Rejected(
                    f"The {param.label.lower()} is {len(text)} characters long; "
                    f"shorten it to {PROMPT_MAX}.",
                    code=name,
                )
            clean[name] = text
    return clean


def _same_provider(job: GenerationJob) -> str:
    """A job's provider for a retry or variant, if its team may still use it."""
    return (
        job.provider if job.provider in selectors.team_providers(team=job.team) else ""
    )


def _enqueue_after_commit(job: GenerationJob) -> None:
    job_id, provider_name = job.pk, job.provider
    if slots.is_remote(provider_name):
        # Remote jobs wait for a free slot of the provider account.
        transaction.on_commit(
            lambda: async_task("studio.tasks.dispatch", provider_name, group="provider")
        )
        return
    transaction.on_commit(
        lambda: async_task(
            "studio.tasks.job_run",
            job_id,
            task_name=f"job-{job_id}",
            group="generation",
        )
    )


def job_retry(*, job: GenerationJob, user: User) -> GenerationJob:
    """Queue a new job with the same inputs as a failed or canceled one."""
    if not job.can_retry:
        raise Rejected("Only a failed or canceled video can be retried.")
    return job_create(
        team=job.team,
        user=user,
        portrait=job.portrait,
        audio=job.audio,
        resolution=job.resolution,
        title=job.title,
        retry_of=job,
        provider=_same_provider(job),
        model=job.model,
        params=job.params,
    )


def job_cancel(*, job: GenerationJob) -> GenerationJob:
    """Cancel a job before it runs. Raises Rejected once it is running."""
    canceled = bool(
        lifecycle.cancel(
            GenerationJob.objects.filter(pk=job.pk, status=GenerationJob.Status.QUEUED)
        )
    )
    if not canceled and job.status == GenerationJob.Status.SUBMITTED:
        canceled = poll.job_cancel_remote(job=job)
    job.refresh_from_db()
    if canceled or job.status == GenerationJob.Status.CANCELED:
        return job  # settled by the lifecycle when it ended
    if job.is_in_flight and (job.recovery or not job.remote_task_id):
        raise Rejected(
            "The studio is sending this video to the provider or checking whether "
            "the provider received it; it cannot be canceled until that is clear."
        )
    if job.is_in_flight:
        raise Rejected(
            "The provider has started making this video; a running task cannot be "
            "canceled. It is billed only if it succeeds."
        )
    raise Rejected(
        f"This video is already {job.get_status_display().lower()}; "
        "only a queued video can be canceled."
    )


TITLE_MAX = cast(int, GenerationJob._meta.get_field("title").max_length)


def _clean_title(title: str) -> str:
    """The title trimmed; Rejected when it is longer than TITLE_MAX, never cut."""
    title = title.strip()
    if len(title) > TITLE_MAX:
        raise Rejected(
            f"Keep the title to {TITLE_MAX} characters; this one has {len(title)}.",
            code="title",
        )
    return title


def job_rename(*, job: GenerationJob, title: str) -> GenerationJob:
    """Set a job's title. Raises Rejected if it is longer than TITLE_MAX."""
    job.title = _clean_title(title)
    job.save(update_fields=["title"])
    return job


class _JobLost(Exception):
    """The job was taken from this worker (the sweep gave it to another)."""


def job_run(*, job_id: int) -> GenerationJob | None:
    """Claim a queued job and make its video. A redelivered message is a no-op."""
    now = timezone.now()
    claimed = GenerationJob.objects.filter(
        pk=job_id, status=GenerationJob.Status.QUEUED
    ).update(
        status=GenerationJob.Status.SUBMITTED,
        started_at=now,
        heartbeat_at=now,
        progress=0.0,
        attempts=F("attempts") + 1,
        worker=current_cluster(),
    )
    if not claimed:
        return GenerationJob.objects.filter(pk=job_id).first()
    job = GenerationJob.objects.select_related("portrait", "audio").get(pk=job_id)
    Task.open(
        job,
        account="",
        model=billing.model_name(provider=job.provider, unit=Price.Unit.SECOND),
        now=now,
        state=Task.State.RUNNING,
    )
    if job.attempts > 1:
        # Started again: an earlier attempt's worker may have died mid-render.
        scratch.clean_stale()
    # The attempt number fences this worker: once the sweep hands the job to
    # another attempt, every write from this one matches no row.
    mine = GenerationJob.objects.filter(pk=job.pk, attempts=job.attempts)
    provider = get_provider(job.provider)
    verdict = FaceCheck.objects.filter(
        sha256=job.portrait.sha256, provider=provider.name
    ).first()
    last_beat = 0.0

    def progress(fraction: float) -> None:
        nonlocal last_beat
        if time.monotonic() - last_beat < PROGRESS_EVERY and fraction < 1.0:
            return
        last_beat = time.monotonic()
        updated = mine.filter(status__in=GenerationJob.IN_FLIGHT).update(
            status=GenerationJob.Status.RUNNING,
            progress=max(0.0, min(fraction, 1.0)),
            heartbeat_at=timezone.now(),
        )
        if not updated:
            raise _JobLost

    try:
        with (
            stored_path(job.portrait.file.name) as portrait,
            stored_path(job.audio.file.name) as audio,
        ):
            progress(0.0)
            request = GenerationRequest(
                job_code=str(job.code),
                portrait=InputFile(
                    path=portrait,
                    sha256=job.portrait.sha256,
                    storage_name=job.portrait.file.name,
                ),
                audio=InputFile(
                    path=audio,
                    sha256=job.audio.sha256,
                    storage_name=job.audio.file.name,
                ),
                resolution=job.resolution,
                face_box=tuple(verdict.face_box)
                if verdict and verdict.face_box
                else None,
            )
            result = provider.start(request, progress)
    except _JobLost:
        log.warning(
            "job %s was taken over while rendering; dropping this render", job.pk
        )
        return None
    except ProviderError as exc:
        return _job_fail(mine, code=exc.code or "provider", message=str(exc))
    except Exception:
        log.exception("job %s failed while rendering", job.pk)
        return _job_fail(
            mine,
            code="internal",
            message="Rendering stopped on an unexpected error. Retry; if it fails "
            "again, try another portrait or audio clip.",
        )

    try:
        if result.state != TaskState.SUCCEEDED:
            return _job_fail(
                mine,
                code=result.error_code or "provider",
                message=result.error_message
                or "The provider could not make this video.",
            )
        return _job_complete(mine, result=result)
    finally:
        if result.video_path is not None:
            shutil.rmtree(result.video_path.parent, ignore_errors=True)


def _job_complete(
    mine: QuerySet[GenerationJob], *, result: TaskResult
) -> GenerationJob | None:
    if result.video_path is None:
        return _job_fail(
            mine, code="provider", message="The provider returned no video."
        )
    try:
        media = probe_video(result.video_path)
    except InputError as exc:
        return _job_fail(mine, code=exc.code, message=exc.message)
    return lifecycle.complete(
        mine,
        video=result.video_path,
        poster=result.poster_path,
        media=media,
        billed_seconds=result.billed_seconds,
    )


def _job_fail(
    mine: QuerySet[GenerationJob], *, code: str, message: str
) -> GenerationJob | None:
    lifecycle.fail(mine, code=code, message=message)
    return mine.first()


NOTES_MAX = 5000


def job_set_notes(*, job: GenerationJob, notes: str) -> GenerationJob:
    """Replace a job's notes. Raises Rejected if they are longer than NOTES_MAX."""
    notes = notes.strip()
    if len(notes) > NOTES_MAX:
        # Saving a cut copy would lose the end without saying so.
        raise Rejected(
            f"Notes are limited to {NOTES_MAX} characters; these have {len(notes)}. "
            "Nothing was saved.",
            code="notes",
        )
    job.notes = notes
    job.save(update_fields=["notes"])
    return job


def job_variant(*, job: GenerationJob, user: User, resolution: str) -> GenerationJob:
    """Queue the same take again at another resolution, linked to the first job.

    Same portrait, audio and title; raises Rejected like job_create.
    """
    with transaction.atomic():
        variant = job_create(
            team=job.team,
            user=user,
            portrait=job.portrait,
            audio=job.audio,
            resolution=resolution,
            title=job.title,
            provider=_same_provider(job),
            model=job.model,
            params=job.params,
        )
        variant.variant_of_id = job.take_id
        variant.save(update_fields=["variant_of"])
    return variant
