"""Structured logs: one JSON object a line, for S2V_LOG_JSON (settings.LOGGING).

Imported by logging's configuration before Django is set up: nothing here may
import models or settings.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else was passed with `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """{"time", "level", "logger", "message"} plus the exception and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_"):
                continue
            if key == "request":  # Django's request loggers: where, not the object
                if hasattr(value, "method") and hasattr(value, "path"):
                    entry["method"], entry["path"] = value.method, value.path
                continue
            entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra that JSON cannot carry is logged as its text.
        return json.dumps(entry, default=str, ensure_ascii=False)
