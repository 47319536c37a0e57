"""Releasing what a dead task-queue cluster held, and nothing a live one holds."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.db import DatabaseError
from django.utils import timezone
from django_q.models import OrmQ

from studio import broker, scratch, services
from studio.models import GenerationJob, QueueCluster, QueueLease

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(alice, team, checked_inputs, enqueued):
    portrait, audio = checked_inputs
    return services.job_create(
        team=team, user=alice, portrait=portrait, audio=audio, resolution="480P"
    )


def _gone_pid() -> int:
    """The id of a process that has exited and been collected."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _cluster(name: str, *, pid: int, host: str = "", beat_ago: float = 0) -> None:
    QueueCluster.objects.create(
        name=name,
        host=host or broker.this_host(),
        pid=pid,
        beat_at=timezone.now() - timedelta(seconds=beat_ago),
    )


def _taken_message(cluster: str) -> OrmQ:
    lock = timezone.now() + timedelta(seconds=960)
    message = OrmQ.objects.create(key="s2v", payload="x", lock=lock)
    QueueLease.objects.create(message_id=message.pk, cluster=cluster, lock=lock)
    return message


def _running(job: GenerationJob, *, worker: str) -> None:
    GenerationJob.objects.filter(pk=job.pk).update(
        status=GenerationJob.Status.RUNNING,
        attempts=1,
        worker=worker,
        heartbeat_at=timezone.now(),
    )


def test_a_killed_clusters_messages_and_jobs_are_released_and_a_live_ones_are_not(
    job, enqueued, django_capture_on_commit_callbacks
):
    _cluster("dead", pid=_gone_pid())
    _cluster("live", pid=os.getpid())
    dead_message, live_message = _taken_message("dead"), _taken_message("live")
    _running(job, worker="dead")
    enqueued.clear()

    with django_capture_on_commit_callbacks(execute=True):
        assert broker.release_dead_clusters() == ["dead"]

    dead_message.refresh_from_db()
    live_message.refresh_from_db()
    now = timezone.now()
    assert dead_message.lock <= now  # deliverable at once
    assert live_message.lock > now + timedelta(seconds=900)
    assert list(QueueLease.objects.values_list("cluster", flat=True)) == ["live"]
    assert list(QueueCluster.objects.values_list("name", flat=True)) == ["live"]
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.QUEUED
    assert [func for func, _ in enqueued] == ["studio.tasks.job_run"]


@pytest.mark.parametrize("orm", [True, False], ids=["orm", "redis"])
def test_queued_jobs_are_sent_again_only_when_the_broker_may_have_lost_them(
    job, enqueued, django_capture_on_commit_callbacks, monkeypatch, orm
):
    # Redis pops a message when a cluster takes it: a killed cluster's queued
    # work is gone with it. The ORM broker keeps the message and releases it.
    monkeypatch.setattr(broker.Conf, "ORM", "default" if orm else None)
    _cluster("dead", pid=_gone_pid())
    enqueued.clear()

    with django_capture_on_commit_callbacks(execute=True):
        assert broker.release_dead_clusters() == ["dead"]

    job.refresh_from_db()
    assert job.status == GenerationJob.Status.QUEUED
    sent = [args for func, args in enqueued if func == "studio.tasks.job_run"]
    assert sent == ([] if orm else [(job.pk,)])


def test_a_live_clusters_running_job_is_left_alone(job, enqueued):
    _cluster("live", pid=os.getpid())
    _running(job, worker="live")
    message = _taken_message("live")

    assert broker.release_dead_clusters() == []

    job.refresh_from_db()
    assert job.status == GenerationJob.Status.RUNNING and job.worker == "live"
    message.refresh_from_db()
    assert message.lock > timezone.now()


def test_a_cluster_elsewhere_is_dead_once_it_stops_reporting(job):
    # On another host its process cannot be checked; only its silence counts.
    _cluster("quiet", pid=os.getpid(), host="elsewhere", beat_ago=5)
    _cluster("silent", pid=os.getpid(), host="elsewhere", beat_ago=60)
    assert broker.release_dead_clusters() == ["silent"]


def test_a_message_delivered_again_since_is_not_released(job):
    _cluster("dead", pid=_gone_pid())
    message = _taken_message("dead")
    # Its lock ran out and another cluster took it: a new lock, a new lease.
    relocked = timezone.now() + timedelta(seconds=900)
    OrmQ.objects.filter(pk=message.pk).update(lock=relocked)

    assert broker.release_dead_clusters() == ["dead"]  # judged dead, and yet

    message.refresh_from_db()
    assert message.lock == relocked
    assert not QueueLease.objects.filter(cluster="dead").exists()


def test_a_job_run_records_the_cluster_that_claimed_it(job, monkeypatch):
    monkeypatch.setattr(broker, "_cluster_name", "host:abc")
    services.job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED
    assert job.worker == "host:abc"


def test_scratch_left_by_a_dead_process_is_removed_and_a_live_ones_kept(
    settings, tmp_path: Path
):
    settings.S2V_SCRATCH_DIR = tmp_path
    mine = scratch.make_dir("s2v-render-abc")
    stale = tmp_path / f"s2v-render-abc-p{_gone_pid()}-x1y2"
    (stale / "frames").mkdir(parents=True)
    (stale / "frames" / "0001.png").write_bytes(b"png")
    stale_file = tmp_path / f"s2v-input-p{_gone_pid()}-q.wav"
    stale_file.write_bytes(b"wav")

    removed = scratch.clean_stale()

    assert sorted(removed) == sorted([stale.name, stale_file.name])
    assert not stale.exists() and not stale_file.exists()
    assert mine.is_dir()


def test_a_render_leaves_nothing_in_scratch(job, settings, tmp_path: Path):
    settings.S2V_SCRATCH_DIR = tmp_path / "scratch"
    services.job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED
    assert list((tmp_path / "scratch").iterdir()) == []


def test_a_cluster_judges_the_others_only_after_reporting_for_a_while(monkeypatch):
    # After the database was away, every cluster's beat is stale: the first one
    # back must not take the others' work before they could report again.
    judged: list[bool] = []
    outage = {3}

    def beat(*, first: bool, judge: bool) -> None:
        judged.append(judge)
        if len(judged) in outage:
            raise DatabaseError("the database is away")

    clock = [1000.0]
    monkeypatch.setattr(broker, "cluster_beat", beat)
    monkeypatch.setattr(broker, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    sentinel = broker.StudioORM(list_key="s2v")
    for at in (1000, 1040, 1045, 1050, 1060, 1081):
        clock[0] = float(at)
        sentinel.set_stat("stat", "x", 3)

    assert judged == [False, True, True, False, False, True]
