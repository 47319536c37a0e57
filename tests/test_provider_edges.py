"""Edges found in review of the multi-provider work: each would cost money or hide
a fault if it broke again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.utils import timezone

from studio import catalog, health, lifecycle, tasks
from studio.media.video import VideoInfo
from studio.models import GenerationJob
from studio.providers.base import ProviderError
from studio.providers.wavespeed import provider as ws_provider
from studio.queue import poll
from tests import media_factories
from tests.test_wavespeed_flow import drive, inputs_for, queue
from tests.test_wavespeed_provider import prediction


@pytest.fixture
def ws_inputs(ws_emu: Any, alice: Any, team: Any, tmp_path: Path) -> tuple[Any, Any]:
    """A passing portrait and a 1 s clip, for the WaveSpeed emulator."""
    return inputs_for(alice, team, media_factories.make_wav(tmp_path / "v.wav", 1.0))


def test_a_listing_longer_than_the_pages_read_is_an_error_not_a_miss(
    monkeypatch: Any,
) -> None:
    """A lost task may sit on a page the sweep never read: say so, never 'not there'."""
    from tests.test_wavespeed_provider import make_provider

    monkeypatch.setattr(ws_provider, "LIST_PAGE_SIZE", 1)
    monkeypatch.setattr(ws_provider, "LIST_MAX_PAGES", 2)
    since = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    recent = (since + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "1"))
        item = prediction("completed", f"pred_{page}", created_at=recent)
        data = {"items": [item], "page": page, "page_size": 1, "total": 50}
        return httpx.Response(
            200, json={"code": 200, "message": "success", "data": data}
        )

    provider = make_provider(handler)  # type: ignore[arg-type]
    with pytest.raises(ProviderError) as caught:
        provider.listed_tasks(since=since)
    assert caught.value.code == "listing_incomplete"
    assert not caught.value.permanent


def test_a_task_wavespeed_does_not_know_minutes_after_the_send_is_asked_again(
    ws_inputs: Any, alice: Any, team: Any
) -> None:
    """A 404 for a fresh task is a hiccup; only after the 7-day lifetime is it expired."""
    job = queue(alice, team, ws_inputs)
    drive(job)  # a real task, so the job is a sent WaveSpeed job
    job.refresh_from_db()
    GenerationJob.objects.filter(pk=job.pk).update(
        status=GenerationJob.Status.SUBMITTED,
        remote_task_id="not-a-known-id",
        remote_status="created",
        result_url="",
        submit_started_at=timezone.now() - timedelta(minutes=5),
        finished_at=None,
    )

    poll.job_poll(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUBMITTED
    planned = job.task.next_poll_at
    assert planned is not None and planned > timezone.now()

    lifetime = catalog.provider(job.provider).task_lifetime
    assert lifetime == timedelta(days=7)
    GenerationJob.objects.filter(pk=job.pk).update(
        submit_started_at=timezone.now() - lifetime - timedelta(minutes=1)
    )
    poll.job_poll(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.FAILED
    assert "7 days" in job.error_message


def test_an_enabled_provider_without_its_key_stops_the_studio_at_start(
    settings: Any,
) -> None:
    settings.S2V_PROVIDERS = ["local", "wavespeed"]
    settings.S2V_PROVIDER = "local"
    settings.WAVESPEED_API_KEY = ""
    with pytest.raises(SystemCheckError, match="WAVESPEED_API_KEY"):
        call_command("check")
    settings.WAVESPEED_API_KEY = "ws-key"
    call_command("check")


@pytest.mark.django_db
def test_the_health_check_asks_every_enabled_remote_provider(
    settings: Any, monkeypatch: Any
) -> None:
    settings.S2V_PROVIDERS = ["local", "emulator", "wavespeed-emulator"]
    settings.S2V_PROVIDER = "local"
    health._provider_cache.clear()
    asked: list[str] = []

    def get(url: str, **kwargs: Any) -> None:
        asked.append(url)
        if str(settings.S2V_WAVESPEED_EMULATOR_PORT) in url:
            raise httpx.ConnectError("refused")

    monkeypatch.setattr(health.httpx, "get", get)
    answer = health.check_provider()
    health._provider_cache.clear()
    assert set(answer["providers"]) == {"emulator", "wavespeed-emulator"}
    assert len(asked) == 2
    assert answer["ok"] is False
    assert "wavespeed-emulator" in answer["error"]
    assert answer["providers"]["emulator"]["ok"] is True


def test_billed_seconds_nobody_reported_follow_the_offers_rule(
    ws_inputs: Any, alice: Any, team: Any
) -> None:
    """WaveSpeed bills the input rounded up, at least 3 s: never the video's 1.04 s."""
    job = queue(alice, team, ws_inputs)
    fallback = lifecycle._billed_fallback(
        job,
        VideoInfo(
            duration=1.04, width=480, height=480, video_codec="h264", audio_codec="aac"
        ),
    )
    assert fallback == Decimal(3)


def test_the_schedule_reconciles_each_enabled_remote_provider(
    settings: Any, monkeypatch: Any
) -> None:
    settings.S2V_PROVIDERS = ["local", "emulator", "wavespeed-emulator"]
    settings.S2V_PROVIDER = "local"
    seen: list[str | None] = []

    def fake(*, provider_name: str | None = None, **kwargs: Any) -> None:
        seen.append(provider_name)

    monkeypatch.setattr(tasks.reconcile, "reconcile", fake)
    tasks.reconcile_account()
    assert seen == ["emulator", "wavespeed-emulator"]


def test_a_remote_provider_without_a_price_in_the_site_currency_is_refused(
    ws_inputs: Any, alice: Any, team: Any, settings: Any
) -> None:
    """WaveSpeed is priced in USD only: on a CNY site it would cost ¥0 here and real
    money there, so the studio refuses it until an admin adds a CNY price."""
    from studio import services
    from studio.models import Price

    settings.S2V_CURRENCY = "CNY"
    portrait, audio = ws_inputs
    with pytest.raises(services.Rejected, match="no 480P price in CNY") as caught:
        services.job_create(
            team=team, user=alice, portrait=portrait, audio=audio, resolution="480P"
        )
    assert caught.value.code == "price"
    assert not GenerationJob.objects.exists()

    Price.objects.create(
        provider="wavespeed-emulator",
        model="wavespeed-ai/wan-2.2/speech-to-video",
        unit=Price.Unit.SECOND,
        resolution="480P",
        currency="CNY",
        unit_price=Decimal("0.22"),
        valid_from=timezone.now() - timedelta(days=1),
    )
    job = services.job_create(
        team=team, user=alice, portrait=portrait, audio=audio, resolution="480P"
    )
    assert job.estimate == Decimal("0.66")  # 3 s minimum at ¥0.22
