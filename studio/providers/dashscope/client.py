"""HTTP client for DashScope's s2v, animate and EMO models, their checks and temp upload.

The only module that knows DashScope's JSON. Every request goes through
`_send`, which turns responses and transport errors into `DashScopeError`s
classified by what the caller should do (provider-api.md §6).
"""

from __future__ import annotations

import enum
import math
import mimetypes
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import httpx

from studio.providers import http
from studio.providers.base import ListedTask, TaskState

DETECT_MODEL = "wan2.2-s2v-detect"
S2V_MODEL = "wan2.2-s2v"
# provider-api.md §7: one request schema for both; move animates the character
# with the reference video's moves, mix puts the character into that video.
ANIMATE_MOVE_MODEL = "wan2.2-animate-move"
ANIMATE_MIX_MODEL = "wan2.2-animate-mix"
ANIMATE_MODELS = (ANIMATE_MOVE_MODEL, ANIMATE_MIX_MODEL)
# §7.1 parameters.mode, and the word usage.video_ratio answers with for it (§7.2).
ANIMATE_STANDARD = "wan-std"
ANIMATE_PRO = "wan-pro"
ANIMATE_SERVICE_MODES = {ANIMATE_STANDARD: "standard", ANIMATE_PRO: "pro"}
# provider-api.md §8: EMO's check and its model. The check answers with the two
# boxes the model needs; usage.video_ratio is then an aspect ratio.
EMO_DETECT_MODEL = "emo-detect-v1"
EMO_MODEL = "emo-v1"
EMO_RATIOS = ("1:1", "3:4")  # head shot (the default), half body
EMO_STYLE_LEVELS = ("normal", "calm", "active")
DEFAULT_BASE_URL = "https://dashscope.aliyuncs.com/api/v1"
# DashScope timestamps are UTC+8 without an offset (provider-api.md §1.6).
PROVIDER_TZ = timezone(timedelta(hours=8))
# The task listing searches at most 24 h of creation times (provider-api.md §1.2a).
LIST_WINDOW = timedelta(hours=24)


class ErrorKind(enum.StrEnum):
    TRANSIENT = "transient"  # throttling, 5xx, timeouts, resets: retry with backoff
    INPUT = "input"  # this job's inputs are refused: fail the job, say why
    ACCOUNT = "account"  # key, billing or access: pause dispatching, tell admins
    CLIENT = "client"  # the request itself is wrong: a bug or a misconfiguration


# Codes whose meaning is about the account, not the job (provider-api.md §6).
_ACCOUNT_CODES = {
    "InvalidApiKey",
    "NOT AUTHORIZED",
    "Arrearage",
    "AccessDenied.Unpurchased",
    "Model.AccessDenied",
    "Workspace.AccessDenied",
    "AllocationQuota.FreeTierOnly",
    "Throttling.AllocationQuota",
    "PrepaidBillOverdue",
    "PostpaidBillOverdue",
    "CommodityNotPurchased",
    "ModelNotFound",
    "model_not_found",
}
_INPUT_PREFIXES = (
    "InvalidParameter",
    "InvalidURL",
    "InvalidFile",
    "InvalidImage",
    "DataInspectionFailed",
    "data_inspection_failed",
    "IPInfringementSuspect",
    "invalid_parameter_error",
)
_TRANSIENT_CODES = {"Throttling", "Throttling.RateQuota", "Throttling.BurstRate"}


