"""The catalog: what can be generated, from what, by whom, within which limits.

One place that forms, billing, estimates, the queue and templates read, so
adding a provider or a model touches this module and that provider's own
package only. Nothing outside `studio.providers.<vendor>` names a vendor's
words; this module names vendors only as catalog entries.

* A **model** is what can be made and from what: its inputs (kind, role),
  its parameters (tiers, prompt, seed, with defaults) and its billing unit.
* A **provider** is who runs models: per model it serves (an **offer**) its
  own limits, the name the provider gives the model (the price table and the
  ledger use it), how it bills, and which parameters it takes. A provider has
  one account with a number of concurrent task slots, and a way inputs reach
  it (its own upload, presigned storage URLs or signed links to the studio).

Entries read settings when asked (keys, limits and slots are settings), so
tests that override settings see the change.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Literal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from studio.providers.base import ProviderLimits, TaskState


class InputKind(enum.StrEnum):
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One input a model takes: its role in the job ("portrait"), its kind and label."""

    role: str
    kind: InputKind
    label: str
    required: bool = True


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One parameter of a model. `choices` empty means free text (prompt) or a number (seed)."""

    name: str
    label: str
    kind: Literal["tier", "text", "seed", "choice"]
    default: str = ""
    choices: tuple[str, ...] = ()
    help: str = ""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What can be generated. `id` is the studio's name, stored on jobs."""

    id: str
    label: str
    description: str
    inputs: tuple[InputSpec, ...]
    params: tuple[ParamSpec, ...]
    # What a provider bills for it: seconds of output (or of input, per offer).
    billing_unit: Literal["second", "image"] = "second"

    def param(self, name: str) -> ParamSpec | None:
        return next((p for p in self.params if p.name == name), None)

    @property
    def tiers(self) -> tuple[str, ...]:
        tier = self.param("resolution")
        return tier.choices if tier else ()


@dataclass(frozen=True, slots=True)
class Billing:
    """How an offer turns a task into billed seconds (provider-api.md §3.3, §9.5).

    `basis` says which length is billed: the generated video's (as the
    provider reports it) or the input clip's. Billed seconds are rounded up
    to whole seconds when `round_up`, and never fewer than `min_seconds`.
    """

    basis: Literal["output", "input"] = "output"
    round_up: bool = False
    min_seconds: int = 0
    # Whether a task that completed but whose result the provider's content
    # check flagged (and withheld) is billed; where undocumented, a setting.
    flagged_billed: bool = False

    def seconds(self, length: Decimal) -> Decimal:
        value = length
        if self.round_up:
            value = value.to_integral_value(rounding="ROUND_CEILING")
        return max(value, Decimal(self.min_seconds))


@dataclass(frozen=True, slots=True)
class Offer:
    """One model as one provider serves it."""

    model: str  # the studio's model id
    remote_model: str  # the provider's own name for it: price table, ledger, listing
    limits: ProviderLimits
    billing: Billing = field(default_factory=Billing)
    # A paid portrait check the provider offers for this model (price table
    # name), or "" when the studio's own local check is what applies.
    check_model: str = ""
    # Parameters this provider takes beyond the tier (prompt, seed).
    takes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A provider as the catalog knows it."""

    name: str  # stored on jobs, tasks, ledger lines and price rows
    label: str
    vendor: Literal["local", "dashscope", "wavespeed"]
    remote: bool
    offers: dict[str, Offer]
    # Concurrent tasks the account runs; the queue fills this many slots.
    concurrency: int
    # How local inputs reach the provider: "none" (local), "upload" (the
    # provider's own upload API), "storage" (presigned storage URLs) or
    # "public" (signed links to the studio).
    staging: Literal["none", "upload", "storage", "public"] = "none"
    # Whether the provider can call us back when a task ends (a hint; polling
    # stays the source of truth).
    webhooks: bool = False
    # The provider's own words for a task's state, as the studio's states:
    # read from stored words without building the provider (which needs a key).
    states: Mapping[str, TaskState] = field(default_factory=dict)
    # Seconds the provider works per second of audio, until this instance has
    # run times of its own to learn from (polls are planned around it).
    run_ratio: float = 20.0
    # How long the provider remembers a task and keeps its result (DashScope's
    # task ids live 24 h, §1.6; WaveSpeed keeps predictions 7 days, §9.6).
    task_lifetime: timedelta = timedelta(hours=24)
    # Where its API answers ("" for the local provider): the health check probes it.
    base_url: str = ""

    def offer(self, model: str) -> Offer:
        try:
            return self.offers[model]
        except KeyError:
            raise UnknownChoice(
                f"{self.label} does not make {model_label(model)} videos."
            ) from None


class UnknownChoice(ValueError):
    """A provider or model that is not in the catalog, or not enabled here."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- models ---------------------------------------------------------------------------

