"""Every write and every provider call. Views and commands go through here."""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import cast

from django.conf import settings
from django.core import signing
from django.core.files import File
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django_q.tasks import async_task

from . import billing, catalog, dispatcher, lifecycle, notifications, scratch, selectors
from .broker import current_cluster
from .files import local_path, sha256_of, stored_path
from .media.audio import AudioInfo, convert_to_wav, probe_audio
from .media.images import ImageInfo, InputError, precheck_image, read_image_info
from .media.video import probe_video
from .models import (
    AudioClip,
    Budget,
    FaceCheck,
    Favourite,
    GenerationJob,
    JobComment,
    JobReview,
    Membership,
    Portrait,
    ShareLink,
    Team,
    User,
)
from .providers import get_provider
from .providers.base import (
    GenerationRequest,
    InputFile,
    Provider,
    ProviderError,
    ProviderLimits,
    TaskResult,
    TaskState,
    Verdict,
)

log = logging.getLogger(__name__)

# Formats users may upload; those an provider does not take are converted to WAV.
UPLOAD_AUDIO_FORMATS = ("wav", "mp3", "m4a", "aac", "ogg", "flac")
UPLOAD_AUDIO_LABEL = "WAV, MP3, M4A/AAC, OGG/Opus or FLAC"
ZERO = Decimal("0")
# How often a running job writes its progress (and so proves its worker alive).
PROGRESS_EVERY = 0.5


