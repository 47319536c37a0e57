"""Several enabled providers: the form's choice, estimates side by side, team limits."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from studio import billing, catalog, services
from studio.models import AudioClip, GenerationJob, Membership, Price
from tests import media_factories
from tests.conftest import ASTRONAUT, make_member, upload

pytestmark = pytest.mark.django_db

THREE = ["local", "emulator", "wavespeed-emulator"]
WAVESPEED = catalog.provider("wavespeed").offer(catalog.S2V)


@pytest.fixture
def three(settings):
    """The Quick start's three providers, none of which needs a key."""
    settings.S2V_PROVIDERS = list(THREE)
    settings.S2V_PROVIDER = "local"
    settings.S2V_CURRENCY = "USD"
    # WaveSpeed's price lines, under both names a lookup may use: the
    # provider's (today) and the offer's remote model (once prices are read
    # through the catalog).
    since = timezone.now() - timedelta(days=1)
    for model in ("wavespeed-emulator", WAVESPEED.remote_model):
        for tier, price in (("480P", "0.03"), ("720P", "0.06")):
            Price.objects.create(
                provider="wavespeed-emulator",
                model=model,
                unit=Price.Unit.SECOND,
                resolution=tier,
                currency="USD",
                unit_price=Decimal(price),
                valid_from=since,
            )
    return settings


def _clip(team, user, tmp_path, seconds: float) -> AudioClip:
    wav = media_factories.make_wav(tmp_path / f"voice-{seconds:g}.wav", seconds)
    clip = services.audio_submit(
        team=team,
        user=user,
        upload=upload(wav),
        limits=catalog.offer("wavespeed-emulator", catalog.S2V).limits,
    ).clip
    assert clip is not None
    return clip


def _portrait(team, user):
    outcome = services.portrait_submit(team=team, user=user, upload=upload(ASTRONAUT))
    assert outcome.portrait is not None
    return outcome.portrait


def _cards(html: str) -> dict[str, str]:
    """Each provider card's HTML, by provider name."""
    cards = re.findall(
        r'<label class="provider-card[^"]*"[^>]*data-provider="([^"]+)">(.*?)</label>',
        html,
        re.S,
    )
    return dict(cards)


def test_one_provider_shows_no_choice(alice_client):
    html = alice_client.get(reverse("studio:job-create")).content.decode()

    assert 'name="provider"' not in html
    assert "Local preview" in html
    assert 'name="prompt"' not in html


def test_three_providers_are_offered_each_with_cost_and_wait(
    three, alice_client, alice, team, tmp_path
):
    clip = _clip(team, alice, tmp_path, 2.0)
    portrait = _portrait(team, alice)

    response = alice_client.get(
        reverse("studio:job-estimate"),
        {"audio": str(clip.code), "portrait": str(portrait.code), "resolution": "480P"},
    )

    cards = _cards(response.content.decode())
    assert list(cards) == THREE
    # WaveSpeed bills the input, rounded up, at least 3 s: 3 s x $0.03.
    assert "$0.09" in cards["wavespeed-emulator"]
    # DashScope bills the output with the hold margin (3 s for 2 s) and its
    # portrait check, not yet done for this image.
    assert "$0.2156" in cards["emulator"]  # 3 s x $0.071677 + $0.000574
    assert "portrait check" in cards["emulator"]
    assert "portrait check" not in cards["wavespeed-emulator"]
    for card in cards.values():
        assert "ready in about" in card
    assert 'data-mark="cheapest"' in cards["local"]
    assert 'data-mark="soonest"' in cards["local"]


def test_cheapest_and_soonest_can_be_different_choices(
    three, alice_client, alice, team, tmp_path
):
    clip = _clip(team, alice, tmp_path, 2.0)
    portrait = _portrait(team, alice)
    # A long local queue: the free choice is no longer the soonest.
    for _ in range(6):
        GenerationJob.objects.create(
            team=team,
            created_by=alice,
            portrait=portrait,
            audio=clip,
            provider="local",
        )

    html = alice_client.get(
        reverse("studio:job-estimate"),
        {"audio": str(clip.code), "portrait": str(portrait.code)},
    ).content.decode()

    cards = _cards(html)
    assert 'data-mark="cheapest"' in cards["local"]
    assert 'data-mark="soonest"' not in cards["local"]
    assert 'data-mark="soonest"' in cards["emulator"]
    assert "(6 waiting)" in cards["local"]


