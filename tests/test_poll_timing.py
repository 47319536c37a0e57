"""Run times are learned from the provider's clock, and polls aim at the expected end."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from studio import services
from studio.models import GenerationJob
from studio.queue import poll, submit, timing

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)


@pytest.fixture
def fast_settings(settings):
    settings.S2V_POLL_INTERVAL = 15
    settings.S2V_POLL_FAST_INTERVAL = 2.0
    return settings


def make_job(inputs, alice, team, *, resolution="480P", **fields) -> GenerationJob:
    portrait, audio = inputs
    job = GenerationJob.objects.create(
        team=team,
        created_by=alice,
        portrait=portrait,
        audio=audio,
        resolution=resolution,
        provider="dashscope",
        **fields,
    )
    return GenerationJob.objects.select_related("audio").get(pk=job.pk)


def finished(inputs, alice, team, *, seconds, measured=True, resolution="480P"):
    """A job whose task ran `seconds`, by the provider's clock or only as noticed."""
    return make_job(
        inputs,
        alice,
        team,
        resolution=resolution,
        status=GenerationJob.Status.SUCCEEDED,
        remote_seconds=seconds,
        provider_scheduled_at=T0 if measured else None,
        provider_ended_at=T0 + timedelta(seconds=seconds) if measured else None,
    )