def classify(code: str, message: str = "", status: int | None = None) -> ErrorKind:
    """What a DashScope error code means for the caller."""
    if code in _ACCOUNT_CODES:
        return ErrorKind.ACCOUNT
    if code == "AccessDenied":
        lowered = message.lower()
        if "synchronous calls" in lowered or "asynchronous calls" in lowered:
            return ErrorKind.CLIENT  # the async header is wrong: our bug
        if "policy expired" in lowered:
            return ErrorKind.TRANSIENT  # ask for a new upload policy
        return ErrorKind.ACCOUNT
    if code in _TRANSIENT_CODES or code.startswith(("InternalError", "SystemError")):
        return ErrorKind.TRANSIENT
    if code in ("ModelServingError", "ModelUnavailable", "Unknown"):
        return ErrorKind.TRANSIENT
    if code.startswith(_INPUT_PREFIXES) or code.startswith("BadRequest"):
        return ErrorKind.CLIENT if code.startswith("BadRequest") else ErrorKind.INPUT
    if status is not None and (status == 429 or status >= 500):
        return ErrorKind.TRANSIENT
    return ErrorKind.CLIENT


class DashScopeError(http.CallError):
    """A failed call. The API key never appears in the message."""

    kind: ErrorKind

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        kind: ErrorKind = ErrorKind.TRANSIENT,
        status: int | None = None,
        request_id: str = "",
        unanswered: bool = False,
    ) -> None:
        super().__init__(message, kind=kind, status=status, unanswered=unanswered)
        self.code = code
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class DetectResult:
    check_pass: bool
    humanoid: bool | None
    code: str
    message: str
    request_id: str


# [x1, y1, x2, y2] in image pixels, as emo-detect-v1 answers and emo-v1 takes (§8).
BBox = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class EmoDetectResult:
    check_pass: bool
    face_bbox: BBox | None  # the face
    ext_bbox: BBox | None  # the region that moves, in the requested ratio
    code: str
    message: str
    request_id: str


@dataclass(frozen=True, slots=True)
class RemoteTask:
    task_id: str
    status: str  # PENDING RUNNING SUCCEEDED FAILED CANCELED UNKNOWN (SUSPENDED)
    video_url: str = ""
    billed_seconds: Decimal | None = None
    code: str = ""
    message: str = ""
    # The provider's own clock (§1.6): when it took the task, started running
    # it and finished it. None when absent or unreadable.
    submitted_at: datetime | None = None
    scheduled_at: datetime | None = None
    ended_at: datetime | None = None
    resolution: str = ""  # "480P" or "720P", from usage.SR (§3.2)
    # Animate's service mode, "standard" or "pro", from usage.video_ratio (§7.2):
    # despite its name that field is not an aspect ratio.
    service_mode: str = ""
    # EMO's aspect ratio, "1:1" or "3:4", from the same usage.video_ratio (§8.2).
    aspect_ratio: str = ""

    def failure(self) -> DashScopeError | None:
        """A FAILED task's code as an error classified like a refused request (§6):
        moderation (DataInspectionFailed, IPInfringementSuspect) is the input's fault."""
        if self.status != "FAILED":
            return None
        code = self.code or "Unknown"
        return DashScopeError(
            self.message or code, code=code, kind=classify(code, self.message)
        )


# The provider's task words (§1.6) as the studio's states. UNKNOWN is a task
# id the provider no longer knows: ids live 24 h, so it has expired.
STATES = {
    "PENDING": TaskState.PENDING,
    "SUSPENDED": TaskState.PENDING,
    "RUNNING": TaskState.RUNNING,
    "SUCCEEDED": TaskState.SUCCEEDED,
    "FAILED": TaskState.FAILED,
    "CANCELED": TaskState.CANCELED,
    "UNKNOWN": TaskState.EXPIRED,
}


def state_of(word: str) -> TaskState:
    """The studio's state for a provider word; a word it does not know is a failure."""
    return STATES.get(word, TaskState.FAILED)


@dataclass(frozen=True, slots=True)
class UploadPolicy:
    model: str
    fields: dict[str, str]
    upload_dir: str
    upload_host: str
    max_file_bytes: int
    expires_at: datetime