TIER_480 = "480P"
TIER_720 = "720P"
RESOLUTION = ParamSpec(
    name="resolution",
    label="Resolution",
    kind="tier",
    default=TIER_480,
    choices=(TIER_480, TIER_720),
)
PROMPT = ParamSpec(
    name="prompt",
    label="Prompt",
    kind="text",
    help="Optional: describe the scene or the way of speaking.",
)
SEED = ParamSpec(
    name="seed",
    label="Seed",
    kind="seed",
    default="-1",
    help="-1 picks a random seed; the same seed repeats a result.",
)

S2V = "s2v"

MODELS: dict[str, ModelSpec] = {
    S2V: ModelSpec(
        id=S2V,
        label="Talking portrait",
        description="One portrait and one voice clip become a video of that person speaking or singing.",
        inputs=(
            InputSpec("portrait", InputKind.IMAGE, "Portrait"),
            InputSpec("audio", InputKind.AUDIO, "Audio"),
        ),
        params=(RESOLUTION, PROMPT, SEED),
    ),
}


def model(model_id: str) -> ModelSpec:
    try:
        return MODELS[model_id]
    except KeyError:
        raise UnknownChoice(f"There is no model called {model_id!r}.") from None


def model_label(model_id: str) -> str:
    spec = MODELS.get(model_id)
    return spec.label if spec else model_id


# -- providers ------------------------------------------------------------------------


def s2v_limits(
    *,
    audio_max_seconds: float,
    audio_max_bytes: int,
    concurrency: int,
    price_per_second: Mapping[str, Decimal] | None = None,
    price_per_check: Decimal = Decimal("0"),
    currency: str = "USD",
) -> ProviderLimits:
    """wan2.2-s2v's limits: the input bounds every provider shares, and its own.

    Portraits are held to DashScope's bounds (provider-api.md §2.1) everywhere,
    the local preview included, so a portrait that passes one provider passes
    any. The prices are the provider's declared ones, used only when the price
    table has no line (`billing.unit_price`).
    """
    return ProviderLimits(
        image_formats=frozenset({"JPEG", "PNG", "BMP", "WEBP"}),
        image_min_side=400,
        image_max_side=7000,
        audio_formats=frozenset({"wav", "mp3"}),
        audio_max_seconds=audio_max_seconds,
        audio_max_bytes=audio_max_bytes,
        resolutions=(TIER_480, TIER_720),
        concurrency=concurrency,
        price_per_second=dict(price_per_second or {}),
        price_per_check=price_per_check,
        currency=currency,
    )


def _local() -> ProviderSpec:
    workers = int(settings.Q_CLUSTER.get("workers", 1))
    limits = s2v_limits(
        audio_max_seconds=float(settings.S2V_LOCAL_MAX_AUDIO_SECONDS),
        audio_max_bytes=50_000_000,
        concurrency=workers,
    )
    return ProviderSpec(
        name="local",
        label="Local preview",
        vendor="local",
        remote=False,
        offers={S2V: Offer(model=S2V, remote_model="local", limits=limits)},
        concurrency=workers,
    )


