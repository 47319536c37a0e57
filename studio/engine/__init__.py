"""Engines: what checks portraits and makes the videos. Chosen by S2V_PROVIDER."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .base import Engine

_engines: dict[tuple[object, ...], Engine] = {}


def get_engine(name: str | None = None) -> Engine:
    """The engine named, or the configured one. Reads settings at call time.

    Engines are kept per process (a remote engine holds an HTTP connection pool
    and its upload policies), keyed by the settings they were built from.
    """
    name = name or settings.S2V_PROVIDER
    key = (
        name,
        settings.S2V_CURRENCY,
        settings.S2V_LOCAL_MAX_AUDIO_SECONDS,
        settings.Q_CLUSTER.get("workers"),
        settings.DASHSCOPE_API_KEY,
        settings.S2V_DASHSCOPE_BASE_URL,
        settings.S2V_DASHSCOPE_CONCURRENCY,
        settings.S2V_INPUT_URLS,
        settings.S2V_EMULATOR_PORT,
    )
    if key not in _engines:
        _engines[key] = _build(name)
    return _engines[key]


def _build(name: str) -> Engine:
    match name:
        case "local":
            from .local import LocalEngine

            return LocalEngine()
        case "dashscope":
            from .dashscope import DashScopeEngine

            return DashScopeEngine()
        case "emulator":
            # DashScope's protocol against the bundled emulator (manage.py
            # dashscope_emulator), so the remote mode can be tried without a key.
            from .dashscope import DashScopeEngine

            return DashScopeEngine(
                name="emulator",
                label="DashScope emulator",
                api_key="sk-emulator",
                base_url=f"http://127.0.0.1:{settings.S2V_EMULATOR_PORT}/api/v1",
            )
    raise ImproperlyConfigured(
        f"Unknown S2V_PROVIDER={name!r}; use local, dashscope or emulator"
    )
