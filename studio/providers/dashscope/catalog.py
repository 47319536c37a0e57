"""DashScope's entries in the catalog: what it serves and within which limits."""

from __future__ import annotations

from studio.catalog import S2V, TIER_480, TIER_720, Billing, Offer
from studio.providers.base import ProviderLimits

from .client import DETECT_MODEL, S2V_MODEL, STATES

__all__ = ["STATES", "s2v_offer"]

AUDIO_MAX_SECONDS = 20.0  # §3.1, exclusive
AUDIO_MAX_BYTES = 15_000_000  # §3.1 "15 MB", exclusive, the smaller reading


def s2v_offer(*, concurrency: int) -> Offer:
    """wan2.2-s2v (§3): billed per generated second (§3.3), checked by -detect (§2)."""
    return Offer(
        model=S2V,
        remote_model=S2V_MODEL,
        check_model=DETECT_MODEL,
        limits=ProviderLimits(
            image_formats=frozenset({"JPEG", "PNG", "BMP", "WEBP"}),
            image_min_side=400,
            image_max_side=7000,
            audio_formats=frozenset({"wav", "mp3"}),
            # §3.1: "< 15 MB, < 20 s"; both bounds are exclusive, and MB is read
            # as the smaller 10^6 bytes, so nothing that passes here is refused there.
            audio_max_seconds=AUDIO_MAX_SECONDS,
            audio_max_bytes=AUDIO_MAX_BYTES,
            resolutions=(TIER_480, TIER_720),
            concurrency=concurrency,
        ),
        billing=Billing(basis="output"),
        # §3.1 documents no prompt or seed for wan2.2-s2v.
        takes=frozenset(),
    )