def _dashscope(
    name: str, label: str, *, run_ratio: float, base_url: str
) -> ProviderSpec:
    from studio.providers.dashscope import catalog as dashscope

    concurrency = int(settings.S2V_DASHSCOPE_CONCURRENCY)
    return ProviderSpec(
        name=name,
        label=label,
        vendor="dashscope",
        remote=True,
        offers={S2V: dashscope.s2v_offer(concurrency=concurrency)},
        concurrency=concurrency,
        staging=_staging(settings.S2V_INPUT_URLS),
        states=dashscope.STATES,
        run_ratio=run_ratio,
        base_url=base_url,
    )


def _staging(value: str) -> Literal["upload", "storage", "public"]:
    match value:
        case "upload" | "storage" | "public":
            return value
    raise ImproperlyConfigured(
        f"S2V_INPUT_URLS={value!r}: use upload, storage or public"
    )


def _wavespeed(
    name: str, label: str, *, run_ratio: float, base_url: str
) -> ProviderSpec:
    from studio.providers.wavespeed import catalog as wavespeed

    return wavespeed.provider_spec(
        name=name, label=label, run_ratio=run_ratio, base_url=base_url
    )


# The free provider on this machine: it needs no key and is always usable.
LOCAL = "local"

# Every provider the studio knows, by the name S2V_PROVIDERS uses.
_BUILDERS: dict[str, Callable[[], ProviderSpec]] = {
    LOCAL: _local,
    # First guesses of run time per audio second: DashScope's documented
    # minutes per clip; WaveSpeed's GPUs are faster (learned within a few
    # tasks); the emulators run about as long as the clip.
    "dashscope": lambda: _dashscope(
        "dashscope",
        "Alibaba DashScope",
        run_ratio=20.0,
        base_url=settings.S2V_DASHSCOPE_BASE_URL,
    ),
    "emulator": lambda: _dashscope(
        "emulator",
        "DashScope emulator",
        run_ratio=1.0,
        base_url=f"http://127.0.0.1:{settings.S2V_EMULATOR_PORT}/api/v1",
    ),
    "wavespeed": lambda: _wavespeed(
        "wavespeed",
        "WaveSpeed",
        run_ratio=10.0,
        base_url=settings.S2V_WAVESPEED_BASE_URL,
    ),
    "wavespeed-emulator": lambda: _wavespeed(
        "wavespeed-emulator",
        "WaveSpeed emulator",
        run_ratio=1.0,
        base_url=f"http://127.0.0.1:{settings.S2V_WAVESPEED_EMULATOR_PORT}",
    ),
}
KNOWN = tuple(_BUILDERS)


def enabled_names() -> list[str]:
    """The enabled providers, the default first (S2V_PROVIDERS, else S2V_PROVIDER)."""
    names: list[str] = list(settings.S2V_PROVIDERS or [])
    # S2V_PROVIDER is the one-item form: when it names another provider than
    # the list's first (set on its own, as older deploys and tests do), it is
    # the whole list.
    if not names or names[0] != settings.S2V_PROVIDER:
        names = [settings.S2V_PROVIDER]
    unknown = [n for n in names if n not in _BUILDERS]
    if unknown:
        raise ImproperlyConfigured(
            f"S2V_PROVIDERS names unknown providers {unknown}; use {', '.join(KNOWN)}"
        )
    return list(dict.fromkeys(names))


def default_provider() -> str:
    return enabled_names()[0]


def provider(name: str) -> ProviderSpec:
    """Any known provider's entry, enabled or not (old jobs name disabled ones)."""
    try:
        return _BUILDERS[name]()
    except KeyError:
        raise UnknownChoice(f"There is no provider called {name!r}.") from None


def enabled() -> list[ProviderSpec]:
    return [provider(n) for n in enabled_names()]


def offer(provider_name: str, model_id: str) -> Offer:
    return provider(provider_name).offer(model_id)


def provider_label(name: str) -> str:
    try:
        return provider(name).label
    except (UnknownChoice, ImproperlyConfigured):
        return name
