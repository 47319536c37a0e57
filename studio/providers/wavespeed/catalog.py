"""WaveSpeed's entries in the catalog (provider-api.md §9.5, §9.6)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.conf import settings

from studio.catalog import S2V, Billing, Offer, ProviderSpec, s2v_limits

from .states import STATES

# §9.6: predictions and their outputs are deleted after 7 days.
RETENTION = timedelta(days=7)

S2V_MODEL = "wavespeed-ai/wan-2.2/speech-to-video"
# §9.5, in USD only: the price table's rows win; these apply when it has none.
PRICES = {"480P": Decimal("0.03"), "720P": Decimal("0.06")}


def provider_spec(
    *, name: str, label: str, run_ratio: float, base_url: str
) -> ProviderSpec:
    concurrency = int(settings.S2V_WAVESPEED_CONCURRENCY)
    return ProviderSpec(
        name=name,
        label=label,
        vendor="wavespeed",
        remote=True,
        offers={
            S2V: Offer(
                model=S2V,
                remote_model=S2V_MODEL,
                limits=s2v_limits(
                    # §9.5: 120 s on one page, 10 minutes on another: a setting.
                    audio_max_seconds=float(settings.S2V_WAVESPEED_MAX_AUDIO_SECONDS),
                    # §9.4: audio uploads up to 50 MB (low confidence).
                    audio_max_bytes=50_000_000,
                    concurrency=concurrency,
                    price_per_second=PRICES,
                    currency="USD",
                ),
                # §9.5: input seconds rounded up, at least 3 s, by resolution.
                # Whether a flagged result is billed is undocumented: a setting.
                billing=Billing(
                    basis="input",
                    round_up=True,
                    min_seconds=3,
                    flagged_billed=bool(settings.S2V_WAVESPEED_NSFW_BILLED),
                ),
                takes=frozenset({"prompt", "seed"}),
            )
        },
        concurrency=concurrency,
        staging="upload",
        webhooks=bool(settings.S2V_PUBLIC_BASE_URL),
        states=STATES,
        run_ratio=run_ratio,
        task_lifetime=RETENTION,
        base_url=base_url,
    )


# -- wan-2.2-animate (§9.6); not offered yet: the catalog wiring comes next.

ANIMATE_MODEL = "wavespeed-ai/wan-2.2-animate"
# The studio's move and mix as the body's `mode` (§9.6): animate moves the
# character like the reference video, replace puts it into that video.
ANIMATE_MODES = {"move": "animate", "mix": "replace"}
# The body's `resolution`: the studio's tier in lower case, as for s2v.
ANIMATE_RESOLUTIONS = ("480p", "720p")
# §9.6, USD per output second; the price table's rows (0021) win.
ANIMATE_PRICES = {"480P": Decimal("0.04"), "720P": Decimal("0.08")}
# §9.6: the output is at most 120 s, billed on 5 to 120 s. Billing needs no
# maximum: a longer reference video is refused, so no output is longer.
ANIMATE_MAX_SECONDS = 120.0
ANIMATE_BILLING = Billing(basis="output", min_seconds=5)
# §9.4's upload page (low confidence): videos up to 100 MB, read as 10^6
# bytes (the smaller reading, as for DashScope), of which formats the studio
# takes these.
# No side or aspect bounds are documented.
ANIMATE_VIDEO_MAX_BYTES = 100_000_000
ANIMATE_VIDEO_FORMATS = frozenset({"mp4", "mov", "avi", "webm"})
