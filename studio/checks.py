"""System checks: configuration mistakes said at start-up, not when a job waits forever."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured

from . import catalog
from .providers import get_provider


@register("studio")
def providers_usable(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every enabled provider can be built here (its key is set, its settings valid).

    An enabled provider without a key would be offered on the form and hold
    budget for jobs that no worker can ever send.
    """
    try:
        names = catalog.enabled_names()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="studio.E001")]
    errors: list[CheckMessage] = []
    for name in names:
        try:
            get_provider(name)
        except ImproperlyConfigured as exc:
            errors.append(
                Error(
                    f"S2V_PROVIDERS has {name!r}, which cannot be used: {exc}",
                    hint="Set its key, or remove it from S2V_PROVIDERS.",
                    id="studio.E002",
                )
            )
    return errors
