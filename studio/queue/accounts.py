"""A provider account the provider refused: paused for everyone, resumed once it answers."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from studio.models import ProviderAccount

log = logging.getLogger(__name__)


# While an account is paused, dispatching tries again this often.
PAUSE_RETRY = timedelta(minutes=5)


def pause_account(*, provider_name: str, code: str, message: str) -> None:
    """Stop dispatching to an account the provider refused; admins see why."""
    now = timezone.now()
    ProviderAccount.objects.get_or_create(provider=provider_name)
    updated = ProviderAccount.objects.filter(
        provider=provider_name, paused_at__isnull=True
    ).update(
        paused_code=code[:64],
        paused_message=message,
        paused_at=now,
        retry_at=now + PAUSE_RETRY,
    )
    if updated:
        log.error("provider account %s paused: %s", provider_name, code)


def clear_pause(provider_name: str) -> int:
    return ProviderAccount.objects.filter(
        provider=provider_name, paused_at__isnull=False
    ).update(paused_code="", paused_message="", paused_at=None, retry_at=None)


def account_resume(*, provider_name: str) -> bool:
    """Site staff say the account is fixed: dispatch at once. False if not paused."""
    return clear_pause(provider_name) > 0
