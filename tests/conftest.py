from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from studio.models import Membership, Team, User
from tests import media_factories
from tests.loopback import Hook, receive_hooks

FIXTURES = Path(__file__).parent / "fixtures"
ASTRONAUT = FIXTURES / "astronaut.png"
ROCKET = FIXTURES / "rocket.jpg"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never leave this machine: outbound HTTP except to loopback fails."""
    real = httpx.HTTPTransport.handle_request

    def guard(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        if not _is_loopback(request.url.host):
            raise RuntimeError(
                f"Outbound HTTP in tests: {request.method} {request.url}"
            )
        return real(self, request)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", guard)


@pytest.fixture
def team(db: None) -> Team:
    return Team.objects.create(name="Acme", slug="acme")


@pytest.fixture
def other_team(db: None) -> Team:
    return Team.objects.create(name="Globex", slug="globex")


def make_member(team: Team, username: str, role: str = Membership.Role.MEMBER) -> User:
    user = User.objects.create_user(username, password="pw-" + username)
    Membership.objects.create(user=user, team=team, role=role)
    return user


@pytest.fixture
def alice(team: Team) -> User:
    return make_member(team, "alice", Membership.Role.ADMIN)


@pytest.fixture
def mallory(other_team: Team) -> User:
    """A member of another team: everything of Acme's must be a 404 to her."""
    return make_member(other_team, "mallory")


@pytest.fixture
def alice_client(alice: User) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def mallory_client(mallory: User) -> Client:
    client = Client()
    client.force_login(mallory)
    return client


def upload(path: Path, name: str | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name or path.name, path.read_bytes())


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    return media_factories.make_wav(tmp_path / "voice.wav", 2.0)


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[Any, ...]]]:
    """Task messages the code under test sends, captured instead of queued."""
    calls: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setattr(
        "studio.services.jobs.async_task",
        lambda func, *args, **kw: calls.append((func, args)),
    )
    return calls


@pytest.fixture
def run_enqueued(
    enqueued: list[tuple[str, tuple[Any, ...]]],
) -> Callable[[], int]:
    """Runs captured task messages in order, as a worker would; returns how many ran."""
    from django.utils.module_loading import import_string

    def run() -> int:
        count = 0
        while enqueued:
            func, args = enqueued.pop(0)
            import_string(func)(*args)
            count += 1
        return count

    return run


@pytest.fixture
def checked_inputs(alice: User, team: Team, wav: Path) -> Iterator[tuple[Any, Any]]:
    """A passing portrait and a fitting clip, stored for Acme."""
    from studio import services

    portrait = services.portrait_submit(team=team, user=alice, upload=upload(ASTRONAUT))
    audio = services.audio_submit(team=team, user=alice, upload=upload(wav))
    assert portrait.portrait is not None and audio.clip is not None
    yield portrait.portrait, audio.clip


@pytest.fixture(scope="session")
def emulator() -> Iterator[Any]:
    """One DashScope emulator on loopback for the session; tests reset it."""
    from studio.emulators.dashscope.server import Emulator

    with Emulator(run_seconds_base=0.3, quiet=True) as running:
        yield running


@pytest.fixture
def emu(emulator: Any, settings: Any) -> Any:
    """The studio configured for DashScope, talking to a freshly reset emulator."""
    emulator.reset()
    settings.S2V_PROVIDER = "dashscope"
    settings.DASHSCOPE_API_KEY = "sk-emulator"
    settings.S2V_DASHSCOPE_BASE_URL = emulator.base_url
    settings.S2V_INPUT_URLS = "upload"
    settings.S2V_CURRENCY = "USD"
    return emulator


@pytest.fixture(scope="session")
def wavespeed_emulator() -> Iterator[Any]:
    """One WaveSpeed emulator on loopback for the session; tests reset it.

    time_scale 1000: created/processing delays of 1 ms and 3 ms, the
    rate-limit minute 60 ms, retention 7 days = 605 s. Key `ws-emulator`
    (bronze: 3 concurrent tasks).
    """
    from studio.emulators.wavespeed import WaveSpeedEmulator

    with WaveSpeedEmulator(time_scale=1000, quiet=True) as running:
        yield running


@pytest.fixture
def ws_emu(wavespeed_emulator: Any, settings: Any) -> Any:
    """The studio configured for the WaveSpeed emulator only, freshly reset.

    The "wavespeed-emulator" provider is built from S2V_WAVESPEED_EMULATOR_PORT
    (key `ws-emulator`, Bronze: 3 concurrent tasks). No public base URL, so no
    webhooks unless a test sets S2V_PUBLIC_BASE_URL.
    """
    wavespeed_emulator.reset()
    settings.S2V_PROVIDER = "wavespeed-emulator"
    settings.S2V_PROVIDERS = ["wavespeed-emulator"]
    settings.S2V_WAVESPEED_EMULATOR_PORT = wavespeed_emulator.port
    settings.S2V_WAVESPEED_CONCURRENCY = 3
    settings.S2V_PUBLIC_BASE_URL = ""
    settings.S2V_CURRENCY = "USD"
    return wavespeed_emulator


@pytest.fixture
def hook() -> Iterator[Hook]:
    """A webhook receiver on loopback: `hook.url`, `hook.wait(n)`, `hook.fail`."""
    yield from receive_hooks()


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    """A 2.5 s, 320×240, 10 fps H.264 MP4: an animate model's reference video."""
    return media_factories.make_reference_mp4(tmp_path / "dance.mp4", 2.5)
