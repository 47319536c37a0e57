"""Injected faults of the WaveSpeed emulator: what the control API and `--fault` queue.

A fault has a kind, a count (None = until cleared) and optional filters on
route, path and API key. Request faults are taken by matching requests in
the order they were queued; task and webhook faults by the next submitted
predictions (of that key, when `key` is set).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from studio.emulators import fault_queue

# Route names, as the server classifies requests.
ROUTES = ("submit", "result", "list", "upload", "secret", "media")

# Kinds that act on a request before (or instead of) its normal answer.
REQUEST_KINDS = ("throttle", "server_error", "drop", "slow")
# Kinds taken by the next submitted prediction(s).
TASK_KINDS = ("fail_task", "nsfw")
WEBHOOK_KINDS = (
    "webhook_duplicate",
    "webhook_late",
    "webhook_bad_signature",
    "webhook_drop",
)
KINDS = (*REQUEST_KINDS, *TASK_KINDS, *WEBHOOK_KINDS, "expire_results")

# kind -> default count; None means until cleared.
_COUNTS: dict[str, int | None] = dict.fromkeys(KINDS, 1) | {"expire_results": None}
_STATUS = {"throttle": 429, "server_error": 500}
DEFAULT_MESSAGES = {
    "throttle": "Too Many Requests",
    "server_error": "Internal server error",
    "fail_task": "Task failed: the model could not generate the video",
    "nsfw": "NSFW content detected in the output",
}
_FIELDS = {
    "kind",
    "count",
    "route",
    "path",
    "key",
    "status",
    "message",
    "delay_ms",
    "when",
    "retry_after",
    "mode",
}


@dataclass
class Fault:
    id: int
    kind: str
    remaining: int | None
    route: tuple[str, ...] = ()  # empty: every route the kind applies to
    path: str | None = None  # fnmatch pattern on the request path
    key: str | None = None
    status: int = 0
    message: str = ""
    delay_ms: int = 1000
    when: str = "before"  # drop: before handling, or after (the work is done)
    retry_after: int = 1  # throttle: the Retry-After header, seconds
    mode: str = "completed"  # nsfw: completed without outputs, or failed
    hits: int = 0

    @property
    def owner(self) -> str | None:
        return self.key

    def matches(self, route: str, path: str, key: str | None) -> bool:
        if self.route and route not in self.route:
            return False
        if self.path is not None and not fnmatch.fnmatchcase(path, self.path):
            return False
        return self.key is None or self.key == key

    def take(self) -> None:
        self.hits += 1
        if self.remaining is not None:
            self.remaining -= 1

    @property
    def spent(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "count": self.remaining,
            "hits": self.hits,
            "route": ",".join(self.route) or "*",
            "path": self.path,
            "key": self.key,
        }
        if self.kind in ("throttle", "server_error"):
            data.update(status=self.status, message=self.message)
        if self.kind == "throttle":
            data["retry_after"] = self.retry_after
        if self.kind in ("fail_task", "nsfw"):
            data["message"] = self.message
        if self.kind == "nsfw":
            data["mode"] = self.mode
        if self.kind in ("slow", "webhook_late"):
            data["delay_ms"] = self.delay_ms
        if self.kind == "drop":
            data["when"] = self.when
        return data


def build(spec: Mapping[str, Any], fault_id: int) -> Fault:
    """A Fault from its JSON form; raise ValueError when the spec is wrong."""
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    unknown = set(spec) - _FIELDS
    if unknown:
        raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
    count = spec.get("count", _COUNTS[kind])
    if count in ("*", "inf", -1):
        count = None
    if count is not None and (not isinstance(count, int) or count < 1):
        raise ValueError("count must be a positive integer or null (until cleared)")
    status = spec.get("status")
    if status is not None and (not isinstance(status, int) or not 400 <= status < 600):
        raise ValueError("status must be an HTTP error status")
    when = spec.get("when", "before")
    if when not in ("before", "after"):
        raise ValueError("when must be 'before' or 'after'")
    mode = spec.get("mode", "completed")
    if mode not in ("completed", "failed"):
        raise ValueError("mode must be 'completed' or 'failed'")
    delay = spec.get("delay_ms", 1000)
    if not isinstance(delay, int | float) or delay < 0:
        raise ValueError("delay_ms must be a non-negative number")
    retry_after = spec.get("retry_after", 1)
    if not isinstance(retry_after, int) or retry_after < 0:
        raise ValueError("retry_after must be a non-negative integer")
    path = spec.get("path")
    key = spec.get("key")
    return Fault(
        id=fault_id,
        kind=kind,
        remaining=count,
        route=_routes(spec.get("route") or "*"),
        path=str(path) if path else None,
        key=str(key) if key else None,
        status=int(status or _STATUS.get(kind, 0)),
        message=str(spec.get("message") or DEFAULT_MESSAGES.get(kind, "")),
        delay_ms=int(delay),
        when=when,
        retry_after=retry_after,
        mode=mode,
    )


def _routes(route: object) -> tuple[str, ...]:
    names = route if isinstance(route, list | tuple) else str(route).split(",")
    picked = tuple(str(n).strip() for n in names if str(n).strip() not in ("", "*"))
    for name in picked:
        if name not in ROUTES:
            raise ValueError(f"route must be '*' or among {', '.join(ROUTES)}")
    return picked


def parse_flag(text: str) -> dict[str, Any]:
    """`--fault` syntax: JSON, or KIND[:COUNT[:ROUTE]][,key=value...].

    COUNT may be empty or `*` for "until cleared", e.g. `throttle:3:submit`,
    `server_error:2,status=503`, `drop:1:submit,when=after`, `expire_results`.
    """
    return fault_queue.parse_flag(text, numeric=("status", "delay_ms", "retry_after"))