def test_a_clip_too_long_for_one_provider_disables_it_with_the_reason(
    three, alice_client, alice, team, tmp_path
):
    clip = _clip(team, alice, tmp_path, 60.0)

    html = alice_client.get(
        reverse("studio:job-estimate"),
        {"audio": str(clip.code), "provider": "emulator"},
    ).content.decode()

    cards = _cards(html)
    assert re.search(r'value="emulator"[^>]*disabled', cards["emulator"], re.S)
    assert "It must be shorter than 20 s" in cards["emulator"]
    assert "disabled" not in cards["wavespeed-emulator"].split("</span>")[0]
    # The choice asked for cannot take the clip: the first that can is chosen.
    assert re.search(r'value="local"\s+checked', cards["local"])


def test_a_long_clip_is_kept_when_one_choice_can_take_it(three, alice_client, tmp_path):
    wav = media_factories.make_wav(tmp_path / "long.wav", 60.0)

    html = alice_client.post(
        reverse("studio:audio-check"), {"audio_file": upload(wav)}
    ).content.decode()

    assert 'name="audio"' in html
    assert "Fits: 60.0 s of 120 s allowed." in html


def test_job_create_refuses_a_provider_the_clip_does_not_fit(
    three, alice, team, tmp_path
):
    clip = _clip(team, alice, tmp_path, 60.0)

    with pytest.raises(services.Rejected, match="shorter than 20 s"):
        services.job_create(
            team=team,
            user=alice,
            portrait=_portrait(team, alice),
            audio=clip,
            resolution="480P",
            provider="emulator",
        )


def test_each_job_records_its_provider_model_and_params(
    three, alice, team, tmp_path, enqueued
):
    job = services.job_create(
        team=team,
        user=alice,
        portrait=_portrait(team, alice),
        audio=_clip(team, alice, tmp_path, 4.0),
        resolution="720P",
        provider="wavespeed-emulator",
        params={"prompt": "  A calm voice  ", "seed": "42"},
    )

    job.refresh_from_db()
    assert (job.provider, job.model) == ("wavespeed-emulator", "s2v")
    assert job.params == {"prompt": "A calm voice", "seed": 42}
    assert job.param("prompt") == "A calm voice"
    # Held as WaveSpeed bills: 4 s of input at 720P.
    assert job.estimate == Decimal("0.24")


def test_params_a_provider_does_not_take_are_not_kept(
    three, alice, team, tmp_path, enqueued
):
    job = services.job_create(
        team=team,
        user=alice,
        portrait=_portrait(team, alice),
        audio=_clip(team, alice, tmp_path, 2.0),
        resolution="480P",
        provider="local",
        params={"prompt": "ignored", "seed": "7"},
    )

    assert job.params == {}
    assert job.model == "s2v"


def test_a_bad_seed_is_refused_in_plain_words(three, alice, team, tmp_path):
    with pytest.raises(services.Rejected, match="whole number from -1"):
        services.job_create(
            team=team,
            user=alice,
            portrait=_portrait(team, alice),
            audio=_clip(team, alice, tmp_path, 2.0),
            resolution="480P",
            provider="wavespeed-emulator",
            params={"seed": "abc"},
        )


def test_prompt_and_seed_show_only_for_a_provider_that_takes_them(three, alice_client):
    local = alice_client.get(reverse("studio:job-create")).content.decode()
    wavespeed = alice_client.get(
        reverse("studio:job-create"), {"provider": "wavespeed-emulator"}
    ).content.decode()

    assert 'name="prompt"' not in local and 'name="seed"' not in local
    assert 'name="prompt"' in wavespeed and 'name="seed"' in wavespeed


def test_switching_provider_brings_its_portrait_verdict_and_params(
    three, alice_client, alice, team
):
    portrait = _portrait(team, alice)

    html = alice_client.post(
        reverse("studio:portrait-recheck"),
        {
            "portrait": str(portrait.code),
            "provider": "wavespeed-emulator",
            "switch": "1",
        },
    ).content.decode()

    # WaveSpeed has no paid check: the local verdict applies, from the cache.
    assert "Face found: good to go." in html
    assert 'id="params" hx-swap-oob="true"' in html
    assert 'name="prompt"' in html


def test_switching_after_a_failed_portrait_asks_for_the_file_again(three, alice_client):
    html = alice_client.post(
        reverse("studio:portrait-recheck"),
        {"provider": "emulator", "switch": "1", "portrait_failed": "1"},
    ).content.decode()

    assert (
        "Choose the portrait again to have it checked for DashScope emulator." in html
    )