class Rejected(Exception):
    """A request the studio cannot honour. `message` says what to do instead."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class CheckUnavailable(Rejected):
    """The paid portrait check did not answer, even on a retry: ask again later."""


# -- portraits ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortraitOutcome:
    """A checked upload: the stored portrait (only when it passed) and its verdict.

    When the check itself could not run (the provider did not answer), there is
    no verdict: the upload is kept as `unchecked`, so that checking it again
    needs no new upload, and `message` says so.
    """

    verdict: FaceCheck | None
    portrait: Portrait | None = None
    unchecked: Portrait | None = None
    message: str = ""


def portrait_submit(
    *, team: Team, user: User, upload: File[bytes], provider: Provider | None = None
) -> PortraitOutcome:
    """Check an uploaded image and keep it when it passes. Raises Rejected for non-images."""
    provider = provider or get_provider()
    sha256 = sha256_of(upload)
    suffix = PurePosixPath(upload.name or "").suffix.lower()
    with local_path(upload, suffix=suffix) as path:
        try:
            info = read_image_info(path)
        except InputError as exc:
            raise Rejected(exc.message, code=exc.code) from exc
        check = _cached_check(sha256=sha256, provider=provider)
        if check is None:
            verdict = precheck_image(info, provider.limits)
            if verdict is None:
                try:
                    verdict = _check(
                        provider,
                        InputFile(path=path, sha256=sha256, format=info.format),
                        team=team,
                        user=user,
                    )
                except CheckUnavailable as exc:
                    # Keep the file: "check again" must not mean "upload again".
                    kept = _keep_portrait(
                        team=team, user=user, upload=upload, info=info, sha256=sha256
                    )
                    return PortraitOutcome(
                        verdict=None, unchecked=kept, message=exc.message
                    )
            check = _store_check(sha256=sha256, provider=provider, verdict=verdict)
    if not check.check_pass:
        return PortraitOutcome(verdict=check)
    portrait = _keep_portrait(
        team=team, user=user, upload=upload, info=info, sha256=sha256
    )
    return PortraitOutcome(verdict=check, portrait=portrait)


def portrait_recheck(
    *, team: Team, user: User, portrait: Portrait, provider: Provider | None = None
) -> PortraitOutcome:
    """Check a kept portrait again, without a new upload. Raises Rejected as submit does."""
    provider = provider or get_provider()
    try:
        check = portrait_verdict(portrait=portrait, provider=provider, user=user)
    except CheckUnavailable as exc:
        return PortraitOutcome(verdict=None, unchecked=portrait, message=exc.message)
    if not check.check_pass:
        return PortraitOutcome(verdict=check)
    return PortraitOutcome(verdict=check, portrait=portrait)


def _keep_portrait(
    *, team: Team, user: User, upload: File[bytes], info: ImageInfo, sha256: str
) -> Portrait:
    portrait = Portrait.objects.filter(team=team, sha256=sha256).first()
    if portrait is None:
        portrait = Portrait(
            team=team,
            uploaded_by=user,
            original_name=(upload.name or "")[:255],
            sha256=sha256,
            size=upload.size or 0,
            width=info.width,
            height=info.height,
            format=info.format,
        )
        # portrait_upload_to names it by the verified format, not by `upload.name`.
        portrait.file.save("portrait", upload, save=False)
        portrait.save()
    return portrait


def portrait_verdict(
    *, portrait: Portrait, provider: Provider | None = None, user: User | None = None
) -> FaceCheck:
    """The portrait's verdict for an provider, checking it only if no verdict is cached.

    A paid check is charged to `user`, or to the portrait's uploader when unknown.
    """
    provider = provider or get_provider()
    check = _cached_check(sha256=portrait.sha256, provider=provider)
    if check is not None:
        return check
    with stored_path(portrait.file.name) as path:
        image = InputFile(
            path=path, sha256=portrait.sha256, storage_name=portrait.file.name
        )
        verdict = _check(
            provider, image, team=portrait.team, user=user or portrait.uploaded_by
        )
    return _store_check(sha256=portrait.sha256, provider=provider, verdict=verdict)


def _check(provider: Provider, image: InputFile, *, team: Team, user: User) -> Verdict:
    """Run the provider's check; failures of the call itself are not verdicts.

    A remote check is paid even when the image fails, so it is recorded in the
    ledger, and refused when the team's budget has no room for it.
    """
    if not provider.remote:
        try:
            return provider.check_portrait(image)
        except InputError as exc:
            raise Rejected(exc.message, code=exc.code) from exc
    fee = billing.estimate(
        provider=provider.name, resolution="480P", audio_seconds=0, needs_check=True
    ).check
    try:
        billing.check_budgets(team=team, user=user, amount=fee, lock=False)
    except billing.OverBudget as exc:
        raise Rejected(
            f"The portrait check costs money: {exc.message}", code="budget"
        ) from exc
    retried = False
    while True:
        try:
            verdict = (
                provider.check_portrait(image, fresh=True)
                if retried
                else provider.check_portrait(image)
            )
            break
        except InputError as exc:
            raise Rejected(exc.message, code=exc.code) from exc
        except ProviderError as exc:
            billing.record_check(
                team=team,
                user=user,
                provider=provider.name,
                billed=False,
                reason=f"call failed: {exc.code or exc.kind}",
            )
            if exc.about_account:
                dispatcher.pause_account(
                    provider_name=provider.name, code=exc.code, message=str(exc)
                )
                raise Rejected(
                    "The portrait check is unavailable: the provider refused the "
                    "studio's account. An admin has been told; try again later.",
                    code=exc.code,
                ) from exc
            if exc.permanent:
                raise Rejected(str(exc), code=exc.code) from exc
            # A 5xx or a dropped connection is often a one-off: retry once at
            # once, on a new connection. Throttling would only be refused again.
            if not retried and not exc.code.startswith("Throttling"):
                log.warning("portrait check failed (%s); retrying once", exc.code)
                retried = True
                continue
            raise CheckUnavailable(
                "The provider's portrait check did not answer. Nothing was billed. "
                "Your portrait is kept: check it again in a moment.",
                code=exc.code,
            ) from exc
    billing.record_check(
        team=team,
        user=user,
        provider=provider.name,
        billed=True,
        reason="passed"
        if verdict.check_pass
        else f"failed: {verdict.reason or 'rejected'}",
    )
    return verdict


def _cached_check(*, sha256: str, provider: Provider) -> FaceCheck | None:
    return FaceCheck.objects.filter(sha256=sha256, provider=provider.name).first()


def _store_check(*, sha256: str, provider: Provider, verdict: Verdict) -> FaceCheck:
    fields = {
        "check_pass": verdict.check_pass,
        "humanoid": verdict.humanoid,
        "reason": str(verdict.reason or ""),
        "message": verdict.message,
        "face_box": list(verdict.face_box) if verdict.face_box else None,
        "details": {k: float(v) for k, v in verdict.details.items()},
    }
    try:
        with transaction.atomic():
            return FaceCheck.objects.create(
                sha256=sha256, provider=provider.name, **fields
            )
    except IntegrityError:
        # Two checks of the same image raced; the first verdict stands.
        return FaceCheck.objects.get(sha256=sha256, provider=provider.name)


# -- audio --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudioOutcome:
    """A probed upload, what stops it from being used, and the stored clip if nothing does."""

    info: AudioInfo
    problems: list[str] = field(default_factory=list)
    clip: AudioClip | None = None
    will_convert: bool = False


def audio_submit(
    *,
    team: Team,
    user: User,
    upload: File[bytes],
    provider: Provider | None = None,
    limits: ProviderLimits | None = None,
) -> AudioOutcome:
    """Probe an uploaded clip, convert it if needed, keep it if it fits the limits.

    `limits` defaults to the provider's (the default provider's). The upload
    page passes the widest limits of the providers the team may choose from,
    and says per provider whether the clip fits. Raises Rejected when the file
    is not audio at all.
    """
    if limits is None:
        limits = (provider or get_provider()).limits
    sha256 = sha256_of(upload)
    suffix = PurePosixPath(upload.name or "").suffix.lower()
    with local_path(upload, suffix=suffix) as path:
        try:
            info = probe_audio(path)
        except InputError as exc:
            raise Rejected(exc.message, code=exc.code) from exc
        if info.format not in UPLOAD_AUDIO_FORMATS:
            return AudioOutcome(
                info=info,
                problems=[
                    f"{info.format.upper()} audio is not supported. "
                    f"Use {UPLOAD_AUDIO_LABEL}."
                ],
            )
        # A header that lies about the length would mislead the provider too.
        will_convert = info.format not in limits.audio_formats or not info.header_ok
        problems = audio_problems(
            duration=info.duration,
            size=None if will_convert else info.size,
            limits=limits,
        )
        if problems:
            return AudioOutcome(info=info, problems=problems, will_convert=will_convert)

        existing = AudioClip.objects.filter(team=team, sha256=sha256).first()
        if existing is not None:
            return AudioOutcome(info=info, clip=existing, will_convert=will_convert)

        with scratch.folder("s2v-audio") as tmp:
            send_path, send_info = path, info
            if will_convert:
                send_path = Path(tmp) / "converted.wav"
                try:
                    send_info = convert_to_wav(path, send_path)
                except InputError as exc:
                    raise Rejected(exc.message, code=exc.code) from exc
                problems = audio_problems(
                    duration=send_info.duration, size=send_info.size, limits=limits
                )
                if problems:
                    return AudioOutcome(info=info, problems=problems, will_convert=True)
            clip = AudioClip(
                team=team,
                uploaded_by=user,
                original_name=(upload.name or "")[:255],
                original_format=info.format,
                format=send_info.format,
                sha256=sha256,
                duration=send_info.duration,
                size=send_info.size,
                sample_rate=send_info.sample_rate,
                channels=send_info.channels,
            )
            with send_path.open("rb") as fh:
                clip.file.save("audio", File(fh), save=False)
            clip.save()
    return AudioOutcome(info=info, clip=clip, will_convert=will_convert)


def audio_problems(
    *,
    duration: float,
    size: int | None,
    provider: Provider | None = None,
    limits: ProviderLimits | None = None,
) -> list[str]:
    """Why a clip of this length and size does not fit the limits, in plain words.

    The limits are an offer's (`limits`) or a provider object's. They are
    exclusive (§3.1: "< 20 s", "< 15 MB"): a clip of exactly 20 s is refused
    here, not after it was sent.
    """
    if limits is None:
        if provider is None:
            raise TypeError("audio_problems needs limits or a provider")
        limits = provider.limits
    problems = []
    if duration < limits.audio_min_seconds:
        shown = f"{duration:.2f}".rstrip("0").rstrip(".")
        problems.append(
            f"The clip is only {shown} s long; it must be at least "
            f"{limits.audio_min_seconds:g} s. Use a longer recording."
        )
    top = limits.audio_max_seconds
    if duration >= top:
        over = duration - top
        length = (
            f"{duration:.1f} s long, {over:.1f} s over the {top:g} s limit"
            if over >= 0.05
            else f"{duration:.3f} s long"  # so that "20.0" is not read as fitting
        )
        problems.append(
            f"The clip is {length}. It must be shorter than {top:g} s. Trim it."
        )
    if size is not None and size >= limits.audio_max_bytes:
        # MB as 10^6 bytes, the reading the limit uses; bytes when that would
        # print the limit itself.
        shown = f"{size / 1e6:.1f} MB"
        if round(size / 1e6, 1) <= limits.audio_max_bytes / 1e6:
            shown = f"{size:,} bytes"
        problems.append(
            f"The file is {shown}; it must be smaller than "
            f"{limits.audio_max_bytes / 1e6:g} MB. Export it at a lower bit rate "
            "or shorten it."
        )
    return problems


# -- jobs ---------------------------------------------------------------------


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


def portrait_checker(provider_name: str, model: str = catalog.S2V) -> Provider:
    """The provider whose portrait check applies to a job on `provider_name`."""
    return get_provider(selectors.check_provider_name(provider_name, model))


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
    if dispatcher.is_remote(provider_name):
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
        canceled = dispatcher.job_cancel_remote(job=job)
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


def jobs_sweep(*, now: datetime | None = None) -> list[int]:
    """Take back in-flight jobs whose worker stopped reporting. Returns their ids.

    A job with attempts left goes back to the queue; after the last attempt it
    fails with a message, so no job stays "running" forever.
    """
    now = now or timezone.now()
    recovered = dispatcher.sweep_remote(now=now)
    # Without a running dispatcher process, this minute sweep still moves remote
    # jobs along, only more slowly.
    dispatcher.tick(now=now)
    if settings.Q_CLUSTER.get("redis"):
        recovered += _resend_lost_messages(now=now)
    cutoff = now - timedelta(seconds=settings.S2V_STALE_SECONDS)
    stale = GenerationJob.objects.filter(
        status__in=GenerationJob.IN_FLIGHT, heartbeat_at__lt=cutoff
    )
    for job in stale.only("pk", "attempts", "provider"):
        if dispatcher.is_remote(job.provider):
            continue  # remote tasks keep running at the provider; polling resumes them
        if _take_back(job):
            recovered.append(job.pk)
    return recovered


def jobs_take_back(*, workers: list[str]) -> list[int]:
    """Take back the in-flight local jobs of dead task-queue clusters. Returns their ids."""
    lost = GenerationJob.objects.filter(
        status__in=GenerationJob.IN_FLIGHT, worker__in=workers
    )
    return [
        job.pk
        for job in lost.only("pk", "attempts", "provider")
        if not dispatcher.is_remote(job.provider) and _take_back(job)
    ]


def _take_back(job: GenerationJob) -> bool:
    """Queue the job's attempt again, or fail it after the last one."""
    current = GenerationJob.objects.filter(
        pk=job.pk, attempts=job.attempts, status__in=GenerationJob.IN_FLIGHT
    )
    if job.attempts < settings.S2V_MAX_ATTEMPTS:
        with transaction.atomic():
            if not current.update(status=GenerationJob.Status.QUEUED, progress=0.0):
                return False
            _enqueue_after_commit(job)
        log.warning("job %s: worker stopped; queued again", job.pk)
        return True
    _job_fail(
        current,
        code="worker_lost",
        message="The worker stopped while making this video, "
        f"{job.attempts} times. Retry it; if it keeps failing, tell an admin.",
    )
    log.error("job %s: worker stopped on every attempt; failed", job.pk)
    return True


