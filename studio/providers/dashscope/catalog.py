"""DashScope's entries in the catalog: what it serves and within which limits."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from urllib.parse import urlsplit

from django.conf import settings

from studio.catalog import S2V, Billing, Offer, s2v_limits
from studio.providers.base import ProviderLimits

from .client import (
    ANIMATE_MIX_MODEL,
    ANIMATE_MODELS,
    ANIMATE_MOVE_MODEL,
    ANIMATE_PRO,
    ANIMATE_STANDARD,
    DETECT_MODEL,
    EMO_DETECT_MODEL,
    EMO_MODEL,
    EMO_RATIOS,
    EMO_STYLE_LEVELS,
    S2V_MODEL,
    STATES,
)

__all__ = [
    "ANIMATE_MIX_MODEL",
    "ANIMATE_MODELS",
    "ANIMATE_MODES",
    "ANIMATE_MOVE_MODEL",
    "ANIMATE_PRICES",
    "ANIMATE_PRO",
    "ANIMATE_STANDARD",
    "BEIJING",
    "EMO_DETECT_MODEL",
    "EMO_MODEL",
    "EMO_PRICES",
    "EMO_RATIOS",
    "EMO_SIZES",
    "EMO_STYLE_LEVELS",
    "MODEL_REGIONS",
    "PRICES",
    "SINGAPORE",
    "STATES",
    "animate_video_limits",
    "emo_limits",
    "region_of",
    "s2v_offer",
    "serves",
]

# provider-api.md §2.3 and §3.3: the declared prices, which billing falls back
# on when the price table has no line for them.
PRICES = {
    "USD": {
        "check": Decimal("0.000574"),
        "480P": Decimal("0.071677"),
        "720P": Decimal("0.129018"),
    },
    "CNY": {"check": Decimal("0.004"), "480P": Decimal("0.5"), "720P": Decimal("0.9")},
}
AUDIO_MAX_SECONDS = 20.0  # §3.1, exclusive
AUDIO_MAX_BYTES = 15_000_000  # §3.1 "15 MB", exclusive, the smaller reading


def s2v_offer(*, concurrency: int) -> Offer:
    """wan2.2-s2v (§3): billed per generated second (§3.3), checked by -detect (§2)."""
    currency = settings.S2V_CURRENCY if settings.S2V_CURRENCY in PRICES else "USD"
    prices = PRICES[currency]
    return Offer(
        model=S2V,
        remote_model=S2V_MODEL,
        check_model=DETECT_MODEL,
        # §3.1: "< 15 MB, < 20 s"; both bounds are exclusive, and MB is read
        # as the smaller 10^6 bytes, so nothing that passes here is refused there.
        limits=s2v_limits(
            audio_max_seconds=AUDIO_MAX_SECONDS,
            audio_max_bytes=AUDIO_MAX_BYTES,
            concurrency=concurrency,
            price_per_second={"480P": prices["480P"], "720P": prices["720P"]},
            price_per_check=prices["check"],
            currency=currency,
        ),
        billing=Billing(basis="output"),
        # §3.1 documents no prompt or seed for wan2.2-s2v.
        takes=frozenset(),
    )


# -- wan2.2-animate-move / -mix (§7); not offered yet: the catalog wiring comes next.

# The studio's tiers as the provider's `parameters.mode` (§7.1). The price table
# keys animate lines by this mode word in its `resolution` column, which is too
# short for "professional" (migration 0019).
ANIMATE_MODES = {"standard": ANIMATE_STANDARD, "professional": ANIMATE_PRO}

# §7.3 per output second, by currency. The CNY figures are third-party and
# unconfirmed (§13.7); USD is not published and is converted at the rate
# Alibaba's own s2v prices imply (§3.3: 0.071677 USD for 0.5 CNY). The price
# table's lines (marked so in their source) are what admins correct.
ANIMATE_PRICES = {
    "CNY": {
        ANIMATE_MOVE_MODEL: {
            ANIMATE_STANDARD: Decimal("0.40"),
            ANIMATE_PRO: Decimal("0.60"),
        },
        ANIMATE_MIX_MODEL: {
            ANIMATE_STANDARD: Decimal("0.60"),
            ANIMATE_PRO: Decimal("1.20"),
        },
    },
    "USD": {
        ANIMATE_MOVE_MODEL: {
            ANIMATE_STANDARD: Decimal("0.057342"),
            ANIMATE_PRO: Decimal("0.086012"),
        },
        ANIMATE_MIX_MODEL: {
            ANIMATE_STANDARD: Decimal("0.086012"),
            ANIMATE_PRO: Decimal("0.172025"),
        },
    },
}


def animate_video_limits() -> ProviderLimits:
    """wan2.2-animate-move/-mix's input bounds (§7.1), for their offers to build on.

    The reference video: MP4/AVI/MOV, 2-30 s, each side 200-2048 px, aspect
    1:3 to 3:1, 200 MB (read as 10^6 bytes, the smaller reading); all bounds
    inclusive. The character image: sides 200-4096 px, aspect 1:3 to 3:1,
    5 MB (10^6 bytes again). No audio is taken, and one task runs at a time
    (§7.3). Tiers and prices are the offer's to add.
    """
    return ProviderLimits(
        image_formats=frozenset({"JPEG", "PNG", "BMP", "WEBP"}),
        image_min_side=200,
        image_max_side=4096,
        image_max_bytes=5_000_000,
        image_aspect_max=3.0,
        audio_formats=frozenset(),
        audio_max_seconds=0.0,
        audio_max_bytes=0,
        resolutions=(),
        concurrency=1,
        video_formats=frozenset({"mp4", "avi", "mov"}),
        video_min_seconds=2.0,
        video_max_seconds=30.0,
        video_min_side=200,
        video_max_side=2048,
        video_max_bytes=200_000_000,
        video_aspect_max=3.0,
    )


# -- EMO (§8): emo-detect-v1 checks a portrait for a ratio and answers with the
# face and the region to animate; emo-v1 animates that region. Not offered yet:
# the catalog wiring comes next.

# §8 per image (the check) and per output second by ratio. CNY is documented;
# USD is converted at the rate Alibaba's own s2v prices imply (§3.3: 0.071677
# USD for 0.5 CNY), and the check as §2.3 prices the same CNY 0.004 check.
EMO_PRICES = {
    "CNY": {
        "check": Decimal("0.004"),
        "1:1": Decimal("0.08"),
        "3:4": Decimal("0.16"),
    },
    "USD": {
        "check": Decimal("0.000574"),
        "1:1": Decimal("0.011468"),
        "3:4": Decimal("0.022937"),
    },
}
# §8.2: 1:1 makes 512×512, 3:4 makes 512×704 (width × height).
EMO_SIZES = {"1:1": (512, 512), "3:4": (512, 704)}
EMO_AUDIO_MAX_SECONDS = 60.0  # §8.2 "< 60 s", exclusive


def emo_limits() -> ProviderLimits:
    """emo-v1's input bounds (§8), for its offer to build on: s2v's portrait
    bounds and audio formats, audio under 60 s and 15 MB (read as 10^6 bytes),
    one task at a time. The ratios stand where tiers do: they set the output
    size and the price."""
    limits = s2v_limits(
        audio_max_seconds=EMO_AUDIO_MAX_SECONDS,
        audio_max_bytes=AUDIO_MAX_BYTES,
        concurrency=1,
    )
    return replace(limits, resolutions=EMO_RATIOS)


# -- Regions (§1.1). The studio configures DashScope by its base URL
# (S2V_DASHSCOPE_BASE_URL), so the region is read from the host.

BEIJING = "cn-beijing"
SINGAPORE = "ap-southeast-1"
MODEL_REGIONS: dict[str, frozenset[str]] = {
    S2V_MODEL: frozenset({BEIJING}),
    DETECT_MODEL: frozenset({BEIJING}),
    EMO_MODEL: frozenset({BEIJING}),
    EMO_DETECT_MODEL: frozenset({BEIJING}),
    **dict.fromkeys(ANIMATE_MODELS, frozenset({BEIJING, SINGAPORE})),
}
_HOSTS = {"dashscope.aliyuncs.com": BEIJING, "dashscope-intl.aliyuncs.com": SINGAPORE}


def region_of(base_url: str) -> str:
    """The DashScope region a base URL reaches; "" when the host does not say
    (an aggregator's prefix, §10, or an emulator)."""
    host = (urlsplit(base_url).hostname or "").lower()
    if host in _HOSTS:
        return _HOSTS[host]
    # Workspace domains: {WorkspaceId}.{region}.maas.aliyuncs.com (§1.1).
    parts = host.split(".")
    if len(parts) == 5 and parts[2:] == ["maas", "aliyuncs", "com"]:
        return parts[1]
    return ""


def serves(model: str, *, base_url: str) -> bool:
    """Whether `model` exists where `base_url` points. An unknown region is
    given the benefit of the doubt: the provider's own ModelNotFound decides."""
    region = region_of(base_url)
    return not region or region in MODEL_REGIONS.get(model, frozenset())
