"""WaveSpeed's webhook signatures (provider-api.md §9.6).

Headers `webhook-id`, `webhook-timestamp` (unix seconds) and
`webhook-signature: v3,<hex HMAC-SHA256>` over `{id}.{timestamp}.{raw body}`,
keyed by the secret without its `whsec_` prefix, as raw UTF-8 bytes (not
base64-decoded). Like Standard Webhooks, but not byte-compatible with it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v3"
# Older (a replay) or further ahead (a wrong clock) than this is refused.
TOLERANCE = 300


def sign(*, webhook_id: str, timestamp: int, raw_body: bytes, secret: str) -> str:
    """The signature header's value for a body: `v3,<hex>`."""
    key = secret.removeprefix(SECRET_PREFIX).encode("utf-8")
    signed = f"{webhook_id}.{timestamp}.".encode() + raw_body
    digest = hmac.new(key, signed, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION},{digest}"


def verify(
    headers: Mapping[str, str], raw_body: bytes, secret: str, now: float
) -> bool:
    """Whether a callback is WaveSpeed's, signed within TOLERANCE seconds of `now`.

    `headers` is looked up case-insensitively when it is a mapping of any case.
    The header may carry several space-separated signatures; one match is enough.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    webhook_id = lowered.get("webhook-id", "").strip()
    stamp = lowered.get("webhook-timestamp", "").strip()
    signatures = lowered.get("webhook-signature", "").strip()
    if not webhook_id or not stamp or not signatures or not secret:
        return False
    if not stamp.isdigit():
        return False
    timestamp = int(stamp)
    if abs(now - timestamp) > TOLERANCE:
        return False
    expected = sign(
        webhook_id=webhook_id, timestamp=timestamp, raw_body=raw_body, secret=secret
    ).encode()
    found = False
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version != SIGNATURE_VERSION or not value:
            continue
        # Compare all of them, in constant time each.
        if hmac.compare_digest(f"{version},{value.lower()}".encode(), expected):
            found = True
    return found
