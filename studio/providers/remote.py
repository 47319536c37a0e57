"""What every remote provider sets up alike: its name, label, account and offer."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from studio import catalog
from studio.providers import staging


def required_key(api_key: str | None, configured: str, missing: str) -> str:
    """`api_key`, else the configured key; ImproperlyConfigured(`missing`) if none."""
    key = api_key if api_key is not None else configured
    if not key:
        raise ImproperlyConfigured(missing)
    return key


class RemoteProviderBase:
    """The identity every remote provider has; the vendor's class adds its client."""

    label: str
    remote = True

    def __init__(self, *, name: str, label: str | None, api_key: str) -> None:
        self.name = name
        if label:
            self.label = label
        # Uploads are bound to the account: key them by a fingerprint, not the key.
        self.account = staging.account_fingerprint(api_key)
        self.offer = catalog.offer(name, catalog.S2V)
        self.limits = self.offer.limits
