"""Engines: what checks portraits and makes the videos. Chosen by S2V_PROVIDER."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .base import Engine


def get_engine(name: str | None = None) -> Engine:
    """The engine named, or the configured one. Reads settings at call time."""
    name = name or settings.S2V_PROVIDER
    match name:
        case "local":
            from .local import LocalEngine

            return LocalEngine()
    raise ImproperlyConfigured(f"Unknown S2V_PROVIDER={name!r}; use 'local'")
