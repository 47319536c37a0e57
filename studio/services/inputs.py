"""Portraits, audio and videos: uploads, the paid portrait check and its cache,
'Use again'."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from studio import billing, catalog, scratch, selectors
from studio.files import local_path, sha256_of, stored_path
from studio.media.audio import AudioInfo, convert_to_wav, probe_audio
from studio.media.images import ImageInfo, InputError, precheck_image, read_image_info
from studio.media.posters import make_poster
from studio.media.video import ClipInfo, convert_to_mp4, make_preview, probe_clip
from studio.models import (
    AudioClip,
    FaceCheck,
    GenerationJob,
    Portrait,
    Team,
    User,
    VideoClip,
)
from studio.providers import get_provider
from studio.providers.base import (
    UNBOUNDED,
    InputFile,
    Provider,
    ProviderError,
    ProviderLimits,
    Verdict,
)
from studio.queue import accounts

from .errors import CheckUnavailable, Rejected

log = logging.getLogger(__name__)


# Formats users may upload; those an provider does not take are converted to WAV.
UPLOAD_AUDIO_FORMATS = ("wav", "mp3", "m4a", "aac", "ogg", "flac")


UPLOAD_AUDIO_LABEL = "WAV, MP3, M4A/AAC, OGG/Opus or FLAC"


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
    with _received(upload) as (sha256, path):
        with _refusing():
            info = read_image_info(path)
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
        with _refusing():
            return provider.check_portrait(image)
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
                accounts.pause_account(
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
    with _received(upload) as (sha256, path):
        with _refusing():
            info = probe_audio(path)
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
                with _refusing():
                    send_info = convert_to_wav(path, send_path)
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


# Containers users may upload (media.video refuses any other); WebM is stored
# converted to MP4, which the providers that take video all take.
UPLOAD_VIDEO_FORMATS = ("mp4", "mov", "avi", "webm")
UPLOAD_VIDEO_LABEL = "MP4, MOV, AVI or WebM"


@dataclass(frozen=True, slots=True)
class VideoOutcome:
    """A probed video upload, what stops it from being used, and the stored clip."""

    info: ClipInfo
    problems: list[str] = field(default_factory=list)
    clip: VideoClip | None = None
    will_convert: bool = False


def video_submit(
    *,
    team: Team,
    user: User,
    upload: File[bytes],
    limits: ProviderLimits,
    provider_label: str = "",
) -> VideoOutcome:
    """Probe an uploaded reference video, convert WebM to MP4, keep it if it fits.

    `limits` are the page's (the widest of the offers the team may choose
    from). The clip is kept with a poster and a short preview; on any failure
    nothing is stored. Raises Rejected when the file is too large to take or
    is not a video the studio takes.
    """
    cap = settings.S2V_MAX_VIDEO_MB
    size = upload.size or 0
    if size > cap * 1_000_000:
        # Refused before its bytes are hashed or probed (the request itself
        # was already received: the upload middleware's cap comes first).
        raise Rejected(
            f"The video is {size / 1e6:.0f} MB; videos are limited to {cap} MB. "
            "Trim it or export it at a lower bit rate.",
            code="TooLarge",
        )
    with _received(upload) as (sha256, path):
        with _refusing():
            info = probe_clip(path)
        will_convert = info.format == "webm"
        # Before converting, judge what conversion keeps (length, sides); the
        # converted file's size is judged once it exists.
        problems = video_problems(
            info=replace(info, format="mp4", size=0) if will_convert else info,
            limits=limits,
            provider_label=provider_label,
        )
        if problems:
            return VideoOutcome(info=info, problems=problems, will_convert=will_convert)

        existing = VideoClip.objects.filter(team=team, sha256=sha256).first()
        if existing is not None:
            return VideoOutcome(info=info, clip=existing, will_convert=will_convert)

        with scratch.folder("s2v-video") as tmp:
            send_path, send_info = path, info
            with _refusing():
                if will_convert:
                    send_path = Path(tmp) / "converted.mp4"
                    send_info = convert_to_mp4(path, send_path)
                    problems = video_problems(
                        info=send_info, limits=limits, provider_label=provider_label
                    )
                    if problems:
                        return VideoOutcome(
                            info=info, problems=problems, will_convert=True
                        )
                poster, preview = Path(tmp) / "poster.jpg", Path(tmp) / "preview.mp4"
                make_poster(
                    send_path, poster, at_seconds=min(0.5, send_info.duration / 2)
                )
                make_preview(send_path, preview)
            clip = VideoClip(
                team=team,
                uploaded_by=user,
                original_name=(upload.name or "")[:255],
                original_format=info.format,
                format=send_info.format,
                codec=send_info.codec,
                sha256=sha256,
                size=send_info.size,
                duration=send_info.duration,
                width=send_info.width,
                height=send_info.height,
                fps=send_info.fps,
                has_audio=send_info.has_audio,
            )
            _store_clip(clip, video=send_path, poster=poster, preview=preview)
    return VideoOutcome(info=info, clip=clip, will_convert=will_convert)


def _store_clip(clip: VideoClip, *, video: Path, poster: Path, preview: Path) -> None:
    """Store the three files, then the row; on any failure, remove what was stored."""
    try:
        # The upload_to functions name each file by its verified format.
        for field_file, path in (
            (clip.file, video),
            (clip.poster, poster),
            (clip.preview, preview),
        ):
            with path.open("rb") as fh:
                field_file.save("video", File(fh), save=False)
        clip.save()
    except BaseException:
        for name in (clip.file.name, clip.poster.name, clip.preview.name):
            if name:
                default_storage.delete(name)
        raise


def video_problems(
    *, info: ClipInfo, limits: ProviderLimits, provider_label: str = ""
) -> list[str]:
    """Why a video does not fit the limits, each with by how much, in plain words.

    The bounds are inclusive (provider-api.md §7.1 "2-30 s", "[200, 2048]",
    "<= 200 MB"). `provider_label` names who sets them ("DashScope").
    """
    who = provider_label or "the provider"
    problems = []
    if not limits.video_formats:
        return [f"{who[:1].upper()}{who[1:]} takes no video for this model."]
    if info.format not in limits.video_formats:
        names = [f.upper() for f in UPLOAD_VIDEO_FORMATS if f in limits.video_formats]
        taken = (
            names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        )
        problems.append(
            f"The video is {info.format.upper()}; {who} takes {taken}. "
            "Export it as MP4."
        )
    low, high = limits.video_min_seconds, limits.video_max_seconds
    span = _span(low, high, "s")
    if info.duration < low:
        problems.append(
            f"The video is {_seconds(info.duration)} long; {who} takes {span}: "
            f"use one at least {_up(low - info.duration)} s longer."
        )
    elif info.duration > high:
        problems.append(
            f"The video is {_seconds(info.duration)} long; {who} takes {span}: "
            f"trim {_up(info.duration - high)} s."
        )
    sides = f"{info.width}×{info.height} px"
    low_side, high_side = limits.video_min_side, limits.video_max_side
    side_span = _span(low_side, high_side, "px")
    short, long = min(info.width, info.height), max(info.width, info.height)
    if short < low_side:
        problems.append(
            f"The video is {sides}; {who} takes sides of {side_span}: its shorter "
            f"side is {low_side - short} px short. Use a larger video."
        )
    if long > high_side:
        problems.append(
            f"The video is {sides}; {who} takes sides of {side_span}: its longer "
            f"side is {long - high_side} px over. Export it at a lower resolution."
        )
    aspect = limits.video_aspect_max
    if short and long / short > aspect:
        cut = long - math.floor(short * aspect)
        which = "width" if info.width >= info.height else "height"
        problems.append(
            f"The video is {sides}, {long / short:.2f}:1; {who} takes 1:{aspect:g} "
            f"to {aspect:g}:1: crop {cut} px off its {which}."
        )
    if info.size > limits.video_max_bytes:
        top = limits.video_max_bytes / 1e6
        over = _up((info.size - limits.video_max_bytes) / 1e6)
        problems.append(
            f"The file is {info.size / 1e6:.1f} MB; {who} takes up to {top:g} MB: "
            f"{over} MB over. Export it at a lower bit rate or trim it."
        )
    return problems


def _span(low: float, high: float, unit: str) -> str:
    if math.isinf(high) or high >= UNBOUNDED:
        return f"at least {low:g} {unit}"
    if not low:
        return f"up to {high:g} {unit}"
    return f"{low:g}–{high:g} {unit}"


def _seconds(value: float) -> str:
    shown = f"{value:.1f} s"
    return f"{shown} ({value / 60:.0f} min)" if value >= 120 else shown


def _up(value: float) -> str:
    """`value` rounded up to a tenth, so the advice is always enough."""
    return f"{math.ceil(round(value * 10, 6)) / 10:.1f}"


def portrait_checker(provider_name: str, model: str = catalog.S2V) -> Provider:
    """The provider whose portrait check applies to a job on `provider_name`."""
    return get_provider(selectors.check_provider_name(provider_name, model))


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


@contextlib.contextmanager
def _refusing() -> Iterator[None]:
    """An input the media code cannot use becomes the Rejected the pages show."""
    try:
        yield
    except InputError as exc:
        raise Rejected(exc.message, code=exc.code) from exc


@contextlib.contextmanager
def _received(upload: File[bytes]) -> Iterator[tuple[str, Path]]:
    """The upload's hash and a local path to read it at (its suffix kept for probes)."""
    sha256 = sha256_of(upload)
    suffix = PurePosixPath(upload.name or "").suffix.lower()
    with local_path(upload, suffix=suffix) as path:
        yield sha256, path
