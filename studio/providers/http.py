"""HTTP plumbing every remote provider shares; no vendor's words or JSON here.

Each vendor's client turns a `DownloadFailed` into its own error, with its own
classification; this module only says what went wrong.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import IO, Any, Literal, Self

import httpx
from django.conf import settings

# The content types a result video may come back as.
VIDEO_TYPES = ("video/", "application/octet-stream", "binary/")
CHUNK = 1024 * 1024

# Every call connects within this; what follows has the caller's own bound.
CONNECT_SECONDS = 5.0
# Uploads and result downloads move whole files.
TRANSFER_SECONDS = 120.0

Reason = Literal["gone", "status", "not_video", "too_large", "transport"]

# Transport errors raised before any byte of the request left: nothing happened.
NEVER_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)


class CallError(Exception):
    """A failed call to a vendor's API; each client subclasses it with its own
    `kind`s (a StrEnum whose "transient" ones are worth retrying)."""

    def __init__(
        self,
        message: str,
        *,
        kind: str = "transient",
        status: int | None = None,
        unanswered: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.status = status
        # The request may have reached the provider, but no answer came back:
        # whatever it asked for may have happened (and been billed).
        self.unanswered = unanswered

    @property
    def permanent(self) -> bool:
        return self.kind != "transient"

    @classmethod
    def transport(cls, method: str, path: str, exc: httpx.TransportError) -> Self:
        """Timeouts, refused or dropped connections: transient, and unanswered
        unless the request never left."""
        return cls(
            f"{method} {path}: {type(exc).__name__}",
            unanswered=not isinstance(exc, NEVER_SENT),
        )


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object; empty when it is not JSON or not an object."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def parse_time(value: object, default_tz: tzinfo) -> datetime | None:
    """An ISO-8601 time as an aware datetime, in `default_tz` when it has no
    offset; None when absent or unreadable, since timing is only ever a hint."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    # A time that does carry an offset (or "Z") is taken at its word.
    return moment if moment.tzinfo else moment.replace(tzinfo=default_tz)


def timeout(seconds: float) -> httpx.Timeout:
    """`seconds` for reading and writing, a short bound for connecting."""
    return httpx.Timeout(seconds, connect=CONNECT_SECONDS)


def plain_client(
    transport: httpx.BaseTransport | None = None, *, follow_redirects: bool = False
) -> httpx.Client:
    """A client that carries no API key: for other hosts (storage, result CDNs)."""
    return httpx.Client(
        timeout=timeout(TRANSFER_SECONDS),
        transport=transport,
        follow_redirects=follow_redirects,
    )


def result_max_bytes() -> int:
    """The largest result video the studio saves (S2V_RESULT_MAX_MB)."""
    return int(settings.S2V_RESULT_MAX_MB) * 1024 * 1024


class DownloadFailed(Exception):
    """A result download that did not finish, and why."""

    def __init__(self, message: str, *, reason: Reason, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.status = status


def download(client: httpx.Client, url: str, dest: IO[bytes], *, max_bytes: int) -> str:
    """Stream a result into `dest`, at most `max_bytes`; returns its content type.

    `client` should carry no credentials: result links are signed on their own.
    """
    try:
        with client.stream("GET", url) as response:
            if response.status_code in (401, 403, 404, 410):
                raise DownloadFailed(
                    "The result link has expired or is gone.",
                    reason="gone",
                    status=response.status_code,
                )
            if response.status_code != 200:
                raise DownloadFailed(
                    f"Result download answered HTTP {response.status_code}.",
                    reason="status",
                    status=response.status_code,
                )
            content_type: str = (
                response.headers.get("content-type", "").split(";")[0].strip()
            )
            if content_type and not content_type.startswith(VIDEO_TYPES):
                raise DownloadFailed(
                    f"The result is {content_type}, not a video.", reason="not_video"
                )
            received = 0
            for chunk in response.iter_bytes(CHUNK):
                received += len(chunk)
                if received > max_bytes:
                    raise DownloadFailed(
                        f"The result is larger than {max_bytes // 1048576} MB.",
                        reason="too_large",
                    )
                dest.write(chunk)
            return content_type
    except httpx.TransportError as exc:
        raise DownloadFailed(
            f"Result download failed: {type(exc).__name__}.", reason="transport"
        ) from exc
