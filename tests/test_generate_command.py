"""`manage.py generate`: the same checks and queue as the web page, for scripts."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.utils.module_loading import import_string

from studio.models import GenerationJob
from tests.conftest import ASTRONAUT, ROCKET


@pytest.fixture
def worker_inline(monkeypatch):
    """Run each queued task at once, as if a qcluster picked it up."""
    monkeypatch.setattr(
        "studio.services.jobs.async_task",
        lambda func, *args, **kw: import_string(func)(*args),
    )


@pytest.mark.django_db(transaction=True)
def test_generate_with_wait_prints_status_cost_and_path(
    alice, wav, worker_inline, capsys
):
    call_command(
        "generate",
        "--team",
        "acme",
        "--user",
        "alice",
        "--portrait",
        str(ASTRONAUT),
        "--audio",
        str(wav),
        "--resolution",
        "480P",
        "--title",
        "From a script",
        "--wait",
    )

    out = capsys.readouterr().out
    job = GenerationJob.objects.get()
    assert job.status == "succeeded" and job.title == "From a script"
    assert "Succeeded: 2.0 s, cost 0.000000 USD" in out
    try:
        location = job.video.path
    except NotImplementedError:  # S3: the command prints the storage name
        location = job.video.name
    assert location in out


@pytest.mark.django_db
def test_generate_without_wait_only_queues(
    alice, wav, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "generate",
            team="acme",
            user="alice",
            portrait=str(ASTRONAUT),
            audio=str(wav),
        )

    job = GenerationJob.objects.get()
    assert job.status == "queued"
    assert enqueued == [("studio.tasks.job_run", (job.pk,))]


@pytest.mark.django_db
def test_generate_refuses_a_portrait_without_a_face(alice, wav, enqueued):
    with pytest.raises(CommandError, match="No face found"):
        call_command(
            "generate", team="acme", user="alice", portrait=str(ROCKET), audio=str(wav)
        )

    assert not GenerationJob.objects.exists()


@pytest.mark.django_db
def test_generate_refuses_audio_over_the_limit(alice, wav, enqueued, settings):
    settings.S2V_LOCAL_MAX_AUDIO_SECONDS = 1

    with pytest.raises(CommandError, match="over the 1 s limit"):
        call_command(
            "generate",
            team="acme",
            user="alice",
            portrait=str(ASTRONAUT),
            audio=str(wav),
        )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"team": "nope", "user": "alice"}, "No team"),
        ({"team": "acme", "user": "mallory"}, "not a member"),
    ],
)
def test_generate_names_what_is_wrong_with_team_or_user(
    alice, mallory, wav, options, message
):
    with pytest.raises(CommandError, match=message):
        call_command("generate", portrait=str(ASTRONAUT), audio=str(wav), **options)


@pytest.mark.django_db
def test_generate_with_a_missing_file_says_so(alice, tmp_path):
    with pytest.raises(CommandError, match="is not a file"):
        call_command(
            "generate",
            team="acme",
            user="alice",
            portrait=str(tmp_path / "x.jpg"),
            audio=str(tmp_path / "y.wav"),
        )


@pytest.mark.django_db(transaction=True)
def test_generate_with_wait_exits_non_zero_when_the_job_fails(alice, wav, monkeypatch):
    from studio.providers.base import ProviderError
    from studio.providers.local import LocalProvider

    def broken(self, request, progress):
        raise ProviderError("Rendering broke.")

    monkeypatch.setattr(LocalProvider, "start", broken)
    monkeypatch.setattr(
        "studio.services.jobs.async_task",
        lambda func, *args, **kw: import_string(func)(*args),
    )

    with pytest.raises(CommandError, match="Failed: Rendering broke"):
        call_command(
            "generate",
            team="acme",
            user="alice",
            portrait=str(ASTRONAUT),
            audio=str(wav),
            wait=True,
        )
