"""Injected faults: what the control API and `--fault` flags queue (§6 codes).

A fault has a kind, a count (None = until cleared) and optional filters on
route, path and account. Request faults are taken by matching requests in
the order they were queued; task faults by the next submitted tasks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from studio.emulators import fault_queue

from . import errors

# Route names, as the server classifies requests.
ROUTES = ("detect", "submit", "task", "cancel", "list", "policy", "upload", "result")
API_ROUTES = ("detect", "submit", "task", "cancel", "list", "policy")

REQUEST_KINDS = fault_queue.REQUEST_KINDS
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


_FIELDS = (*fault_queue.FIELDS, "account", "code")


@dataclass
class Fault(fault_queue.BaseFault):
    owner_field: ClassVar[str] = "account"

    account: str | None = None
    code: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        if self.kind in ("throttle", "server_error", "account_error", *TASK_KINDS):
            data.update(status=self.status, code=self.code, message=self.message)
        if self.kind == "slow":
            data["delay_ms"] = self.delay_ms
        if self.kind == "drop":
            data["when"] = self.when
        return data


def build(spec: Mapping[str, Any], fault_id: int) -> Fault:
    """A Fault from its JSON form; raise ValueError when the spec is wrong."""
    kind = fault_queue.check_kind(spec, KINDS, _FIELDS)
    default_count, default_code = _DEFAULTS[kind]
    shared = fault_queue.base_fields(
        spec, kind, default_count=default_count, routes=ROUTES
    )
    code = str(spec.get("code") or default_code)
    status = spec.get("status")
    if status is not None and (not isinstance(status, int) or not 100 <= status < 600):
        raise ValueError("status must be an HTTP status code")
    if kind == "server_error" and status == 503 and not spec.get("code"):
        code = "ModelUnavailable"
    if kind == "account_error" and status is None:
        status = errors.known_status(code, 400)
    return Fault(
        id=fault_id,
        **shared,
        account=fault_queue.optional_text(spec, "account"),
        status=int(status or errors.known_status(code, _status_for(kind))),
        code=code,
        message=str(spec.get("message") or errors.known_message(code, code)),
    )


def _status_for(kind: str) -> int:
    return {"throttle": 429, "server_error": 500}.get(kind, 400)


def parse_flag(text: str) -> dict[str, Any]:
    """`--fault` syntax: JSON, or KIND[:COUNT[:ROUTE]][,key=value...].

    COUNT may be empty or `*` for "until cleared", e.g. `throttle:3`,
    `server_error:2:submit,status=503`, `account_error:*,code=Arrearage`.
    """
    return fault_queue.parse_flag(text, numeric=("status", "delay_ms"))
