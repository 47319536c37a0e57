"""Providers as the forms see them: names, limits, and each choice's cost and wait.

Also whose portrait check applies to a job on a provider.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from studio import billing, catalog
from studio.models import FaceCheck, Team
from studio.providers.base import ProviderLimits

from .progress import _queue_ahead, expected_wait
from .teams import team_providers


def provider_names() -> list[tuple[str, str]]:
    """Every provider a job may name, with its label, for the gallery's filter."""
    return [(name, catalog.provider_label(name)) for name in catalog.KNOWN]


def check_provider_name(provider: str, model: str = catalog.S2V) -> str:
    """Whose portrait check applies to a job on `provider`.

    An offer with a paid check of its own (DashScope's detect) is checked by
    that provider; every other offer by the studio's local check, whose
    verdicts are cached under "local" and so shared between those providers.
    """
    try:
        paid = bool(catalog.offer(provider, model).check_model)
    except catalog.UnknownChoice:
        return provider  # an old job's provider: its verdicts are under its name
    return provider if paid else "local"


def widest_limits(names: Iterable[str], model: str = catalog.S2V) -> ProviderLimits:
    """Limits an input must meet to fit at least one of these providers' offers.

    The upload page keeps a clip that some choice can take and says, per
    choice, whether it fits. Formats are those every offer takes, so that a
    clip is converted when any of them needs it.
    """
    offers = [catalog.offer(n, model).limits for n in names]
    first = offers[0]
    return ProviderLimits(
        image_formats=frozenset.intersection(*(o.image_formats for o in offers)),
        image_min_side=max(o.image_min_side for o in offers),
        image_max_side=min(o.image_max_side for o in offers),
        audio_formats=frozenset.intersection(*(o.audio_formats for o in offers)),
        audio_max_seconds=max(o.audio_max_seconds for o in offers),
        audio_max_bytes=max(o.audio_max_bytes for o in offers),
        resolutions=tuple(
            r for r in first.resolutions if all(r in o.resolutions for o in offers)
        ),
        concurrency=first.concurrency,
        audio_min_seconds=min(o.audio_min_seconds for o in offers),
    )


@dataclass(frozen=True, slots=True)
class Choice:
    """One provider as the upload form offers it, with its estimate for these inputs."""

    name: str
    label: str
    remote: bool
    offer: catalog.Offer
    estimate: billing.Estimate
    wait_seconds: float
    queued: int  # jobs waiting for it now
    problems: tuple[str, ...]  # why the inputs do not fit it; empty when they do
    cheapest: bool = False
    soonest: bool = False

    @property
    def disabled(self) -> bool:
        return bool(self.problems)

    @property
    def paid_check(self) -> bool:
        return bool(self.offer.check_model)

    @property
    def takes_prompt(self) -> bool:
        return "prompt" in self.offer.takes

    @property
    def takes_seed(self) -> bool:
        return "seed" in self.offer.takes


def generation_choices(
    *,
    team: Team,
    model: str = catalog.S2V,
    resolution: str,
    audio_seconds: float | None,
    audio_size: int | None = None,
    portrait_sha256: str = "",
) -> list[Choice]:
    """The providers the team may use for a model, each with cost and wait, best marked.

    A paid portrait check is added where the check that applies has no
    verdict for this portrait yet. Without audio the estimate is for no
    seconds and nothing is marked.
    """
    from studio.services.inputs import audio_problems  # services import selectors

    checked = (
        set(
            FaceCheck.objects.filter(sha256=portrait_sha256).values_list(
                "provider", flat=True
            )
        )
        if portrait_sha256
        else set()
    )
    choices: list[Choice] = []
    for name in team_providers(team=team):
        spec = catalog.provider(name)
        try:
            offer = spec.offer(model)
        except catalog.UnknownChoice:
            continue
        tier = resolution if resolution in offer.limits.resolutions else ""
        seconds = audio_seconds or 0.0
        problems: list[str] = []
        if not tier:
            problems.append(f"It does not make {resolution} videos.")
        if audio_seconds is not None:
            problems += audio_problems(
                duration=audio_seconds, size=audio_size, limits=offer.limits
            )
        queued, _ = _queue_ahead(provider=name, ratio=0.0)
        choices.append(
            Choice(
                name=name,
                label=spec.label,
                remote=spec.remote,
                offer=offer,
                estimate=billing.estimate(
                    provider=name,
                    model=model,
                    resolution=tier or resolution,
                    audio_seconds=seconds,
                    needs_check=check_provider_name(name, model) not in checked,
                ),
                wait_seconds=expected_wait(
                    provider=name, resolution=tier or resolution, audio_seconds=seconds
                ),
                queued=queued,
                problems=tuple(problems),
            )
        )
    usable = [c for c in choices if not c.disabled]
    if audio_seconds is None or len(usable) < 2:
        return choices
    cheapest = min(c.estimate.total for c in usable)
    soonest = min(c.wait_seconds for c in usable)
    return [
        replace(
            c,
            cheapest=not c.disabled and c.estimate.total == cheapest,
            soonest=not c.disabled and c.wait_seconds == soonest,
        )
        for c in choices
    ]
