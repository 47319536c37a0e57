"""HTTP client for WaveSpeedAI's wan-2.2 speech-to-video and animate, uploads, predictions.

The only module that knows WaveSpeed's JSON (provider-api.md §9). Every API
request goes through `_send`, which unwraps the `{code, message, data}`
envelope and turns error answers and transport errors into `WaveSpeedError`s
classified by what the caller should do. The API key is sent only to the API
base URL and never appears in a message.
"""

from __future__ import annotations

import email.utils
import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx

from studio.providers import http

from .catalog import ANIMATE_MODEL, ANIMATE_MODES, ANIMATE_RESOLUTIONS, S2V_MODEL

DEFAULT_BASE_URL = "https://api.wavespeed.ai"
CLIENT_NAME = "s2v-studio"
# A GET answered 429/5xx is asked again at once when the wait it is told is at
# most this long (the SDK retries result GETs, §9.3); longer waits are the
# caller's, through `retry_after`. A submit is never sent twice (§9.6).
MAX_INLINE_WAIT = 5.0
GET_RETRIES = 2

_RETRY_STATUSES = (429, 500, 502, 503, 504)


class ErrorKind(enum.StrEnum):
    TRANSIENT = "transient"  # throttling, 5xx, timeouts, resets: retry with backoff
    INPUT = "input"  # this job's inputs are refused: fail the job, say why
    ACCOUNT = "account"  # key, balance or access: pause dispatching, tell admins
    CLIENT = "client"  # the request itself is wrong: a bug or a misconfiguration
    NOT_FOUND = "not_found"  # WaveSpeed does not know the id (deleted after 7 days)


def classify(status: int) -> ErrorKind:
    """What an HTTP error status from WaveSpeed means for the caller (§9.1, §9.5)."""
    if status in (401, 402, 403):
        return ErrorKind.ACCOUNT
    if status == 429 or status >= 500 or status in (408, 409):
        return ErrorKind.TRANSIENT
    if status == 404:
        return ErrorKind.NOT_FOUND
    if status in (400, 413, 415, 422):
        return ErrorKind.INPUT
    return ErrorKind.CLIENT


class WaveSpeedError(http.CallError):
    """A failed call. The API key never appears in the message."""

    kind: ErrorKind

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind = ErrorKind.TRANSIENT,
        status: int | None = None,
        retry_after: float | None = None,
        unanswered: bool = False,
    ) -> None:
        super().__init__(message, kind=kind, status=status, unanswered=unanswered)
        # Seconds the provider asked us to wait (Retry-After), when it said.
        self.retry_after = retry_after

    @property
    def code(self) -> str:
        return f"http_{self.status}" if self.status else str(self.kind)


@dataclass(frozen=True, slots=True)
class Prediction:
    """One prediction (task) as WaveSpeed reports it (§9.2, §9.3)."""

    id: str
    status: str  # created processing completed failed (cancelled timeout deleted)
    model: str = ""
    outputs: tuple[str, ...] = ()
    has_nsfw_contents: tuple[bool, ...] = ()
    created_at: datetime | None = None
    error: str = ""
    inference_ms: int | None = None
    get_url: str = ""
    # The submitted body's `resolution` ("480p"), when the answer echoes `input`.
    resolution: str = ""
    # The submitted body's animate `mode` (animate | replace), likewise.
    mode: str = ""

    @property
    def nsfw(self) -> bool:
        return any(self.has_nsfw_contents)


@dataclass(frozen=True, slots=True)
class PredictionPage:
    items: list[Prediction]
    page: int
    page_size: int
    total: int | None  # None when the answer did not say