# -- team administration -----------------------------------------------------------


def budget_update(*, team: Team, user: User | None, **limits: object) -> Budget:
    """Set a team's or a member's monthly limits. A member's money stays within the team's."""
    amount = limits.get("monthly_amount")
    if amount is not None and amount < 0:  # type: ignore[operator]
        raise Rejected(
            "A budget cannot be negative. Enter 0 to stop all spending, or leave it "
            "empty for no limit.",
            code="budget",
        )
    budget, _ = Budget.objects.get_or_create(team=team, user=user)
    team_budget, _ = Budget.objects.get_or_create(team=team, user=None)
    if (
        user is not None
        and amount is not None
        and team_budget.monthly_amount is not None
        and amount > team_budget.monthly_amount  # type: ignore[operator]
    ):
        raise Rejected(
            f"A member's budget cannot exceed the team's ({team_budget.monthly_amount})."
        )
    for name, value in limits.items():
        setattr(budget, name, value)
    budget.save()
    return budget


def member_add(*, team: Team, username: str, role: str) -> Membership:
    user = User.objects.filter(username=username.strip()).first()
    if user is None:
        raise Rejected(
            f"There is no user {username!r}. Ask a site admin to create the account."
        )
    membership, created = Membership.objects.get_or_create(
        user=user, team=team, defaults={"role": role}
    )
    if not created:
        raise Rejected(f"{username} is already in {team.name}.")
    return membership


