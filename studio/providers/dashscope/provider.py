"""The DashScope provider: wan2.2-s2v-detect and wan2.2-s2v behind the provider interface."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import IO

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from studio.providers import http, staging
from studio.providers.base import (
    GenerationRequest,
    InputFile,
    ListedTask,
    Progress,
    ProviderError,
    Reason,
    TaskResult,
    TaskState,
    Verdict,
)
from studio.providers.remote import RemoteProviderBase, required_key

from .client import (
    ANIMATE_MODELS,
    DETECT_MODEL,
    S2V_MODEL,
    STATES,
    DashScopeClient,
    DashScopeError,
    ErrorKind,
    RemoteTask,
    UploadPolicy,
    state_of,
)

UPLOAD_VALID_FOR = timedelta(hours=48)  # §5.4
# Reuse an upload only while it has this long left: a task may start late.
UPLOAD_REUSE_MARGIN = timedelta(hours=6)

# What each failure means for the person who made the video (provider-api.md §6).
_MESSAGES = {
    "InvalidFile.NoHuman": "The provider found no person in the portrait. Use a photo of one person facing the camera.",
    "InvalidImage.NoHumanFace": "The provider found no face in the portrait. Use a clear, frontal photo of one person.",
    "InvalidFile.MultiHuman": "The provider found more than one person. Use a photo of a single person.",
    "InvalidFile.Content": "The provider found more than one person. Use a photo of a single person.",
    "InvalidFile.BodyProportion": "The person fills too much or too little of the picture. Use a head-and-shoulders photo where the face is clearly visible.",
    "InvalidFile.FacePose": "The face is turned away or partly hidden. Use a photo looking at the camera with the whole face visible.",
    "InvalidFile.FullFace": "Part of the face is hidden or cut off. Use a photo with the whole face visible.",
    "InvalidFile.FrontBody": "The person is not facing the camera. Use a frontal photo.",
    "InvalidFile.Value": "The portrait is too dark or unclear. Use a brighter, sharper photo.",
    "InvalidFile.Resolution": "Each side of the portrait must be between 400 and 7000 px. Use a larger or smaller photo.",
    "InvalidFile.Size": "The file is too large for the provider. Use a smaller file (audio smaller than 15 MB).",
    "InvalidFile.Duration": "The audio is too long or too short for the provider. Use a clip shorter than 20 s.",
    "InvalidFile.Format": "The provider does not accept this file format. Use JPEG, PNG, BMP or WebP portraits and WAV or MP3 audio.",
    "InvalidFile.Openerror": "The provider could not open the file. Export it again and retry.",
    "DataInspectionFailed": "The provider's content check refused the input or the result. Use another portrait or audio clip.",
    "data_inspection_failed": "The provider's content check refused the input or the result. Use another portrait or audio clip.",
    "IPInfringementSuspect": "The provider suspects the portrait or audio infringes someone's rights (for example a celebrity or a copyrighted character). Use material you own.",
    "InvalidParameter.DataInspection": "The provider could not read the input file. Upload it again; if it keeps failing, re-export it as JPEG/PNG and WAV/MP3.",
    "ResultExpired": "The provider's result link expired before the video was saved.",
    "InvalidVideo": "The provider returned something that is not a playable video.",
}
# Animate takes a character image and a reference video (§7.1): its own limits,
# and no audio to blame.
_ANIMATE_MESSAGES = {
    "DataInspectionFailed": "The provider's content check refused the input or the result. Use another character image or reference video.",
    "data_inspection_failed": "The provider's content check refused the input or the result. Use another character image or reference video.",
    "IPInfringementSuspect": "The provider suspects the character image or reference video infringes someone's rights (for example a celebrity or a copyrighted character). Use material you own.",
    "InvalidFile.Resolution": "Each side of the character image must be 200 to 4096 px, and of the reference video 200 to 2048 px.",
    "InvalidFile.Size": "The file is too large for the provider: the character image must be at most 5 MB, the reference video at most 200 MB.",
    "InvalidFile.Duration": "The reference video must be 2 to 30 seconds long.",
    "InvalidFile.AspectRatio": "The picture is too tall or too wide: keep the image and video between 1:3 and 3:1.",
    "InvalidFile.Format": "The provider does not accept this file format. Use a JPEG, PNG, BMP or WebP image and an MP4, MOV or AVI video.",
}
_REASONS = {
    "InvalidFile.NoHuman": Reason.NO_FACE,
    "InvalidImage.NoHumanFace": Reason.NO_FACE,
    "InvalidFile.MultiHuman": Reason.MULTIPLE_FACES,
    "InvalidFile.Content": Reason.MULTIPLE_FACES,
    "InvalidFile.BodyProportion": Reason.FACE_TOO_SMALL,
    "InvalidFile.FacePose": Reason.FACE_POSE,
    "InvalidFile.FullFace": Reason.FACE_POSE,
    "InvalidFile.FrontBody": Reason.FACE_POSE,
    "InvalidFile.Value": Reason.BLURRY,
    "InvalidFile.Resolution": Reason.TOO_SMALL,
    "InvalidFile.AspectRatio": Reason.ASPECT,
    "InvalidFile.Format": Reason.FORMAT,
    "InvalidFile.Openerror": Reason.NOT_IMAGE,
}
_ACCOUNT_MESSAGE = (
    "The provider refused the studio's account ({code}: {message}). Generation is "
    "paused until an admin fixes the API key, billing or model access."
)


# Full-width punctuation the provider mixes into English messages (§6).
_FULL_WIDTH = str.maketrans(
    {"，": ", ", "。": ". ", "！": "! ", "？": "? ", "；": "; ", "：": ": "}
)


def tidy(message: str) -> str:
    """A provider message fit to show: single spaces, no "20s.." or " ." (§6 texts)."""
    text = message.translate(_FULL_WIDTH)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r" ([.!?,;:])", r"\1", text)
    return re.sub(r"([.!?,;:])[.!?,;:]+", r"\1", text)


def _clause(message: str) -> str:
    """A tidied message to embed in a sentence: without its closing punctuation."""
    return tidy(message).rstrip(".!?,;: ")


def user_message(code: str, message: str, *, model: str = S2V_MODEL) -> str:
    """A plain-words message for a provider failure, keeping its own words when useful."""
    if model in ANIMATE_MODELS and code in _ANIMATE_MESSAGES:
        return _ANIMATE_MESSAGES[code]
    if code in _MESSAGES:
        return _MESSAGES[code]
    said = _clause(message)
    inputs = (
        "character image and reference video"
        if model in ANIMATE_MODELS
        else "portrait and audio"
    )
    for prefix in ("InvalidFile", "InvalidURL", "InvalidParameter"):
        if code.startswith(prefix):
            return f"The provider refused the input: {said or code}. Check the {inputs} and try again."
    if code.startswith(
        ("InternalError", "SystemError", "ModelServingError", "ModelUnavailable")
    ):
        return "The provider had an internal error. The video was not billed; retry it."
    return f"The provider could not make this video ({code or 'no code'}: {said or 'no message'})."


class DashScopeProvider(RemoteProviderBase):
    label = "Alibaba wan2.2-s2v"
    states = STATES

    def __init__(
        self,
        *,
        name: str = "dashscope",
        api_key: str | None = None,
        base_url: str | None = None,
        input_urls: str | None = None,
        label: str | None = None,
    ) -> None:
        api_key = required_key(
            api_key,
            settings.DASHSCOPE_API_KEY,
            "S2V_PROVIDER=dashscope needs DASHSCOPE_API_KEY or DASHSCOPE_API_KEY_FILE.",
        )
        self.input_urls = input_urls or settings.S2V_INPUT_URLS
        if self.input_urls not in ("upload", "storage", "public"):
            raise ImproperlyConfigured(
                f"S2V_INPUT_URLS={self.input_urls!r}: use upload, storage or public"
            )
        if self.input_urls == "public" and not settings.S2V_PUBLIC_BASE_URL:
            raise ImproperlyConfigured(
                "S2V_INPUT_URLS=public needs S2V_PUBLIC_BASE_URL."
            )
        super().__init__(name=name, label=label, api_key=api_key)
        self.client = DashScopeClient(
            api_key=api_key,
            base_url=base_url or settings.S2V_DASHSCOPE_BASE_URL,
            workspace=settings.S2V_DASHSCOPE_WORKSPACE,
        )
        self._policies: dict[str, UploadPolicy] = {}

    # -- the face check -----------------------------------------------------------

    def check_portrait(self, image: InputFile, *, fresh: bool = False) -> Verdict:
        try:
            result = self.client.detect(
                image_url=self.input_url(image, model=DETECT_MODEL), fresh=fresh
            )
        except DashScopeError as exc:
            raise self._provider_error(exc) from exc
        if result.check_pass:
            return Verdict(check_pass=True, humanoid=True)
        reason = _REASONS.get(result.code)
        if result.humanoid is False and reason is None:
            reason = Reason.NO_FACE
        message = _MESSAGES.get(result.code) or (
            "The provider's check did not pass this portrait"
            + (f" ({_clause(result.message)})" if _clause(result.message) else "")
            + ". Use a clear, well-lit photo of a single person facing the camera, "
            "with the face a good part of the picture."
        )
        return Verdict(
            check_pass=False,
            humanoid=bool(result.humanoid),
            reason=reason or Reason.REJECTED,
            message=message,
        )

    # -- generation ---------------------------------------------------------------

    def start(self, request: GenerationRequest, progress: Progress) -> TaskResult:
        try:
            image_url = self.input_url(request.portrait, model=S2V_MODEL)
            audio_url = self.input_url(request.audio, model=S2V_MODEL)
        except DashScopeError as exc:
            raise self._provider_error(exc) from exc  # no task can exist yet
        if request.before_post is not None:
            request.before_post()
        try:
            task = self.client.submit(
                image_url=image_url,
                audio_url=audio_url,
                resolution=request.resolution,
                style=settings.S2V_DASHSCOPE_STYLE,
            )
        except DashScopeError as exc:
            error = self._provider_error(exc)
            error.unanswered = (
                exc.unanswered
            )  # a task may exist: see studio.queue.recovery
            raise error from exc
        return self._result(task)

    def poll(self, task_id: str) -> TaskResult:
        try:
            return self._result(self.client.get_task(task_id))
        except DashScopeError as exc:
            raise self._provider_error(exc) from exc

    def cancel(self, task_id: str) -> bool:
        try:
            self.client.cancel(task_id)
        except DashScopeError as exc:
            if exc.kind == ErrorKind.TRANSIENT:
                raise self._provider_error(exc) from exc
            return False
        return True

    def fetch(self, result: TaskResult, dest: IO[bytes]) -> None:
        try:
            self.client.download(
                result.video_url, dest, max_bytes=http.result_max_bytes()
            )
        except DashScopeError as exc:
            raise self._provider_error(exc) from exc

    def listed_tasks(self, *, since: datetime) -> list[ListedTask]:
        """The account's s2v tasks created since a moment, oldest first.

        Used after a crash between the provider accepting a task and the id being
        saved: the listing (provider-api.md §1.2a) finds it by creation time and
        model; the queue tells it apart by elimination of the ids it saved.
        Raises ProviderError when the listing fails or cannot be read.
        """
        try:
            tasks = self.client.list_tasks(
                start=since, end=timezone.now() + timedelta(minutes=1)
            )
        except DashScopeError as exc:
            raise ProviderError(
                f"The task listing failed ({exc.code or exc.kind}: {exc.message})",
                code=exc.code or "listing_failed",
                permanent=exc.permanent,
                kind=str(exc.kind),
            ) from exc
        return sorted(
            (t for t in tasks if t.model in ("", S2V_MODEL)),
            key=lambda t: t.submitted_at or since,
        )

    # -- inputs -------------------------------------------------------------------

    def input_url(self, item: InputFile, *, model: str) -> str:
        """A URL the provider can fetch for one input, per S2V_INPUT_URLS."""
        if self.input_urls == "upload":
            return self._uploaded(item, model=model)
        return staging.linked_url(item, mode=self.input_urls)

    def _uploaded(self, item: InputFile, *, model: str) -> str:
        # Temporary uploads are bound to the account and the model (§5.4).
        def upload() -> str:
            policy = self._policies.get(model)
            if policy is None or policy.expires_at <= timezone.now():
                policy = self._policies[model] = self.client.upload_policy(model=model)
            return self.client.upload(
                policy=policy, path=item.path, name=staging.upload_name(item)
            )

        return staging.uploaded(
            item,
            account=self.account,
            scope=model,
            valid_for=UPLOAD_VALID_FOR,
            margin=UPLOAD_REUSE_MARGIN,
            upload=upload,
        )

    # -- mapping ------------------------------------------------------------------

    def _result(self, task: RemoteTask) -> TaskResult:
        # The queue still treats an expired task as failed; it keeps
        # the provider's UNKNOWN in remote_status and says why below.
        state = state_of(task.status)
        if state == TaskState.EXPIRED:
            state = TaskState.FAILED
        code, message = task.code, task.message
        if task.status == "UNKNOWN":
            # Task ids live 24 h (§1.6): an UNKNOWN task has expired.
            code = "TaskExpired"
            message = (
                "The provider no longer knows this task (task ids expire after 24 h)."
            )
        elif state == TaskState.FAILED:
            message = user_message(code, message)
        return TaskResult(
            task_id=task.task_id,
            state=state,
            remote_status=task.status,
            video_url=task.video_url,
            billed_seconds=task.billed_seconds,
            scheduled_at=task.scheduled_at,
            ended_at=task.ended_at,
            resolution=task.resolution,
            error_code=code,
            error_message=message,
            retryable=state == TaskState.FAILED
            and code.startswith(
                (
                    "InternalError",
                    "SystemError",
                    "ModelServingError",
                    "ModelUnavailable",
                )
            ),
        )

    def _provider_error(self, exc: DashScopeError) -> ProviderError:
        if exc.kind == ErrorKind.ACCOUNT:
            message = _ACCOUNT_MESSAGE.format(
                code=exc.code, message=_clause(exc.message)
            )
        elif exc.kind == ErrorKind.INPUT:
            message = user_message(exc.code, exc.message)
        elif exc.kind == ErrorKind.CLIENT:
            message = f"The studio sent the provider a request it refused ({exc.code}: {_clause(exc.message)}). Tell an admin."
        else:
            message = "The provider is busy or unreachable; the studio keeps retrying."
        return ProviderError(
            message,
            code=exc.code or exc.kind,
            permanent=exc.permanent,
            kind=str(exc.kind),
        )