def test_use_again_and_variants_keep_provider_and_params(
    three, alice, alice_client, team, tmp_path, enqueued
):
    job = services.job_create(
        team=team,
        user=alice,
        portrait=_portrait(team, alice),
        audio=_clip(team, alice, tmp_path, 2.0),
        resolution="480P",
        provider="wavespeed-emulator",
        params={"prompt": "Smile", "seed": "9"},
    )

    html = alice_client.get(
        reverse("studio:job-create"), {"from": str(job.code)}
    ).content.decode()
    assert re.search(r'value="wavespeed-emulator"\s+checked', html)
    assert ">Smile</textarea>" in html
    assert 'value="9"' in html

    variant = services.job_variant(job=job, user=alice, resolution="720P")
    assert (variant.provider, variant.model) == ("wavespeed-emulator", "s2v")
    assert variant.params == {"prompt": "Smile", "seed": 9}


def test_the_form_submits_to_the_chosen_provider(
    three, alice, alice_client, team, tmp_path, enqueued
):
    clip = _clip(team, alice, tmp_path, 2.0)
    portrait = _portrait(team, alice)

    response = alice_client.post(
        reverse("studio:job-create"),
        {
            "portrait": str(portrait.code),
            "audio": str(clip.code),
            "resolution": "480P",
            "provider": "wavespeed-emulator",
            "prompt": "Warm",
            "seed": "",
        },
    )

    assert response.status_code == 302
    job = GenerationJob.objects.get()
    assert job.provider == "wavespeed-emulator"
    assert job.params == {"prompt": "Warm"}


# -- team restriction -------------------------------------------------------------


def test_team_admins_restrict_providers_and_the_form_follows(three, alice_client, team):
    response = alice_client.post(
        reverse("studio:team-settings"),
        {"action": "providers", "providers": ["wavespeed-emulator", "local"]},
    )
    assert response.status_code == 302
    team.refresh_from_db()
    # Kept in the studio's order: the team's first is local.
    assert team.allowed_providers == ["local", "wavespeed-emulator"]

    cards = _cards(alice_client.get(reverse("studio:job-estimate")).content.decode())
    assert list(cards) == ["local", "wavespeed-emulator"]


def test_a_team_with_one_allowed_provider_sees_no_choice(three, alice_client, team):
    team.allowed_providers = ["wavespeed-emulator"]
    team.save()

    html = alice_client.get(reverse("studio:job-create")).content.decode()

    assert 'name="provider"' not in html
    assert "WaveSpeed emulator" in html
    assert 'name="prompt"' in html


def test_job_create_refuses_a_provider_the_team_may_not_use(
    three, alice, team, tmp_path
):
    team.allowed_providers = ["local"]
    team.save()

    with pytest.raises(services.Rejected) as excinfo:
        services.job_create(
            team=team,
            user=alice,
            portrait=_portrait(team, alice),
            audio=_clip(team, alice, tmp_path, 2.0),
            resolution="480P",
            provider="wavespeed-emulator",
        )

    assert excinfo.value.message == (
        "Your team may not use WaveSpeed emulator. Choose Local preview, or ask a "
        "team admin to allow it on the team page."
    )


def test_members_may_not_change_the_team_providers(three, team, client):
    bob = make_member(team, "bob", Membership.Role.MEMBER)
    client.force_login(bob)

    client.post(
        reverse("studio:team-settings"), {"action": "providers", "providers": ["local"]}
    )

    team.refresh_from_db()
    assert team.allowed_providers == []


def test_an_unknown_provider_is_refused_on_the_team_page(three, alice_client, team):
    response = alice_client.post(
        reverse("studio:team-settings"),
        {"action": "providers", "providers": ["nope"]},
        follow=True,
    )

    assert "The providers were not saved." in response.content.decode()
    team.refresh_from_db()
    assert team.allowed_providers == []


# -- billing rules ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "billed"), [(0.4, "3"), (2.0, "3"), (3.2, "4"), (10.0, "10")]
)
def test_wavespeed_holds_input_seconds_rounded_up_at_least_3(three, seconds, billed):
    est = billing.estimate(
        provider="wavespeed-emulator", resolution="480P", audio_seconds=seconds
    )

    assert est.seconds == Decimal(billed)