def member_set_role(*, membership: Membership, role: str) -> Membership:
    if membership.role == Membership.Role.ADMIN and role != Membership.Role.ADMIN:
        _keep_an_admin(membership)
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


def member_remove(*, membership: Membership) -> None:
    if membership.role == Membership.Role.ADMIN:
        _keep_an_admin(membership)
    Budget.objects.filter(team=membership.team, user=membership.user).delete()
    membership.delete()


def _keep_an_admin(membership: Membership) -> None:
    others = Membership.objects.filter(
        team=membership.team, role=Membership.Role.ADMIN
    ).exclude(pk=membership.pk)
    if not others.exists():
        raise Rejected(
            "A team needs at least one admin. Make someone else an admin first."
        )


def _resend_lost_messages(*, now: datetime) -> list[int]:
    """Send again the queued local jobs whose task message may be lost.

    The Redis broker never redelivers: a message a cluster had pulled but not
    started is gone when that cluster is killed. A job queued for longer than
    the broker's retry period is sent again, at most once a period; a duplicate
    message is harmless because the claim is conditional. (`heartbeat_at` of a
    queued job records when it was last sent.) When a dead cluster is noticed
    sooner, `jobs_resend_queued` does this at once (studio/broker.py).
    """
    period = timedelta(seconds=settings.Q_CLUSTER.get("retry", 960))
    waiting = GenerationJob.objects.filter(
        status=GenerationJob.Status.QUEUED, queued_at__lt=now - period
    ).filter(Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=now - period))
    return _resend(waiting, now=now)