def test_a_task_that_ran_6_s_but_was_noticed_14_s_later_teaches_6_s(
    emu, checked_inputs, alice, team, enqueued, monkeypatch
):
    emu.configure(run_seconds_base=0.6)
    job = services.job_create(
        team=team,
        user=alice,
        portrait=checked_inputs[0],
        audio=checked_inputs[1],
        resolution="480P",
    )
    submit.dispatch_and_submit(provider_name="dashscope")
    deadline = time.monotonic() + 30
    while emu.account_state()["tasks"][0]["status"] != "SUCCEEDED":
        assert time.monotonic() < deadline, "the emulator never finished the task"
        time.sleep(0.1)
    task = emu.account_state()["tasks"][0]
    # The studio asks only now, 14 s after the task ended.
    later = timezone.now() + timedelta(seconds=14)
    monkeypatch.setattr(timezone, "now", lambda: later)

    poll.job_poll(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED, job.error_message
    ran = task["end_time"] - task["start_time"]
    assert job.remote_seconds == pytest.approx(ran, abs=0.002)
    # Not the 14 s it took the studio to notice: a loaded machine may stretch
    # the emulator's render, but never by 14 s.
    assert job.remote_seconds < 10
    assert job.provider_scheduled_at.timestamp() == pytest.approx(
        task["start_time"], abs=0.002
    )
    assert job.provider_ended_at.timestamp() == pytest.approx(
        task["end_time"], abs=0.002
    )
    assert timing.remote_ratio(
        provider_name="dashscope", resolution="480P"
    ) == pytest.approx(ran / job.audio.duration, abs=0.01)


def test_a_running_task_is_timed_from_the_provider_s_scheduled_time(
    emu, checked_inputs, alice, team, enqueued
):
    emu.configure(run_seconds_base=5.0)
    job = services.job_create(
        team=team,
        user=alice,
        portrait=checked_inputs[0],
        audio=checked_inputs[1],
        resolution="480P",
    )
    submit.dispatch_and_submit(provider_name="dashscope")

    poll.job_poll(job_id=job.pk)

    job.refresh_from_db()
    task = emu.account_state()["tasks"][0]
    assert job.status == GenerationJob.Status.RUNNING
    assert job.provider_scheduled_at.timestamp() == pytest.approx(
        task["start_time"], abs=0.002
    )
    # The submit's answer came after the provider started the task.
    assert job.remote_started_at == job.provider_scheduled_at


def test_provider_measured_run_times_win_over_noticed_ones(checked_inputs, alice, team):
    clip = checked_inputs[1].duration
    for _ in range(3):
        finished(checked_inputs, alice, team, seconds=6.0)
    for _ in range(5):
        finished(checked_inputs, alice, team, seconds=14.5, measured=False)

    ratio = timing.remote_ratio(provider_name="dashscope", resolution="480P")

    assert ratio == pytest.approx(6.0 / clip)


def test_noticed_run_times_are_used_only_without_measured_ones(
    checked_inputs, alice, team
):
    clip = checked_inputs[1].duration
    finished(checked_inputs, alice, team, seconds=14.0, measured=False)

    ratio = timing.remote_ratio(provider_name="dashscope", resolution="480P")

    assert ratio == pytest.approx(14.0 / clip)


def test_run_times_are_learned_per_resolution_and_robust_to_outliers(
    checked_inputs, alice, team
):
    clip = checked_inputs[1].duration
    for seconds in (6.0, 6.2, 5.9, 90.0):  # one task stuck behind a provider hiccup
        finished(checked_inputs, alice, team, seconds=seconds)
    for _ in range(3):
        finished(checked_inputs, alice, team, seconds=20.0, resolution="720P")

    low = timing.remote_ratio(provider_name="dashscope", resolution="480P")
    high = timing.remote_ratio(provider_name="dashscope", resolution="720P")

    assert low * clip == pytest.approx(6.1)
    assert high * clip == pytest.approx(20.0)


def plan_from_start(job: GenerationJob, *, until: float) -> list[float]:
    """Seconds after the start at which the dispatcher would ask, if never done."""
    job.remote_started_at = T0
    polls, now = [], T0
    while (now - T0).total_seconds() < until:
        now = timing.plan_next_poll(job, now=now)
        polls.append((now - T0).total_seconds())
    return polls


def test_a_short_task_is_asked_about_once_right_at_its_expected_end(
    fast_settings, checked_inputs, alice, team
):
    for _ in range(3):
        finished(checked_inputs, alice, team, seconds=6.0)
    job = make_job(checked_inputs, alice, team, status=GenerationJob.Status.RUNNING)

    polls = plan_from_start(job, until=12)

    end = 6.0 + timing.END_MARGIN
    assert polls[0] == pytest.approx(end)
    # Then tight polls in case it runs late.
    assert [b - a for a, b in itertools.pairwise(polls)] == [2.0] * (len(polls) - 1)


def test_a_long_task_gets_sparse_polls_then_one_shortly_before_and_one_at_the_end(
    fast_settings, checked_inputs, alice, team
):
    for _ in range(3):
        finished(checked_inputs, alice, team, seconds=60.0)
    job = make_job(checked_inputs, alice, team, status=GenerationJob.Status.RUNNING)

    polls = plan_from_start(job, until=66)

    end = 60.0 + timing.END_MARGIN
    before_end = [p for p in polls if p <= end + 1e-6]
    assert before_end[-1] == pytest.approx(end)
    assert before_end[-2] == pytest.approx(end - 2.0)
    gaps = [b - a for a, b in itertools.pairwise(before_end)]
    assert max([before_end[0], *gaps]) <= 15.0
    # At most one query per 10 s of the task while it runs on time.
    assert len(before_end) <= 6
    after = [p for p in polls if p > end + 1e-6]
    assert after[0] == pytest.approx(end + 2.0)


def test_a_long_overdue_task_eases_back_to_the_slow_pace(
    fast_settings, checked_inputs, alice, team
):
    for _ in range(3):
        finished(checked_inputs, alice, team, seconds=6.0)
    job = make_job(checked_inputs, alice, team, status=GenerationJob.Status.RUNNING)

    polls = plan_from_start(job, until=400)

    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert gaps[-1] == pytest.approx(15.0)
    assert all(a <= b + 1e-9 for a, b in itertools.pairwise(gaps))


def test_a_pending_task_keeps_the_slow_pace(fast_settings, checked_inputs, alice, team):
    job = make_job(checked_inputs, alice, team, status=GenerationJob.Status.SUBMITTED)

    assert timing.plan_next_poll(job, now=T0) == T0 + timedelta(seconds=15)


def test_the_eta_shown_uses_the_same_provider_measured_run_times(
    emu, checked_inputs, alice, team
):
    from studio.selectors import job_progress

    for _ in range(3):
        finished(checked_inputs, alice, team, seconds=6.0)
    for _ in range(5):
        finished(checked_inputs, alice, team, seconds=14.5, measured=False)
    job = make_job(checked_inputs, alice, team)

    progress = job_progress(job=job)

    assert progress.position == 1
    assert progress.eta_seconds == pytest.approx(6.0)
    assert timing.expected_remote_seconds(job) == pytest.approx(6.0)


def test_a_provider_that_calls_back_is_polled_only_as_a_backstop(
    fast_settings, checked_inputs, alice, team
):
    # WaveSpeed calls back when a task ends (§9.6), once the studio is public:
    # the callback asks for the poll that sees the end, so no tight polling
    # around the expected end; the slow pace covers a lost callback.
    for _ in range(3):
        finished(checked_inputs, alice, team, seconds=6.0)
    job = make_job(checked_inputs, alice, team, status=GenerationJob.Status.RUNNING)
    job.provider = "wavespeed"

    fast_settings.S2V_PUBLIC_BASE_URL = ""
    assert timing.calls_back("wavespeed") is False
    assert plan_from_start(job, until=12)[0] < 15.0  # aimed at the expected end

    fast_settings.S2V_PUBLIC_BASE_URL = "https://studio.example"
    assert timing.calls_back("wavespeed") is True
    polls = plan_from_start(job, until=60)
    assert [b - a for a, b in itertools.pairwise([0.0, *polls])] == [15.0] * len(polls)
    # DashScope has no per-task callback (§9.7): its polls still aim at the end.
    assert timing.calls_back("dashscope") is False
