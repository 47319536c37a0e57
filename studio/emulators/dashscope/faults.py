"""Injected faults: what the control API and `--fault` flags queue (§6 codes).

A fault has a kind, a count (None = until cleared) and optional filters on
route, path and account. Request faults are taken by matching requests in
the order they were queued; task faults by the next submitted tasks.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from studio.emulators import fault_queue

from . import errors

# Route names, as the server classifies requests.
ROUTES = ("detect", "submit", "task", "cancel", "list", "policy", "upload", "result")
API_ROUTES = ("detect", "submit", "task", "cancel", "list", "policy")

# Kinds that act on a request before (or instead of) its normal answer.
REQUEST_KINDS = ("throttle", "server_error", "drop", "slow")
# Kinds taken by the next submitted task(s).
TASK_KINDS = ("fail_task", "moderation")
KINDS = (
    *REQUEST_KINDS,
    *TASK_KINDS,
    "expire_results",
    "account_error",
    "unknown_task",
)

# kind -> (default count, default code); None count means until cleared.
_DEFAULTS: dict[str, tuple[int | None, str]] = {
    "throttle": (1, "Throttling.RateQuota"),
    "server_error": (1, "InternalError"),
    "drop": (1, ""),
    "slow": (1, ""),
    "fail_task": (1, "InternalError"),
    "moderation": (1, "DataInspectionFailed"),
    "expire_results": (None, "AccessDenied"),
    "account_error": (None, "Arrearage"),
    "unknown_task": (1, ""),
}


@dataclass
class Fault:
    id: int
    kind: str
    remaining: int | None
    route: tuple[str, ...] = ()  # empty: every route the kind applies to
    path: str | None = None  # fnmatch pattern on the request path
    account: str | None = None
    status: int = 0
    code: str = ""
    message: str = ""
    delay_ms: int = 1000
    when: str = "before"  # drop: before handling, or after (the work is done)
    hits: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def owner(self) -> str | None:
        return self.account

    def matches(self, route: str, path: str, account: str | None) -> bool:
        if self.route and route not in self.route:
            return False
        if self.path is not None and not fnmatch.fnmatchcase(path, self.path):
            return False
        return self.account is None or self.account == account

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
            "account": self.account,
        }
        if self.kind in ("throttle", "server_error", "account_error", *TASK_KINDS):
            data.update(status=self.status, code=self.code, message=self.message)
        if self.kind == "slow":
            data["delay_ms"] = self.delay_ms
        if self.kind == "drop":
            data["when"] = self.when
        return data


def build(spec: Mapping[str, Any], fault_id: int) -> Fault:
    """A Fault from its JSON form; raise ValueError when the spec is wrong."""
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    unknown = set(spec) - {
        "kind",
        "count",
        "route",
        "path",
        "account",
        "status",
        "code",
        "message",
        "delay_ms",
        "when",
    }
    if unknown:
        raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
    default_count, default_code = _DEFAULTS[kind]
    count = spec.get("count", default_count)
    if count in ("*", "inf", -1):
        count = None
    if count is not None and (not isinstance(count, int) or count < 1):
        raise ValueError("count must be a positive integer or null (until cleared)")
    route = spec.get("route") or "*"
    routes = _routes(route)
    code = str(spec.get("code") or default_code)
    status = spec.get("status")
    if status is not None and (not isinstance(status, int) or not 100 <= status < 600):
        raise ValueError("status must be an HTTP status code")
    if kind == "server_error" and status == 503 and not spec.get("code"):
        code = "ModelUnavailable"
    if kind == "account_error" and status is None:
        status = errors.known_status(code, 400)
    when = spec.get("when", "before")
    if when not in ("before", "after"):
        raise ValueError("when must be 'before' or 'after'")
    delay = spec.get("delay_ms", 1000)
    if not isinstance(delay, int | float) or delay < 0:
        raise ValueError("delay_ms must be a non-negative number")
    path = spec.get("path")
    account = spec.get("account")
    return Fault(
        id=fault_id,
        kind=kind,
        remaining=count,
        route=routes,
        path=str(path) if path else None,
        account=str(account) if account else None,
        status=int(status or errors.known_status(code, _status_for(kind))),
        code=code,
        message=str(spec.get("message") or errors.known_message(code, code)),
        delay_ms=int(delay),
        when=when,
    )


def _status_for(kind: str) -> int:
    return {"throttle": 429, "server_error": 500}.get(kind, 400)


def _routes(route: object) -> tuple[str, ...]:
    names = route if isinstance(route, list | tuple) else str(route).split(",")
    picked = tuple(str(n).strip() for n in names if str(n).strip() not in ("", "*"))
    for name in picked:
        if name not in ROUTES:
            raise ValueError(f"route must be '*' or among {', '.join(ROUTES)}")
    return picked


def parse_flag(text: str) -> dict[str, Any]:
    """`--fault` syntax: JSON, or KIND[:COUNT[:ROUTE]][,key=value...].

    COUNT may be empty or `*` for "until cleared", e.g. `throttle:3`,
    `server_error:2:submit,status=503`, `account_error:*,code=Arrearage`.
    """
    return fault_queue.parse_flag(text, numeric=("status", "delay_ms"))