def jobs_resend_queued(*, exclude: list[int]) -> list[int]:
    """Send every queued local job again (but those in `exclude`, just sent): a
    dead cluster may have popped its message."""
    waiting = GenerationJob.objects.filter(status=GenerationJob.Status.QUEUED).exclude(
        pk__in=exclude
    )
    return _resend(waiting, now=timezone.now())


def _resend(waiting: QuerySet[GenerationJob], *, now: datetime) -> list[int]:
    resent = []
    for job in waiting.only("pk", "provider"):
        if dispatcher.is_remote(job.provider):
            continue  # remote jobs wait in the table, not in the broker
        with transaction.atomic():
            if GenerationJob.objects.filter(
                pk=job.pk, status=GenerationJob.Status.QUEUED
            ).update(heartbeat_at=now):
                _enqueue_after_commit(job)
                resent.append(job.pk)
    if resent:
        log.warning("re-sent %d queued jobs whose messages may be lost", len(resent))
    return resent


# -- gallery, review and hand-off ---------------------------------------------

NOTES_MAX = 5000
COMMENT_MAX = 4000
SHARE_DAYS = (1, 3, 7, 30, 90)
SHARE_SALT = "studio.share"
REVIEW_ROLES = (Membership.Role.REVIEWER, Membership.Role.ADMIN)


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


