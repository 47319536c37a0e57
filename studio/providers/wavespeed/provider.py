"""The WaveSpeed provider: wavespeed-ai/wan-2.2/speech-to-video behind the provider contract.

WaveSpeed offers no paid portrait check, so portraits get the studio's own
local check. Inputs reach it through its media upload (reused for 7 days,
§9.6). It bills the input audio's length, rounded up, at least 3 s (§9.5).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import IO

from django.conf import settings
from django.urls import reverse

from studio import catalog
from studio.media import images
from studio.providers import http, staging
from studio.providers.base import (
    GenerationRequest,
    InputFile,
    ListedTask,
    Progress,
    ProviderError,
    TaskResult,
    TaskState,
    Verdict,
)
from studio.providers.remote import RemoteProviderBase, required_key

from .catalog import S2V_MODEL
from .client import (
    DEFAULT_BASE_URL,
    ErrorKind,
    Prediction,
    PredictionPage,
    WaveSpeedClient,
    WaveSpeedError,
)
from .states import STATES, state_of

log = logging.getLogger(__name__)

# §9.6: uploads and predictions are deleted after 7 days. Reuse an upload only
# while it has a day left: a queued task may be sent late.
UPLOAD_VALID_FOR = timedelta(days=7)
UPLOAD_REUSE_MARGIN = timedelta(days=1)
# WaveSpeed's uploads are not bound to a model: one scope for all of them.
UPLOAD_SCOPE = "wavespeed-media"
# The studio's tiers in WaveSpeed's words (§9.2).
TIERS = {"480P": "480p", "720P": "720p"}
_STUDIO_TIERS = {word: tier for tier, word in TIERS.items()}
# The listing is read this many pages deep at most when looking for lost tasks.
LIST_PAGE_SIZE = 50
LIST_MAX_PAGES = 10
# A webhook secret is asked for again at most this often (it may be rotated),
# and not again for this long after asking failed.
SECRET_REFRESH = 600.0
SECRET_RETRY = 30.0


# What a failed task's text means (WaveSpeed's `error` is free text):
# (words to look for, code, plain message, retryable). First match wins.
_FAILURES: tuple[tuple[tuple[str, ...], str, str, bool], ...] = (
    (
        ("nsfw", "sensitive", "moderation", "inappropriate", "content policy"),
        "ContentRefused",
        "WaveSpeed's content check refused the input or the result. It was not "
        "charged (failed tasks are refunded). Use another portrait or audio clip.",
        False,
    ),
    (
        ("no face", "face not", "no human", "no person", "detect face"),
        "NoFace",
        "WaveSpeed found no usable face in the portrait. Use a clear photo of one "
        "person facing the camera.",
        False,
    ),
    (
        ("duration", "too long", "too short", "audio length"),
        "AudioLength",
        "WaveSpeed refused the audio's length. Use a clip between 1 s and the "
        "length the studio allows for this provider.",
        False,
    ),
    (
        (" format", "decode", "unsupported", "corrupt", "cannot open", "invalid image"),
        "InputUnreadable",
        "WaveSpeed could not read the portrait or the audio. Export them again as "
        "JPEG/PNG and WAV/MP3 and retry.",
        False,
    ),
    (
        (
            "download",
            "fetch",
            "timed out",
            "timeout",
            "internal",
            "server error",
            "unavailable",
            "busy",
            "try again",
            "out of memory",
            "oom",
        ),
        "ProviderTrouble",
        "WaveSpeed had trouble running this video. Failed tasks are not billed; "
        "the studio tries again.",
        True,
    ),
)
# A completed task whose output the content check flagged (`has_nsfw_contents`),
# by whether S2V_WAVESPEED_NSFW_BILLED counts it as billed (undocumented, §9.3).
FLAGGED_CHARGED = (
    "WaveSpeed's content check flagged this video as unsafe (NSFW) and withheld "
    "it. It was charged: WaveSpeed may bill such a task, so the studio counts it "
    "against the budget. Use another portrait or audio clip; if the flag looks "
    "wrong, an admin can dispute the charge with WaveSpeed by the task id."
)
FLAGGED_FREE = (
    "WaveSpeed's content check flagged this video as unsafe (NSFW) and withheld "
    "it. It was not charged. Use another portrait or audio clip."
)
FLAGGED_FREE_NOTE = (
    "Not billed: WaveSpeed's content check flagged the result, and "
    "S2V_WAVESPEED_NSFW_BILLED=false counts such tasks as free."
)
# §9.3 reports no billed length, and §9.5 bills the input's: known only for
# the studio's own jobs.
UNKNOWN_SECONDS_NOTE = (
    "WaveSpeed does not report the seconds it billed: it bills the input audio's "
    "length (rounded up, at least 3 s), which the studio knows only for its own "
    "jobs. Nothing was recorded; look the task up in WaveSpeed's usage and "
    "billing history (wavespeed.ai dashboard) and compare it with the ledger."
)
_ACCOUNT_MESSAGE = (
    "WaveSpeed refused the studio's account (HTTP {status}: {said}). Generation on "
    "WaveSpeed is paused until an admin fixes the API key or tops up the balance."
)


def failure(status: str, error: str) -> tuple[str, str, bool]:
    """(code, plain message, retryable) for a failed prediction."""
    text = error.lower()
    for words, code, message, retryable in _FAILURES:
        if any(word in text for word in words):
            return code, message, retryable
    if status in ("timeout", "cancelled", "canceled"):
        return (
            "Task" + status.capitalize(),
            f"WaveSpeed stopped the task ({status}). Failed tasks are not billed; "
            "the studio tries again.",
            True,
        )
    said = error.strip().rstrip(".") or "no reason given"
    return (
        "TaskFailed",
        f"WaveSpeed could not make this video ({said}). Check the portrait and the "
        "audio, then retry.",
        False,
    )


class WaveSpeedProvider(RemoteProviderBase):
    label = "WaveSpeed"
    states = STATES

    def __init__(
        self,
        *,
        name: str = "wavespeed",
        api_key: str | None = None,
        base_url: str | None = None,
        label: str | None = None,
        client: WaveSpeedClient | None = None,
        input_seconds: Callable[[str, str], float | None] | None = None,
    ) -> None:
        api_key = required_key(
            api_key,
            settings.WAVESPEED_API_KEY,
            f"The {name} provider needs WAVESPEED_API_KEY or WAVESPEED_API_KEY_FILE.",
        )
        super().__init__(name=name, label=label, api_key=api_key)
        self.client = client or WaveSpeedClient(
            api_key=api_key,
            base_url=base_url or settings.S2V_WAVESPEED_BASE_URL or DEFAULT_BASE_URL,
        )
        # How long a task's input audio was, by task id (see `_billed`).
        self._input_seconds = input_seconds or _job_audio_seconds
        self._secret = ""
        self._secret_at = 0.0
        self._secret_failed_at = -SECRET_RETRY
        self._lock = threading.Lock()

    # -- the face check: the studio's own (§9 documents no paid check) ---------------

    def check_portrait(self, image: InputFile, *, fresh: bool = False) -> Verdict:
        info = images.read_image_info(image.path)
        return images.precheck_image(info, self.limits) or images.check_face(image.path)

    # -- generation ---------------------------------------------------------------

    def start(self, request: GenerationRequest, progress: Progress) -> TaskResult:
        tier = TIERS.get(request.resolution)
        if tier is None:
            raise ProviderError(
                f"WaveSpeed makes 480P or 720P videos, not {request.resolution}.",
                code="resolution",
            )
        try:
            image_url = self.input_url(request.portrait)
            audio_url = self.input_url(request.audio)
        except WaveSpeedError as exc:
            raise self._provider_error(exc) from exc  # no task can exist yet
        if request.before_post is not None:
            request.before_post()
        try:
            prediction = self.client.submit(
                image_url=image_url,
                audio_url=audio_url,
                prompt=request.prompt,
                resolution=tier,
                seed=-1 if request.seed is None else request.seed,
                webhook=self.webhook_url(),
            )
        except WaveSpeedError as exc:
            error = self._provider_error(exc)
            error.unanswered = (
                exc.unanswered
            )  # a task may exist: see studio.queue.recovery
            raise error from exc
        result = self._result(prediction)
        if request.audio_seconds is not None:
            billed = self.billed_seconds(request.audio_seconds)
            result = _replace_billed(result, billed)
        return result

    def poll(self, task_id: str) -> TaskResult:
        try:
            prediction = self.client.result(task_id)
        except WaveSpeedError as exc:
            if exc.kind == ErrorKind.NOT_FOUND:
                # An id we sent that WaveSpeed no longer knows: deleted after 7 days.
                return TaskResult(
                    task_id=task_id,
                    state=TaskState.EXPIRED,
                    remote_status="deleted",
                    error_code="TaskExpired",
                    error_message="WaveSpeed no longer knows this task (predictions "
                    "are deleted after 7 days).",
                )
            raise self._provider_error(exc) from exc
        result = self._result(prediction)
        if result.state == TaskState.SUCCEEDED:
            seconds = self._input_seconds(self.name, task_id)
            if seconds is None:
                return replace(result, billing_note=UNKNOWN_SECONDS_NOTE)
            result = _replace_billed(result, self.billed_seconds(seconds))
        return result

    def cancel(self, task_id: str) -> bool:
        return False  # WaveSpeed documents no cancel

    def fetch(self, result: TaskResult, dest: IO[bytes]) -> None:
        if not result.video_url:
            # Only a billed flagged result succeeds without a video (`_result`):
            # the job fails, charged, with this message.
            raise ProviderError(FLAGGED_CHARGED, code="ContentFlagged", kind="withheld")
        try:
            self.client.download(
                result.video_url, dest, max_bytes=http.result_max_bytes()
            )
        except WaveSpeedError as exc:
            if exc.kind == ErrorKind.NOT_FOUND:
                raise ProviderError(
                    "WaveSpeed's result link expired before the video was saved.",
                    code="ResultExpired",
                ) from exc
            if exc.kind == ErrorKind.INPUT:
                raise ProviderError(
                    f"WaveSpeed returned something that is not a usable video ({exc.message})",
                    code="InvalidVideo",
                ) from exc
            raise self._provider_error(exc) from exc

    def listed_tasks(self, *, since: datetime) -> list[ListedTask]:
        """The account's speech-to-video predictions created since a moment, oldest first.

        Used after a crash between WaveSpeed accepting a task and its id being
        saved (§9.6: the predictions list finds it). Pages are read until the
        rest can only be older than `since` or the total is reached. Raises
        ProviderError when the listing fails, cannot be read, or is not read to
        its end within LIST_MAX_PAGES: a partial listing could miss the lost
        task, and the sweep would then post it a second time.
        """
        found: list[ListedTask] = []
        try:
            for page_no in range(1, LIST_MAX_PAGES + 1):
                page = self.client.list_predictions(
                    page=page_no, page_size=LIST_PAGE_SIZE
                )
                recent = [
                    p
                    for p in page.items
                    if p.created_at is None or p.created_at >= since
                ]
                found += [_listed(p) for p in recent if p.model in ("", S2V_MODEL)]
                if _last_page(page, since=since, page_no=page_no):
                    break
            else:
                raise ProviderError(
                    f"The predictions listing has more than {LIST_MAX_PAGES} pages "
                    f"since {since.astimezone(UTC):%Y-%m-%d %H:%M} UTC; read in "
                    "part, it could miss the task looked for.",
                    code="listing_incomplete",
                    permanent=False,
                )
        except WaveSpeedError as exc:
            raise ProviderError(
                f"The predictions listing failed ({exc.code}: {exc.message})",
                code=exc.code or "listing_failed",
                permanent=exc.permanent,
                kind=str(exc.kind),
            ) from exc
        unique = {task.task_id: task for task in found}
        return sorted(unique.values(), key=lambda t: t.submitted_at or since)

    # -- billing ------------------------------------------------------------------

    def billed_seconds(self, audio_seconds: float) -> Decimal:
        """§9.5: the input's length rounded up to whole seconds, at least 3 s."""
        return self.offer.billing.seconds(Decimal(str(audio_seconds)))

    # -- inputs -------------------------------------------------------------------

    def input_url(self, item: InputFile) -> str:
        """WaveSpeed's URL of an input: an earlier upload of the same bytes, or a new one."""
        return staging.uploaded(
            item,
            account=self.account,
            scope=UPLOAD_SCOPE,
            valid_for=UPLOAD_VALID_FOR,
            margin=UPLOAD_REUSE_MARGIN,
            upload=lambda: self.client.upload(
                path=item.path,
                filename=staging.upload_name(item),
                content_type=staging.content_type(item),
            ),
        )

    # -- webhooks -----------------------------------------------------------------

    def webhook_url(self) -> str | None:
        """Where WaveSpeed calls back when a task ends: only with a public base URL."""
        base: str = settings.S2V_PUBLIC_BASE_URL
        if not base:
            return None
        return base.rstrip("/") + reverse("studio:wavespeed-webhook")

    def webhook_secret(self, *, refresh: bool = False) -> str:
        """The account's signing secret, asked for once and kept.

        `refresh` asks again (a secret may have been rotated), at most every
        SECRET_REFRESH seconds. Raises ProviderError when it cannot be had.
        """
        with self._lock:
            now = time.monotonic()
            stale = refresh and now - self._secret_at >= SECRET_REFRESH
            if self._secret and not stale:
                return self._secret
            if not self._secret and now - self._secret_failed_at < SECRET_RETRY:
                raise ProviderError(
                    "WaveSpeed's webhook secret could not be fetched just now.",
                    code="webhook_secret",
                    permanent=False,
                )
            try:
                self._secret = self.client.webhook_secret()
            except WaveSpeedError as exc:
                self._secret_failed_at = now
                if self._secret:
                    return self._secret
                raise self._provider_error(exc) from exc
            self._secret_at = now
            return self._secret

    # -- mapping ------------------------------------------------------------------

    def _result(self, prediction: Prediction) -> TaskResult:
        state = state_of(prediction.status)
        code = message = ""
        retryable = False
        video_url = ""
        note = ""
        if state == TaskState.SUCCEEDED:
            if prediction.nsfw and self._flagged_billed():
                # Billed, so the task stays SUCCEEDED (its seconds are charged);
                # without a video, `fetch` fails the job and says why.
                code, message = "ContentFlagged", FLAGGED_CHARGED
            elif prediction.nsfw:
                state, code, message = TaskState.FAILED, "ContentRefused", FLAGGED_FREE
                note = FLAGGED_FREE_NOTE
            elif not prediction.outputs:
                # WaveSpeed withholds a flagged output: read as the content check.
                state, code = TaskState.FAILED, "NoOutput"
                message = (
                    "WaveSpeed finished without a video: its content check most "
                    "likely refused the input or the result. It was not charged. "
                    "Use another portrait or audio clip."
                )
            else:
                video_url = prediction.outputs[0]
        elif state == TaskState.EXPIRED:
            code = "TaskExpired"
            message = (
                "WaveSpeed no longer knows this task (predictions are deleted after "
                "7 days)."
            )
        elif state == TaskState.FAILED:
            code, message, retryable = failure(prediction.status, prediction.error)
        return TaskResult(
            task_id=prediction.id,
            state=state,
            video_url=video_url,
            remote_status=prediction.status,
            run_seconds=prediction.inference_ms / 1000
            if state == TaskState.SUCCEEDED and prediction.inference_ms
            else None,
            error_code=code,
            error_message=message,
            retryable=retryable,
            resolution=_STUDIO_TIERS.get(prediction.resolution, ""),
            billing_note=note,
        )

    def _flagged_billed(self) -> bool:
        """S2V_WAVESPEED_NSFW_BILLED, read through the catalog when asked."""
        return catalog.offer(self.name, catalog.S2V).billing.flagged_billed

    def _provider_error(self, exc: WaveSpeedError) -> ProviderError:
        said = exc.message.strip().rstrip(".") or "no message"
        if exc.kind == ErrorKind.ACCOUNT:
            message = _ACCOUNT_MESSAGE.format(status=exc.status, said=said)
        elif exc.kind == ErrorKind.INPUT:
            message = (
                f"WaveSpeed refused the input ({said}). Check the portrait and the "
                "audio and try again."
            )
        elif exc.kind in (ErrorKind.CLIENT, ErrorKind.NOT_FOUND):
            message = (
                f"The studio sent WaveSpeed a request it refused (HTTP {exc.status}: "
                f"{said}). Tell an admin."
            )
        else:
            message = "WaveSpeed is busy or unreachable; the studio keeps retrying."
        return ProviderError(
            message,
            code=exc.code,
            permanent=exc.permanent,
            kind="client" if exc.kind == ErrorKind.NOT_FOUND else str(exc.kind),
            retry_after=exc.retry_after,
        )