class WaveSpeedClient:
    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "X-Client-Name": CLIENT_NAME,
            },
            timeout=http.timeout(timeout),
            transport=transport,
        )
        # Results live on a CDN: they must not carry the API key.
        self._plain = http.plain_client(transport, follow_redirects=True)
        self._sleep = sleep

    def close(self) -> None:
        self._client.close()
        self._plain.close()

    # -- endpoints ------------------------------------------------------------

    def submit(
        self,
        *,
        image_url: str,
        audio_url: str,
        prompt: str = "",
        resolution: str = "480p",
        seed: int = -1,
        webhook: str | None = None,
    ) -> Prediction:
        """POST a speech-to-video task (§9.2): a flat body; `?webhook=` when given (§9.6).

        Never sent twice: a dropped connection, a read timeout, a 5xx or an
        answer without an id raise with `unanswered` set, since the task may exist.
        """
        return self._submit(
            S2V_MODEL,
            {
                "image": image_url,
                "audio": audio_url,
                "prompt": prompt,
                "resolution": resolution,
                "seed": seed,
            },
            webhook,
        )

    def submit_animate(
        self,
        image_url: str,
        video_url: str,
        *,
        mode: str,
        resolution: str,
        prompt: str = "",
        seed: int | None = None,
        webhook: str | None = None,
    ) -> Prediction:
        """POST a wan-2.2-animate task (§9.6): a character image and a reference
        video; `mode` animate or replace. Sent once, as `submit` is."""
        if mode not in ANIMATE_MODES.values():
            raise ValueError(f"{mode!r} is not an animate mode")
        if resolution not in ANIMATE_RESOLUTIONS:
            raise ValueError(f"{resolution!r} is not an animate resolution")
        body: dict[str, Any] = {
            "image": image_url,
            "video": video_url,
            "mode": mode,
            "prompt": prompt,
            "resolution": resolution,
        }
        if seed is not None:
            body["seed"] = seed
        return self._submit(ANIMATE_MODEL, body, webhook)

    def _submit(
        self, model: str, body: dict[str, Any], webhook: str | None
    ) -> Prediction:
        # §9.2: the SDK posts the flat input to /api/v3/{model}.
        params = {"webhook": webhook} if webhook else None
        data = self._send("POST", f"/api/v3/{model}", json=body, params=params)
        try:
            return parse_prediction(data)
        except WaveSpeedError as exc:
            exc.unanswered = True  # a 200 without an id: a task may exist
            raise

    def result(self, prediction_id: str) -> Prediction:
        """GET a prediction's state and outputs (§9.3)."""
        return parse_prediction(
            self._send("GET", f"/api/v3/predictions/{prediction_id}/result")
        )

    def upload(self, *, path: Path, filename: str, content_type: str) -> str:
        """Upload a local file (§9.4, binary multipart `file`); returns its download URL."""
        with path.open("rb") as fh:
            data = self._send(
                "POST",
                "/api/v3/media/upload/binary",
                files={"file": (filename, fh, content_type)},
                timeout=http.timeout(http.TRANSFER_SECONDS),
            )
        url = data.get("download_url") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url:
            raise WaveSpeedError("The upload answer had no download_url.")
        return url

    def list_predictions(self, *, page: int = 1, page_size: int = 50) -> PredictionPage:
        """One page of the account's recent predictions (§9.6), as listed."""
        data = self._send(
            "GET",
            "/api/v3/predictions",
            params={"page": page, "page_size": page_size},
        )
        total: int | None = None
        if isinstance(data, list):
            rows: object = data
        elif isinstance(data, dict):
            rows = data.get("items")
            total = _int(data.get("total"))
            page = _int(data.get("page")) or page
            page_size = _int(data.get("page_size")) or page_size
        else:
            rows = None
        if not isinstance(rows, list):
            raise WaveSpeedError("The predictions listing had no list of items.")
        return PredictionPage(
            items=[parse_prediction(row) for row in rows],
            page=page,
            page_size=page_size,
            total=total,
        )

    def webhook_secret(self) -> str:
        """The account's webhook signing secret, "whsec_..." (§9.6)."""
        data = self._send("GET", "/api/v3/webhook/secret")
        secret = data.get("secret") if isinstance(data, dict) else None
        if not isinstance(secret, str) or not secret:
            raise WaveSpeedError("The webhook secret answer had no secret.")
        return secret

    def download(self, url: str, dest: IO[bytes], *, max_bytes: int) -> str:
        """Stream a result into `dest`; returns its content type. No API key is sent."""
        try:
            return http.download(self._plain, url, dest, max_bytes=max_bytes)
        except http.DownloadFailed as exc:
            match exc.reason:
                case "gone":
                    kind = ErrorKind.NOT_FOUND
                case "not_video" | "too_large":
                    kind = ErrorKind.INPUT
                case _:
                    kind = ErrorKind.TRANSIENT
            raise WaveSpeedError(exc.message, kind=kind, status=exc.status) from (
                exc.__cause__ or exc
            )

    # -- the one place that sends ------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        """The envelope's `data` (a dict, or a list for some listings)."""
        attempts = 1 + (GET_RETRIES if method == "GET" else 0)
        for attempt in range(attempts):
            try:
                return self._send_once(method, path, **kwargs)
            except WaveSpeedError as exc:
                if (
                    attempt + 1 >= attempts
                    or exc.status not in _RETRY_STATUSES
                    or (exc.retry_after or 0.0) > MAX_INLINE_WAIT
                ):
                    raise
                self._sleep(exc.retry_after or 0.5 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _send_once(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise WaveSpeedError.transport(method, path, exc) from exc
        body = http.json_object(response)
        status = response.status_code
        # The envelope's code is HTTP-like (§9.2); a 200 carrying an error code
        # is read as that error.
        code = _int(body.get("code"))
        if status == 200 and code is not None and code != 200:
            status = code
        if status in (200, 201):
            if "data" not in body:
                # The provider did what was asked; only its answer is unreadable.
                raise WaveSpeedError(
                    f"{method} {path}: the answer had no data.",
                    status=None,
                    unanswered=True,
                )
            return body["data"]
        message = str(body.get("message") or body.get("error") or "").strip()
        kind = classify(status)
        if kind == ErrorKind.NOT_FOUND and not body:
            # Not WaveSpeed's answer (no envelope): a wrong base URL or path.
            kind = ErrorKind.CLIENT
        raise WaveSpeedError(
            message or response.reason_phrase or f"HTTP {status}",
            kind=kind,
            status=status,
            retry_after=_retry_after(response.headers.get("retry-after")),
            # Only a 4xx (429 included) proves the request was refused; a 5xx
            # may come from a gateway after the service made the task.
            unanswered=status >= 500,
        )


def parse_prediction(data: object) -> Prediction:
    """A prediction object (inside the envelope's `data`, or a webhook's body)."""
    if not isinstance(data, dict):
        raise WaveSpeedError("The answer had no prediction object.")
    prediction_id = data.get("id")
    status = data.get("status")
    if not isinstance(prediction_id, str) or not prediction_id:
        raise WaveSpeedError("The prediction had no id.")
    if not isinstance(status, str) or not status:
        raise WaveSpeedError("The prediction had no status.")
    outputs = data.get("outputs")
    nsfw = data.get("has_nsfw_contents")
    urls = data.get("urls")
    timings = data.get("timings")
    error = data.get("error")
    sent = data.get("input")
    sent = sent if isinstance(sent, dict) else {}
    tier = sent.get("resolution")
    mode = sent.get("mode")
    return Prediction(
        id=prediction_id,
        status=status.strip().lower(),
        model=str(data.get("model") or ""),
        outputs=tuple(o for o in outputs if isinstance(o, str) and o)
        if isinstance(outputs, list)
        else (),
        has_nsfw_contents=tuple(bool(n) for n in nsfw)
        if isinstance(nsfw, list)
        else ((nsfw,) if isinstance(nsfw, bool) else ()),
        created_at=parse_time(data.get("created_at")),
        error=error.strip() if isinstance(error, str) else "",
        inference_ms=_int(timings.get("inference"))
        if isinstance(timings, dict)
        else None,
        get_url=str(urls.get("get") or "") if isinstance(urls, dict) else "",
        resolution=tier.strip().lower() if isinstance(tier, str) else "",
        mode=mode.strip().lower() if isinstance(mode, str) else "",
    )


def parse_time(value: object) -> datetime | None:
    """An ISO-8601 time ("2026-11-29T12:00:00.123Z") as an aware datetime; None if unreadable."""
    return http.parse_time(value, UTC)


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(tz=UTC)).total_seconds(), 0.0)


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