def favourite_set(*, job: GenerationJob, user: User, on: bool) -> bool:
    """Star or unstar a job for one user; setting the same state twice is harmless."""
    if on:
        Favourite.objects.get_or_create(user=user, job=job)
    else:
        Favourite.objects.filter(user=user, job=job).delete()
    return on


def can_review(membership: Membership) -> bool:
    return membership.role in REVIEW_ROLES


def can_change_job(*, membership: Membership, job: GenerationJob) -> bool:
    """Cancel, rename, notes and share revocation: the author, reviewers and admins."""
    return job.created_by_id == membership.user_id or can_review(membership)


def releasable(job: GenerationJob) -> bool:
    """Whether a video may leave the team: shared, or downloaded with others."""
    if job.status != GenerationJob.Status.SUCCEEDED:
        return False
    return job.is_approved or not job.team.approval_required


def job_review(
    *, job: GenerationJob, membership: Membership, decision: str, comment: str = ""
) -> JobReview:
    """Approve a video or request changes, and tell its author.

    Raises Rejected for members without the reviewer role, for videos that are
    not finished, and for a change request without a comment.
    """
    if not can_review(membership):
        raise Rejected("Only reviewers and admins can review videos.", code="role")
    if job.status != GenerationJob.Status.SUCCEEDED:
        raise Rejected("Only a finished video can be reviewed.")
    if decision not in (
        GenerationJob.ReviewState.APPROVED,
        GenerationJob.ReviewState.CHANGES,
    ):
        raise Rejected("Choose approve or request changes.")
    comment = comment.strip()[:COMMENT_MAX]
    if decision == GenerationJob.ReviewState.CHANGES and not comment:
        raise Rejected("Say what should change: a change request needs a comment.")
    with transaction.atomic():
        review = JobReview.objects.create(
            job=job, reviewer=membership.user, decision=decision, comment=comment
        )
        GenerationJob.objects.filter(pk=job.pk).update(review_state=decision)
        job.review_state = decision
        notifications.notify_reviewed(review)
    return review


def job_comment(*, job: GenerationJob, user: User, text: str) -> JobComment:
    """Add plain text to a video's thread and tell its author. Raises Rejected if empty."""
    text = text.strip()
    if not text:
        raise Rejected("Write something first.")
    if len(text) > COMMENT_MAX:
        raise Rejected(f"Keep it under {COMMENT_MAX} characters.")
    with transaction.atomic():
        comment = JobComment.objects.create(job=job, author=user, text=text)
        notifications.notify_commented(comment)
    return comment


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


@dataclass(frozen=True, slots=True)
class ReusedInputs:
    """A job's stored inputs, as the upload page shows checked uploads."""

    portrait: PortraitOutcome
    audio: AudioOutcome

    @property
    def ready(self) -> bool:
        return self.portrait.portrait is not None and self.audio.clip is not None


def job_reuse(
    *, job: GenerationJob, provider: str = "", limits: ProviderLimits | None = None
) -> ReusedInputs:
    """The portrait and audio of a job, checked for a provider, for 'Use again'.

    The portrait's verdict is the check that applies to `provider` (the
    default one when empty), from the cache unless never checked for it. The
    audio is measured against `limits` (the page's widest), else that
    provider's offer.
    """
    name = provider or catalog.default_provider()
    try:
        verdict = portrait_verdict(
            portrait=job.portrait, provider=portrait_checker(name, job.model)
        )
    except Rejected as exc:
        verdict = FaceCheck(check_pass=False, humanoid=False, message=exc.message)
    clip = job.audio
    if limits is None:
        limits = catalog.offer(name, job.model).limits
    problems = audio_problems(duration=clip.duration, size=clip.size, limits=limits)
    info = AudioInfo(
        format=clip.original_format,
        codec="",
        duration=clip.duration,
        sample_rate=clip.sample_rate,
        channels=clip.channels,
        size=clip.size,
    )
    return ReusedInputs(
        portrait=PortraitOutcome(
            verdict=verdict, portrait=job.portrait if verdict.check_pass else None
        ),
        audio=AudioOutcome(
            info=info,
            problems=problems,
            clip=None if problems else clip,
            will_convert=clip.converted,
        ),
    )


