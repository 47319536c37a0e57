"""Providers: what checks portraits and makes the videos. Chosen by S2V_PROVIDER."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .base import Provider, TaskState

_providers: dict[tuple[object, ...], Provider] = {}


def get_provider(name: str | None = None) -> Provider:
    """The provider named, or the configured one. Reads settings at call time.

    Providers are kept per process (a remote provider holds an HTTP connection pool
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
        settings.WAVESPEED_API_KEY,
        settings.S2V_WAVESPEED_BASE_URL,
        settings.S2V_WAVESPEED_CONCURRENCY,
        settings.S2V_WAVESPEED_MAX_AUDIO_SECONDS,
        settings.S2V_WAVESPEED_EMULATOR_PORT,
        settings.S2V_PUBLIC_BASE_URL,
    )
    if key not in _providers:
        _providers[key] = _build(name)
    return _providers[key]


def task_state(provider_name: str, word: str) -> TaskState | None:
    """What a provider's stored word for a task means; None when it means nothing.

    For code that holds a word (a job's `remote_status`) but must not name it.
    None before the provider said anything, for a word it does not use, and
    for a provider that is not remote or no longer configured.
    """
    from studio import catalog  # the catalog reads provider packages

    if not word:
        return None
    try:
        return catalog.provider(provider_name).states.get(word)
    except catalog.UnknownChoice:
        return None


def _build(name: str) -> Provider:
    match name:
        case "local":
            from .local import LocalProvider

            return LocalProvider()
        case "dashscope":
            from .dashscope.provider import DashScopeProvider

            return DashScopeProvider()
        case "emulator":
            # DashScope's protocol against the bundled emulator (manage.py
            # dashscope_emulator), so the remote mode can be tried without a key.
            from .dashscope.provider import DashScopeProvider

            return DashScopeProvider(
                name="emulator",
                label="DashScope emulator",
                api_key="sk-emulator",
                base_url=f"http://127.0.0.1:{settings.S2V_EMULATOR_PORT}/api/v1",
            )
        case "wavespeed":
            from .wavespeed.provider import WaveSpeedProvider

            if not settings.WAVESPEED_API_KEY:
                raise ImproperlyConfigured(
                    "The wavespeed provider needs WAVESPEED_API_KEY or "
                    "WAVESPEED_API_KEY_FILE (an API key from wavespeed.ai; keys "
                    "work after the account's first top-up)."
                )
            return WaveSpeedProvider()
        case "wavespeed-emulator":
            # WaveSpeed's protocol against the bundled emulator, without a key.
            from .wavespeed.provider import WaveSpeedProvider

            return WaveSpeedProvider(
                name="wavespeed-emulator",
                label="WaveSpeed emulator",
                api_key="ws-emulator",
                base_url=f"http://127.0.0.1:{settings.S2V_WAVESPEED_EMULATOR_PORT}",
            )
    raise ImproperlyConfigured(
        f"Unknown S2V_PROVIDER={name!r}; use local, dashscope, emulator, "
        "wavespeed or wavespeed-emulator"
    )