class DashScopeClient:
    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        workspace: str = "",
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        if workspace:
            headers["X-DashScope-WorkSpace"] = workspace
        self._options: dict[str, Any] = {
            "base_url": base_url.rstrip("/"),
            "headers": headers,
            "timeout": http.timeout(timeout),
        }
        self._transport = transport
        self._client = httpx.Client(**self._options, transport=transport)
        # Uploads go to another host and must not carry the API key (§5.2).
        self._plain = http.plain_client(transport)

    def close(self) -> None:
        self._client.close()
        self._plain.close()

    # -- endpoints ------------------------------------------------------------

    def detect(self, *, image_url: str, fresh: bool = False) -> DetectResult:
        """The portrait check. `fresh` sends it on a new connection, for a retry."""
        data, output = self._face_detect(DETECT_MODEL, image_url, {}, fresh=fresh)
        return DetectResult(
            check_pass=bool(output.get("check_pass")),
            humanoid=output.get("humanoid"),
            code=str(output.get("code") or ""),
            message=str(output.get("message") or ""),
            request_id=str(data.get("request_id", "")),
        )

    def detect_emo(
        self, image_url: str, *, ratio: str, fresh: bool = False
    ) -> EmoDetectResult:
        """EMO's check (§8.1): whether the image suits emo-v1 at `ratio` ("1:1"
        head shot, "3:4" half body), with the face and the region to animate."""
        if ratio not in EMO_RATIOS:
            raise ValueError(f"{ratio!r} is not an EMO ratio")
        data, output = self._face_detect(
            EMO_DETECT_MODEL, image_url, {"ratio": ratio}, fresh=fresh
        )
        return EmoDetectResult(
            check_pass=bool(output.get("check_pass")),
            face_bbox=_bbox(output.get("face_bbox")),
            ext_bbox=_bbox(output.get("ext_bbox")),
            code=str(output.get("code") or ""),
            message=str(output.get("message") or ""),
            request_id=str(data.get("request_id", "")),
        )

    def _face_detect(
        self, model: str, image_url: str, parameters: dict[str, str], *, fresh: bool
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        # provider-api.md §2 and §8.1: synchronous, so no X-DashScope-Async header.
        data = self._send(
            "POST",
            "/services/aigc/image2video/face-detect",
            fresh=fresh,
            json={
                "model": model,
                "input": {"image_url": image_url},
                "parameters": parameters,
            },
            headers=_oss_header(image_url),
        )
        return data, _output(data)

    def submit(
        self, *, image_url: str, audio_url: str, resolution: str, style: str = ""
    ) -> RemoteTask:
        # provider-api.md §3.1.
        parameters: dict[str, str] = {"resolution": resolution}
        if style:
            parameters["style"] = style  # seen once in the docs (§3.1): opt-in
        return self._submit_task(
            {
                "model": S2V_MODEL,
                "input": {"image_url": image_url, "audio_url": audio_url},
                "parameters": parameters,
            },
            image_url,
            audio_url,
        )

    def submit_animate(
        self,
        image_url: str,
        video_url: str,
        *,
        model: str,
        mode: str,
        check_image: bool = True,
        watermark: bool = False,
    ) -> RemoteTask:
        """A wan2.2-animate-move or -mix task (§7.1): a character image and a
        reference video. `mode` is wan-std or wan-pro; `watermark` goes in `input`."""
        if model not in ANIMATE_MODELS:
            raise ValueError(f"{model!r} is not an animate model")
        if mode not in ANIMATE_SERVICE_MODES:
            raise ValueError(f"{mode!r} is not an animate mode")
        return self._submit_task(
            {
                "model": model,
                "input": {
                    "image_url": image_url,
                    "video_url": video_url,
                    "watermark": watermark,
                },
                "parameters": {"mode": mode, "check_image": check_image},
            },
            image_url,
            video_url,
        )

    def submit_emo(
        self,
        image_url: str,
        audio_url: str,
        *,
        face_bbox: BBox,
        ext_bbox: BBox,
        style_level: str = "normal",
    ) -> RemoteTask:
        """An emo-v1 task (§8.2): the image that passed emo-detect-v1, its two
        boxes as the check gave them, and the audio (wav/mp3, < 15 MB, < 60 s)."""
        if style_level not in EMO_STYLE_LEVELS:
            raise ValueError(f"{style_level!r} is not an EMO style level")
        return self._submit_task(
            {
                "model": EMO_MODEL,
                "input": {
                    "image_url": image_url,
                    "audio_url": audio_url,
                    "face_bbox": list(face_bbox),
                    "ext_bbox": list(ext_bbox),
                },
                "parameters": {"style_level": style_level},
            },
            image_url,
            audio_url,
        )

    def _submit_task(self, body: dict[str, Any], *urls: str) -> RemoteTask:
        # §1.2 video-synthesis. Without X-DashScope-Async the API answers 403.
        data = self._send(
            "POST",
            "/services/aigc/image2video/video-synthesis",
            json=body,
            headers={"X-DashScope-Async": "enable", **_oss_header(*urls)},
        )
        try:
            return _parse_task(data)
        except DashScopeError as exc:
            exc.unanswered = True  # a 200 without a task id: a task may exist
            raise

    def get_task(self, task_id: str) -> RemoteTask:
        # provider-api.md §1.6 / §3.2.
        return _parse_task(self._send("GET", f"/tasks/{task_id}"))

    def cancel(self, task_id: str) -> None:
        # provider-api.md §1.2: only a PENDING task can be canceled.
        self._send("POST", f"/tasks/{task_id}/cancel")

    def list_tasks(
        self,
        *,
        start: datetime,
        end: datetime,
        model: str = S2V_MODEL,
        page_size: int = 50,
        max_pages: int = 20,
    ) -> list[ListedTask]:
        """The account's tasks created between `start` and `end`, newest first.

        provider-api.md §1.2a: rows under a top-level `data`, not task objects.
        The window is at most 24 h, so a longer one is cut to its last 24 h.
        Raises DashScopeError, also when the answer cannot be read.
        """
        start = max(start, end - LIST_WINDOW)
        params = {
            "page_size": str(page_size),
            "model_name": model,
            "start_time": start.astimezone(PROVIDER_TZ).strftime("%Y%m%d%H%M%S"),
            "end_time": end.astimezone(PROVIDER_TZ).strftime("%Y%m%d%H%M%S"),
        }
        rows: list[ListedTask] = []
        page_no = 1
        while True:
            data = self._send("GET", "/tasks", params={**params, "page_no": page_no})
            page = data.get("data")
            if not isinstance(page, list):
                raise DashScopeError(
                    "The task listing had no `data` list.", kind=ErrorKind.TRANSIENT
                )
            rows += [_parse_listed(row) for row in page]
            total_pages = data.get("total_page")
            if (
                not page
                or not isinstance(total_pages, int)
                or page_no >= min(total_pages, max_pages)
            ):
                return rows
            page_no += 1

    def upload_policy(self, *, model: str) -> UploadPolicy:
        # provider-api.md §5.1: fields come under `data`, not `output`.
        data = self._send(
            "GET", "/uploads", params={"action": "getPolicy", "model": model}
        )
        policy = data.get("data")
        if not isinstance(policy, dict):
            raise DashScopeError(
                "The upload policy answer had no data.", kind=ErrorKind.TRANSIENT
            )
        try:
            fields = {
                "OSSAccessKeyId": str(policy["oss_access_key_id"]),
                "Signature": str(policy["signature"]),
                "policy": str(policy["policy"]),
                "x-oss-object-acl": str(policy["x_oss_object_acl"]),
                "x-oss-forbid-overwrite": str(policy["x_oss_forbid_overwrite"]),
                "success_action_status": "200",
            }
            expires = float(policy.get("expire_in_seconds") or 300)
            max_mb = float(policy.get("max_file_size_mb") or 100)
            return UploadPolicy(
                model=model,
                fields=fields,
                upload_dir=str(policy["upload_dir"]),
                upload_host=str(policy["upload_host"]),
                max_file_bytes=int(max_mb * 1024 * 1024),
                # Leave a margin: a policy used at its last second fails the POST.
                expires_at=_now() + timedelta(seconds=max(expires - 30, 1)),
            )
        except (KeyError, ValueError) as exc:
            raise DashScopeError(
                f"The upload policy lacked {exc}.", kind=ErrorKind.TRANSIENT
            ) from exc

    def upload(self, *, policy: UploadPolicy, path: Path, name: str = "") -> str:
        """Upload a file under a policy (§5.2) and return its oss:// URL (§5.3)."""
        filename = name or f"{uuid.uuid4().hex}{path.suffix.lower()}"
        key = f"{policy.upload_dir}/{filename}"
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        data = {**policy.fields, "key": key, "x-oss-content-type": content_type}
        with path.open("rb") as fh:
            # httpx writes data fields before files, so `file` is last as OSS requires.
            try:
                response = self._plain.post(
                    policy.upload_host,
                    data=data,
                    files={"file": (filename, fh, content_type)},
                )
            except httpx.TransportError as exc:
                raise DashScopeError(
                    f"Upload to the provider failed: {type(exc).__name__}.",
                    kind=ErrorKind.TRANSIENT,
                ) from exc
        if response.status_code != 200:
            code = "AccessDenied" if response.status_code == 403 else "UploadFailed"
            kind = ErrorKind.TRANSIENT
            if response.status_code == 400 and "EntityTooLarge" in response.text:
                kind, code = ErrorKind.INPUT, "InvalidFile.Size"
            raise DashScopeError(
                f"Upload refused (HTTP {response.status_code}).",
                code=code,
                kind=kind,
                status=response.status_code,
            )
        return f"oss://{key}"

    def download(self, url: str, dest: IO[bytes], *, max_bytes: int) -> str:
        """Stream a result into `dest`; returns its content type. No API key is sent."""
        try:
            return http.download(self._plain, url, dest, max_bytes=max_bytes)
        except http.DownloadFailed as exc:
            match exc.reason:
                case "gone":
                    code, kind = "ResultExpired", ErrorKind.INPUT
                case "not_video" | "too_large":
                    code, kind = "InvalidVideo", ErrorKind.INPUT
                case _:
                    code, kind = "", ErrorKind.TRANSIENT
            raise DashScopeError(
                exc.message, code=code, kind=kind, status=exc.status
            ) from exc.__cause__ or exc

    # -- the one place that sends ------------------------------------------------

    def _send(
        self, method: str, path: str, *, fresh: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        try:
            if fresh:
                # Not the pool, whose kept-alive connections may be the dead ones.
                client = httpx.Client(**self._options, transport=self._transport)
                try:
                    response = client.request(method, path, **kwargs)
                finally:
                    if self._transport is None:  # an injected one is shared
                        client.close()
            else:
                response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise DashScopeError.transport(method, path, exc) from exc
        data = http.json_object(response)
        if response.status_code in (200, 201):
            if not data:
                # The provider did what was asked; only its answer is unreadable.
                raise DashScopeError(
                    f"{method} {path}: the answer was not JSON.",
                    kind=ErrorKind.TRANSIENT,
                    status=response.status_code,
                    unanswered=True,
                )
            return data
        code = str(data.get("code") or "Unknown")
        message = str(data.get("message") or data.get("msg") or response.reason_phrase)
        raise DashScopeError(
            message,
            code=code,
            kind=classify(code, message, response.status_code),
            status=response.status_code,
            request_id=str(data.get("request_id", "")),
            # Only a 4xx (429 included) proves the request was refused; a 5xx
            # may come from a gateway after the service made the task.
            unanswered=response.status_code >= 500,
        )


def _oss_header(*urls: str) -> dict[str, str]:
    # §5.4: oss:// inputs resolve only with this header.
    if any(url.startswith("oss://") for url in urls):
        return {"X-DashScope-OssResourceResolve": "enable"}
    return {}


def _output(data: dict[str, Any]) -> dict[str, Any]:
    output = data.get("output")
    if not isinstance(output, dict):
        raise DashScopeError("The answer had no output.", kind=ErrorKind.TRANSIENT)
    return output


def _parse_task(data: dict[str, Any]) -> RemoteTask:
    output = _output(data)
    task_id = str(output.get("task_id") or "")
    status = str(output.get("task_status") or "")
    if not task_id or not status:
        raise DashScopeError("The task answer lacked task_id or task_status.")
    usage = data["usage"] if isinstance(data.get("usage"), dict) else {}
    # The docs name the billed seconds both ways (§3.2): prefer `duration`.
    # Animate and EMO have only `video_duration` (§7.2, §8.2).
    seconds = usage.get("duration", usage.get("video_duration"))
    results = output["results"] if isinstance(output.get("results"), dict) else {}
    tier = usage.get("SR")
    ratio = usage.get("video_ratio")
    return RemoteTask(
        task_id=task_id,
        status=status,
        video_url=str(results.get("video_url") or output.get("video_url") or ""),
        billed_seconds=_seconds(seconds),
        code=str(output.get("code") or ""),
        message=str(output.get("message") or ""),
        submitted_at=parse_time(output.get("submit_time")),
        scheduled_at=parse_time(output.get("scheduled_time")),
        ended_at=parse_time(output.get("end_time")),
        resolution=f"{tier}P" if isinstance(tier, int) and tier > 0 else "",
        # One field, two meanings: animate's service mode (§7.2), EMO's aspect
        # ratio (§8.2). Each is read only from its own words.
        service_mode=str(ratio) if ratio in ANIMATE_SERVICE_MODES.values() else "",
        aspect_ratio=str(ratio) if ratio in EMO_RATIOS else "",
    )


def _bbox(value: object) -> BBox | None:
    """A box of four whole pixel numbers (§8.1); None when absent or malformed."""
    if not isinstance(value, list | tuple) or len(value) != 4:
        return None
    numbers: list[int] = []
    for n in value:
        if (
            isinstance(n, bool)
            or not isinstance(n, int | float)
            or not math.isfinite(n)
        ):
            return None
        numbers.append(round(n))
    x1, y1, x2, y2 = numbers
    return (x1, y1, x2, y2) if x1 < x2 and y1 < y2 else None


def _parse_listed(row: object) -> ListedTask:
    if not isinstance(row, dict):
        raise DashScopeError("A task listing row was not an object.")
    task_id = row.get("task_id")
    status = row.get("status")
    if not isinstance(task_id, str) or not task_id or not isinstance(status, str):
        raise DashScopeError("A task listing row lacked task_id or status.")
    word = status.strip().upper()
    return ListedTask(
        task_id=task_id,
        status=word,
        state=state_of(word),
        model=str(row.get("model_name") or ""),
        submitted_at=_parse_millis(row.get("gmt_create")),
        scheduled_at=_parse_millis(row.get("start_time")),
        ended_at=_parse_millis(row.get("end_time")),
    )


def _parse_millis(value: object) -> datetime | None:
    """An epoch-millisecond time of the listing (§1.2a); None when absent."""
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        millis = float(value)  # type: ignore[arg-type]
        return datetime.fromtimestamp(millis / 1000, tz=UTC) if millis > 0 else None
    except (TypeError, ValueError, OverflowError, OSError):
        raise DashScopeError(f"A task listing time was {value!r}.") from None


def _seconds(value: object) -> Decimal | None:
    """Billed seconds as a Decimal; None when absent or not a finite number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        seconds = Decimal(str(value))
    except ArithmeticError:
        return None
    return seconds if seconds.is_finite() and seconds >= 0 else None


def parse_time(value: object) -> datetime | None:
    """A task time (§1.6, `YYYY-MM-DD HH:mm:ss.SSS` in UTC+8, no offset) as an aware
    datetime; None when absent or unreadable."""
    return http.parse_time(value, PROVIDER_TZ)


def _now() -> datetime:
    return datetime.now(tz=UTC)