def share_create(*, job: GenerationJob, user: User, days: int) -> ShareLink:
    """A public link to one finished video. Raises Rejected if it may not leave the team."""
    if days not in SHARE_DAYS:
        raise Rejected("Choose how long the link works.")
    if job.status != GenerationJob.Status.SUCCEEDED:
        raise Rejected("Only a finished video can be shared.")
    if not releasable(job):
        raise Rejected("This team shares only approved videos; ask a reviewer.")
    return ShareLink.objects.create(
        job=job, created_by=user, expires_at=timezone.now() + timedelta(days=days)
    )


def share_revoke(*, share: ShareLink, user: User) -> ShareLink:
    """Close a share link at once; revoking twice keeps the first time."""
    ShareLink.objects.filter(pk=share.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_by=user
    )
    share.refresh_from_db()
    return share


def share_token(share: ShareLink) -> str:
    """The signed part of a share URL: the link's code and an HMAC of it."""
    return signing.Signer(salt=SHARE_SALT).sign(share.code.hex)


def share_code(token: str) -> uuid.UUID | None:
    """The code a share token names, or None if its signature does not match."""
    try:
        return uuid.UUID(hex=signing.Signer(salt=SHARE_SALT).unsign(token))
    except (signing.BadSignature, ValueError):
        return None


def team_set_approval(*, team: Team, required: bool) -> Team:
    team.approval_required = required
    team.save(update_fields=["approval_required"])
    return team


def team_set_providers(*, team: Team, providers: list[str]) -> Team:
    """Restrict the team to these enabled providers; an empty list allows every one.

    Raises Rejected for a name the studio does not offer.
    """
    enabled = catalog.enabled_names()
    unknown = [p for p in providers if p not in enabled]
    if unknown:
        raise Rejected(
            f"{', '.join(unknown)} is not offered by this studio; choose among "
            + ", ".join(catalog.provider_label(n) for n in enabled)
            + "."
        )
    # Kept in the catalog's order, so the team's first is the studio's first.
    team.allowed_providers = [n for n in enabled if n in providers]
    team.save(update_fields=["allowed_providers"])
    return team


def jobs_for_download(*, team: Team, codes: list[uuid.UUID]) -> list[GenerationJob]:
    """The chosen videos, in the order chosen, if all may be downloaded together.

    Raises Rejected (nothing chosen, not finished, not approved) and
    GenerationJob.DoesNotExist when a code is not one of the team's jobs.
    """
    if not codes:
        raise Rejected("Choose at least one video to download.")
    jobs = {
        job.code: job
        for job in GenerationJob.objects.filter(team=team, code__in=codes)
        .select_related("team")
        .only(
            "code",
            "title",
            "resolution",
            "status",
            "review_state",
            "video",
            "team__approval_required",
        )
    }
    if len(jobs) != len(set(codes)):
        raise GenerationJob.DoesNotExist
    chosen = [jobs[code] for code in dict.fromkeys(codes)]
    unfinished = [j for j in chosen if j.status != GenerationJob.Status.SUCCEEDED]
    if unfinished:
        raise Rejected(
            "Only finished videos can be downloaded: "
            + ", ".join(j.display_title for j in unfinished)
            + "."
        )
    unapproved = [j for j in chosen if not releasable(j)]
    if unapproved:
        raise Rejected(
            "This team downloads only approved videos together. Not approved yet: "
            + ", ".join(j.display_title for j in unapproved)
            + "."
        )
    return chosen