def test_dashscope_holds_output_seconds_with_the_margin(three):
    est = billing.estimate(provider="emulator", resolution="480P", audio_seconds=10.0)

    assert est.seconds == billing.hold_seconds(10.0) == Decimal("11")


# -- manage.py generate -------------------------------------------------------------


def test_generate_takes_provider_and_model(three, alice, team, tmp_path, enqueued):
    wav = media_factories.make_wav(tmp_path / "voice.wav", 2.0)
    out = StringIO()

    call_command(
        "generate",
        team="acme",
        user="alice",
        portrait=str(ASTRONAUT),
        audio=str(wav),
        provider="wavespeed-emulator",
        model="s2v",
        prompt="Hello",
        stdout=out,
    )

    job = GenerationJob.objects.get()
    assert (job.provider, job.model, job.params) == (
        "wavespeed-emulator",
        "s2v",
        {"prompt": "Hello"},
    )
    assert "on WaveSpeed emulator" in out.getvalue()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"provider": "nope"}, "There is no provider called 'nope'. Use one of: local"),
        ({"provider": "dashscope"}, "DashScope is not offered by this studio"),
        ({"model": "emo"}, "There is no model called 'emo'. Use one of: s2v."),
    ],
)
def test_generate_refuses_an_unknown_choice_clearly(
    three, alice, team, tmp_path, option, message
):
    wav = media_factories.make_wav(tmp_path / "voice.wav", 2.0)

    with pytest.raises(CommandError, match=re.escape(message)):
        call_command(
            "generate",
            team="acme",
            user="alice",
            portrait=str(ASTRONAUT),
            audio=str(wav),
            **option,
        )
    assert not GenerationJob.objects.exists()


def test_the_job_page_shows_prompt_and_seed_only_when_kept(
    three, alice, alice_client, team, tmp_path, enqueued
):
    portrait, clip = _portrait(team, alice), _clip(team, alice, tmp_path, 2.0)
    plain = services.job_create(
        team=team, user=alice, portrait=portrait, audio=clip, resolution="480P"
    )
    tuned = services.job_create(
        team=team,
        user=alice,
        portrait=portrait,
        audio=clip,
        resolution="480P",
        provider="wavespeed-emulator",
        params={"prompt": "Softly", "seed": "5"},
    )

    plain_html = alice_client.get(plain.get_absolute_url()).content.decode()
    tuned_html = alice_client.get(tuned.get_absolute_url()).content.decode()

    assert "<dt>Seed</dt>" not in plain_html and "<dt>Prompt</dt>" not in plain_html
    assert "<dt>Prompt</dt><dd>Softly</dd>" in tuned_html
    assert "<dt>Seed</dt><dd>5</dd>" in tuned_html
    assert "<dd>WaveSpeed emulator</dd>" in tuned_html


def test_spend_by_provider_names_providers_by_their_label(three, alice, team):
    from studio import selectors
    from studio.models import LedgerEntry

    LedgerEntry.objects.create(
        team=team,
        user=alice,
        kind=LedgerEntry.Kind.GENERATION,
        provider="wavespeed-emulator",
        model=WAVESPEED.remote_model,
        unit=Price.Unit.SECOND,
        quantity=Decimal(3),
        unit_price=Decimal("0.03"),
        amount=Decimal("0.09"),
        seconds=Decimal(3),
        currency="USD",
        billed=True,
    )
    start = billing.month_start()

    rows = selectors.spend_by(
        team=team, start=start, end=start + timedelta(days=40), by="provider"
    )

    assert [(r.label, r.amount) for r in rows] == [
        ("WaveSpeed emulator", Decimal("0.09"))
    ]


def test_retry_keeps_provider_and_params_while_the_team_may_use_it(
    three, alice, team, tmp_path, enqueued
):
    job = services.job_create(
        team=team,
        user=alice,
        portrait=_portrait(team, alice),
        audio=_clip(team, alice, tmp_path, 2.0),
        resolution="480P",
        provider="wavespeed-emulator",
        params={"seed": "3"},
    )
    GenerationJob.objects.filter(pk=job.pk).update(status=GenerationJob.Status.FAILED)
    job.refresh_from_db()

    again = services.job_retry(job=job, user=alice)
    assert (again.provider, again.params) == ("wavespeed-emulator", {"seed": 3})

    # Once the team may no longer use it, a retry runs on the team's first.
    team.allowed_providers = ["local"]
    team.save()
    job.refresh_from_db()
    assert services.job_retry(job=job, user=alice).provider == "local"