def _last_page(page: PredictionPage, *, since: datetime, page_no: int) -> bool:
    """Whether later pages can hold nothing created since `since`.

    The listing's order is undocumented: when a page runs newest first, one
    task older than `since` means the later pages are older still.
    """
    if not page.items or len(page.items) < page.page_size:
        return True
    if page.total is not None and page_no * page.page_size >= page.total:
        return True
    dated = [p.created_at for p in page.items if p.created_at is not None]
    newest_first = len(dated) < 2 or dated[0] >= dated[-1]
    return newest_first and any(moment < since for moment in dated)


def _listed(prediction: Prediction) -> ListedTask:
    return ListedTask(
        task_id=prediction.id,
        status=prediction.status,
        state=state_of(prediction.status),
        model=prediction.model,
        submitted_at=prediction.created_at,
    )


def _replace_billed(result: TaskResult, billed: Decimal) -> TaskResult:
    return replace(result, billed_seconds=billed)


def _job_audio_seconds(provider_name: str, task_id: str) -> float | None:
    """The input audio's length of the job that holds a task id, if the studio has it."""
    from studio.models import GenerationJob

    seconds = (
        GenerationJob.objects.filter(provider=provider_name, remote_task_id=task_id)
        .values_list("audio__duration", flat=True)
        .first()
    )
    return float(seconds) if seconds is not None else None
