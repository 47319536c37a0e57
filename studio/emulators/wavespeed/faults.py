"""Injected faults of the WaveSpeed emulator: what the control API and `--fault` queue.

A fault has a kind, a count (None = until cleared) and optional filters on
route, path and API key. Request faults are taken by matching requests in
the order they were queued; task and webhook faults by the next submitted
predictions (of that key, when `key` is set).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from studio.emulators import fault_queue

# Route names, as the server classifies requests.
ROUTES = ("submit", "result", "list", "upload", "secret", "media")

REQUEST_KINDS = fault_queue.REQUEST_KINDS
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
_FIELDS = (*fault_queue.FIELDS, "key", "retry_after", "mode")


@dataclass
class Fault(fault_queue.BaseFault):
    owner_field: ClassVar[str] = "key"

    key: str | None = None
    retry_after: int = 1  # throttle: the Retry-After header, seconds
    mode: str = "completed"  # nsfw: completed without outputs, or failed

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
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
    kind = fault_queue.check_kind(spec, KINDS, _FIELDS)
    shared = fault_queue.base_fields(
        spec, kind, default_count=_COUNTS[kind], routes=ROUTES
    )
    status = spec.get("status")
    if status is not None and (not isinstance(status, int) or not 400 <= status < 600):
        raise ValueError("status must be an HTTP error status")
    mode = spec.get("mode", "completed")
    if mode not in ("completed", "failed"):
        raise ValueError("mode must be 'completed' or 'failed'")
    retry_after = spec.get("retry_after", 1)
    if not isinstance(retry_after, int) or retry_after < 0:
        raise ValueError("retry_after must be a non-negative integer")
    return Fault(
        id=fault_id,
        **shared,
        key=fault_queue.optional_text(spec, "key"),
        status=int(status or _STATUS.get(kind, 0)),
        message=str(spec.get("message") or DEFAULT_MESSAGES.get(kind, "")),
        retry_after=retry_after,
        mode=mode,
    )


def parse_flag(text: str) -> dict[str, Any]:
    """`--fault` syntax: JSON, or KIND[:COUNT[:ROUTE]][,key=value...].

    COUNT may be empty or `*` for "until cleared", e.g. `throttle:3:submit`,
    `server_error:2,status=503`, `drop:1:submit,when=after`, `expire_results`.
    """
    return fault_queue.parse_flag(text, numeric=("status", "delay_ms", "retry_after"))
