"""wan-2.2-animate on WaveSpeed (provider-api.md §9.6): the client against the emulator."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from studio.media.render import output_size
from studio.media.video import probe_video
from studio.models import Price
from studio.providers.wavespeed.catalog import (
    ANIMATE_BILLING,
    ANIMATE_MODEL,
    ANIMATE_MODES,
    ANIMATE_PRICES,
    S2V_MODEL,
)
from studio.providers.wavespeed.client import (
    ErrorKind,
    Prediction,
    WaveSpeedClient,
    WaveSpeedError,
    parse_prediction,
)
from studio.providers.wavespeed.provider import failure
from studio.providers.wavespeed.webhooks import verify
from tests import media_factories
from tests.loopback import Hook

KEY = "ws-emulator"
ANIMATE = f"/api/v3/{ANIMATE_MODEL}"
TERMINAL = ("completed", "failed")
FPS = 16  # the emulator's animate frame rate
OMIT = object()  # a field left out of the body


@pytest.fixture
def client(ws_emu: Any) -> Any:
    wavespeed = WaveSpeedClient(api_key=KEY, base_url=ws_emu.base_url)
    yield wavespeed
    wavespeed.close()


def uploaded(client: WaveSpeedClient, path: Path, content_type: str) -> str:
    return client.upload(path=path, filename=path.name, content_type=content_type)


def inputs(client: WaveSpeedClient, video: Path) -> tuple[str, str]:
    """Download URLs of the uploaded astronaut and `video` (§9.4)."""
    image = uploaded(client, media_factories.ASTRONAUT, "image/png")
    return image, uploaded(client, video, "video/mp4")


def wait(client: WaveSpeedClient, prediction_id: str) -> Prediction:
    deadline = time.monotonic() + 60
    while True:
        prediction = client.result(prediction_id)
        if prediction.status in TERMINAL or time.monotonic() > deadline:
            return prediction
        time.sleep(0.02)


def made(
    client: WaveSpeedClient, video: Path, mode: str = "animate", **kw: Any
) -> Prediction:
    image_url, video_url = inputs(client, video)
    submitted = client.submit_animate(
        image_url, video_url, mode=mode, resolution=kw.pop("resolution", "480p"), **kw
    )
    assert submitted.status == "created"
    return wait(client, submitted.id)


def refusal(ws_emu: Any, body: dict[str, Any]) -> str:
    """The message of a 400 answer to a raw animate submit, after its shape."""
    response = httpx.post(
        ws_emu.base_url + ANIMATE,
        json=body,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    answer = response.json()
    assert set(answer) == {"code", "message"} and answer["code"] == 400
    message: str = answer["message"]
    return message


# Catalog data


def test_catalog_maps_move_and_mix_and_bills_at_least_five_seconds():
    assert ANIMATE_MODES == {"move": "animate", "mix": "replace"}
    assert {"480P": Decimal("0.04"), "720P": Decimal("0.08")} == ANIMATE_PRICES
    assert ANIMATE_BILLING.basis == "output"
    assert ANIMATE_BILLING.seconds(Decimal("2.5")) == 5
    assert ANIMATE_BILLING.seconds(Decimal("42.5")) == Decimal("42.5")


@pytest.mark.django_db
def test_prices_are_seeded_for_wavespeed_and_its_emulator():
    rows = Price.objects.filter(model=ANIMATE_MODEL).values_list(
        "provider", "resolution", "unit", "currency", "unit_price"
    )
    assert sorted(rows) == [
        (provider, resolution, "second", "USD", ANIMATE_PRICES[resolution])
        for provider in ("wavespeed", "wavespeed-emulator")
        for resolution in ("480P", "720P")
    ]


# Over HTTP against the emulator


@pytest.mark.parametrize("mode", ["animate", "replace"])
@pytest.mark.parametrize("resolution", ["480p", "720p"])
def test_animate_makes_a_decodable_mp4_as_long_as_the_reference(
    client, ws_emu, reference, tmp_path, mode, resolution
):
    prediction = made(client, reference, mode, resolution=resolution, prompt="dance")

    assert prediction.status == "completed", prediction.error
    assert prediction.model == ANIMATE_MODEL
    assert (prediction.mode, prediction.resolution) == (mode, resolution)
    assert not prediction.nsfw and len(prediction.outputs) == 1
    out = tmp_path / "result.mp4"
    with out.open("wb") as fh:
        assert (
            client.download(prediction.outputs[0], fh, max_bytes=10**8) == "video/mp4"
        )
    info = probe_video(out)
    assert info.duration == pytest.approx(2.5, abs=1 / FPS)
    assert (info.width, info.height) == output_size(320, 240, resolution.upper())
    with av.open(str(out)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == round(2.5 * FPS)
    state = ws_emu.store.prediction_state(ws_emu.store.predictions[prediction.id])
    assert state["mode"] == mode
    assert state["reference_duration"] == pytest.approx(2.5, abs=0.05)
    assert state["audio_duration"] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image": OMIT}, "image is required"),
        ({"video": OMIT}, "video is required"),
        ({"video": "  "}, "video is required"),
        ({"mode": "move"}, "mode must be one of animate, replace"),
        ({"mode": None}, "mode must be one of animate, replace"),  # JSON null
        ({"resolution": "1080p"}, "resolution must be one of 480p, 720p"),
        ({"seed": "7"}, "seed must be an integer"),
    ],
)
def test_missing_or_bad_fields_are_refused_with_the_envelope(
    client, ws_emu, reference, change, message
):
    image_url, video_url = inputs(client, reference)
    body = {"image": image_url, "video": video_url, "mode": "animate", **change}
    body = {name: value for name, value in body.items() if value is not OMIT}

    assert refusal(ws_emu, body) == message
    assert ws_emu.state()["predictions"] == []


def test_a_missing_mode_animates(client, ws_emu, reference):
    image_url, video_url = inputs(client, reference)
    response = httpx.post(
        ws_emu.base_url + ANIMATE,
        json={"image": image_url, "video": video_url},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert wait(client, response.json()["data"]["id"]).status == "completed"


def test_the_client_reads_a_refusal_as_the_inputs_fault(client, reference):
    image_url, _ = inputs(client, reference)
    with pytest.raises(WaveSpeedError) as caught:
        client.submit_animate(image_url, image_url, mode="animate", resolution="480p")
    assert caught.value.kind == ErrorKind.INPUT
    assert caught.value.status == 400
    assert str(caught.value) == "video is not a valid video file"


def test_a_video_longer_than_120_seconds_is_refused(client, ws_emu, tmp_path):
    long = media_factories.make_reference_mp4(
        tmp_path / "long.mp4", 121, size=(64, 48), fps=1
    )
    image_url, video_url = inputs(client, long)
    with pytest.raises(WaveSpeedError) as caught:
        client.submit_animate(image_url, video_url, mode="animate", resolution="480p")
    assert (caught.value.status, str(caught.value)) == (
        400,
        "video is longer than 120 seconds",
    )
    assert ws_emu.state()["predictions"] == []


def test_an_audio_only_file_is_no_video(client, ws_emu, tmp_path):
    wav = media_factories.make_wav(tmp_path / "voice.wav", 1.0)
    image_url = uploaded(client, media_factories.ASTRONAUT, "image/png")
    sound_url = uploaded(client, wav, "audio/wav")
    assert (
        refusal(ws_emu, {"image": image_url, "video": sound_url, "mode": "animate"})
        == "video is not a valid video file"
    )


def s2v(client: WaveSpeedClient, tmp_path: Path) -> Prediction:
    """A speech-to-video prediction, submitted and waited for."""
    wav = media_factories.make_wav(tmp_path / "voice.wav", 0.6)
    submitted = client.submit(
        image_url=uploaded(client, media_factories.ASTRONAUT, "image/png"),
        audio_url=uploaded(client, wav, "audio/wav"),
    )
    return wait(client, submitted.id)


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "fail_task"},
        {"kind": "fail_task", "message": "Task timed out, try again"},
        {"kind": "nsfw", "mode": "failed"},
        {"kind": "nsfw", "mode": "completed"},
    ],
)
def test_failure_and_nsfw_faults_read_as_the_s2v_ones(
    client, ws_emu, reference, tmp_path, fault
):
    ws_emu.faults(fault)
    animated = made(client, reference)
    ws_emu.faults(fault)
    spoken = s2v(client, tmp_path)

    def reading(p: Prediction) -> tuple[Any, ...]:
        return (p.status, p.error, p.nsfw, p.outputs, failure(p.status, p.error))

    assert animated.model == ANIMATE_MODEL and spoken.model == S2V_MODEL
    assert reading(animated) == reading(spoken)
    assert animated.status == (
        "completed" if fault.get("mode") == "completed" else "failed"
    )
    assert animated.nsfw == (fault["kind"] == "nsfw")


def test_a_webhook_is_delivered_signed_when_the_animation_ends(
    client, ws_emu, reference, hook: Hook
):
    secret = client.webhook_secret()
    done = made(client, reference, "replace", webhook=hook.url)

    [call] = hook.wait(1)
    assert verify(call["headers"], call["raw"], secret, now=time.time())
    sent = parse_prediction(json.loads(call["raw"]))
    assert (sent.id, sent.status, sent.model) == (done.id, "completed", ANIMATE_MODEL)
    assert sent.outputs == done.outputs and sent.mode == "replace"


def test_a_failed_animation_calls_back_too(client, ws_emu, reference, hook: Hook):
    ws_emu.faults(kind="fail_task")
    done = made(client, reference, webhook=hook.url)

    [call] = hook.wait(1)
    assert verify(call["headers"], call["raw"], client.webhook_secret(), time.time())
    assert parse_prediction(json.loads(call["raw"])).status == done.status == "failed"


# Limits, faults and retention shared with speech-to-video


def test_animate_and_s2v_share_the_bronze_tiers_three_slots(client, ws_emu, reference):
    ws_emu.configure(hold=True)
    image_url, video_url = inputs(client, reference)
    for _ in range(3):
        client.submit_animate(image_url, video_url, mode="animate", resolution="480p")

    with pytest.raises(WaveSpeedError) as caught:
        client.submit(image_url=image_url, audio_url=video_url)
    assert (caught.value.status, caught.value.kind) == (429, ErrorKind.TRANSIENT)
    assert caught.value.retry_after == 1


@pytest.mark.parametrize(
    ("fault", "status"),
    [({"kind": "throttle", "retry_after": 2}, 429), ({"kind": "server_error"}, 500)],
)
def test_request_faults_hit_the_animate_submit(
    client, ws_emu, reference, fault, status
):
    image_url, video_url = inputs(client, reference)
    ws_emu.faults({**fault, "route": "submit"})
    with pytest.raises(WaveSpeedError) as caught:
        client.submit_animate(image_url, video_url, mode="animate", resolution="480p")
    assert caught.value.status == status
    assert caught.value.unanswered == (status >= 500)


def test_a_dropped_answer_leaves_the_prediction_to_be_found(client, ws_emu, reference):
    image_url, video_url = inputs(client, reference)
    ws_emu.faults(kind="drop", when="after", route="submit")
    with pytest.raises(WaveSpeedError) as caught:
        client.submit_animate(image_url, video_url, mode="animate", resolution="480p")
    assert caught.value.unanswered
    [listed] = client.list_predictions().items
    assert listed.model == ANIMATE_MODEL and listed.mode == "animate"


def test_animate_predictions_are_deleted_after_seven_scaled_days(
    client, ws_emu, reference
):
    prediction = made(client, reference)
    ws_emu.advance_clock(7 * 24 * 3600 / 1000 + 1)
    with pytest.raises(WaveSpeedError) as caught:
        client.result(prediction.id)
    assert caught.value.kind == ErrorKind.NOT_FOUND
