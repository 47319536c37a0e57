"""django-q2's ORM and Redis brokers, plus knowing which clusters are alive.

The ORM broker locks a message it hands out until `retry` seconds later
(960 here): a cluster killed with SIGKILL leaves the messages it had taken,
running or waiting in its local queue, locked for 16 minutes. This broker
records who took each message (QueueLease) and has each cluster's sentinel
report every few seconds (QueueCluster). Any cluster then releases the
messages of clusters that stopped reporting, or whose process on this host is
gone, and takes back their jobs; a live cluster's messages are never touched.

The Redis broker pops a message when a cluster takes it, so what a killed
cluster had taken but not started is simply gone: with Redis, a dead cluster's
jobs are taken back and every queued local job is sent again (the conditional
claim makes a duplicate message a no-op).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf
from django_q.models import OrmQ

from . import scratch
from .models import QueueCluster, QueueLease

log = logging.getLogger(__name__)

BEAT_SECONDS = 5.0
# A cluster that has not reported for this long is dead, wherever it runs.
DEAD_AFTER = timedelta(seconds=30)

# The cluster this process belongs to: made where the sentinel builds its
# broker, and inherited by the pusher, monitor and workers it forks.
_cluster_name = ""


def current_cluster() -> str:
    """The name of the cluster running this process ("" outside a cluster)."""
    return _cluster_name


class _Heartbeat:
    """Names this process's cluster and reports it alive from the sentinel."""

    def __init__(self, list_key: str | None = None) -> None:
        global _cluster_name
        super().__init__(list_key=list_key)  # type: ignore[call-arg]
        if not _cluster_name:
            _cluster_name = f"{socket.gethostname()}:{uuid.uuid4().hex[:12]}"
        self._next_beat = 0.0
        # Since when this cluster's beats have all gone through. A cluster that
        # could not report (the database was away) must not judge the others
        # before they too had the time to report again.
        self._beating_since: float | None = None

    def set_stat(self, key: str, value: str, timeout: int) -> object:
        # Only the sentinel saves its status, every guard cycle (0.5 s): the
        # place for a cluster's heartbeat.
        now = time.monotonic()
        if now >= self._next_beat:
            first = self._next_beat == 0.0
            self._next_beat = now + BEAT_SECONDS
            since = self._beating_since if self._beating_since is not None else now
            try:
                cluster_beat(
                    first=first, judge=now - since > DEAD_AFTER.total_seconds()
                )
            except Exception:
                self._beating_since = None
                log.exception("queue cluster heartbeat failed")
            else:
                self._beating_since = since
        return super().set_stat(key, value, timeout)  # type: ignore[misc]


class StudioRedis(_Heartbeat, Redis):  # type: ignore[misc]
    """Redis broker whose clusters report alive, so a killed one's jobs come back."""


class StudioORM(_Heartbeat, ORM):  # type: ignore[misc]
    def dequeue(self) -> list[tuple[int, str]] | None:
        tasks = self.get_connection().filter(
            key=self.list_key, lock__lt=timezone.now()
        )[: Conf.BULK]
        if not tasks:
            time.sleep(Conf.POLL)  # an empty queue: spare the CPU, as ORM does
            return None
        taken = []
        for task in tasks:
            lock = self.timeout(task)
            # The lease is written with the lock, so no message is ever locked
            # without a record of who holds it.
            with transaction.atomic(using=Conf.ORM):
                if (
                    self.get_connection()
                    .filter(id=task.id, lock=task.lock)
                    .update(lock=lock)
                ):
                    QueueLease.objects.update_or_create(
                        message_id=task.pk,
                        defaults={"cluster": _cluster_name, "lock": lock},
                    )
                    taken.append((task.pk, task.payload))
        return taken

    def delete(self, task_id: int) -> None:
        super().delete(task_id)
        QueueLease.objects.filter(message_id=task_id).delete()


def cluster_beat(*, first: bool = False, judge: bool = True) -> None:
    """Report this cluster alive, then (if `judge`) recover what dead clusters left."""
    QueueCluster.objects.update_or_create(
        name=_cluster_name,
        defaults={
            "host": this_host(),
            "pid": os.getpid(),
            "beat_at": timezone.now(),
        },
    )
    if first:
        removed = scratch.clean_stale()
        if removed:
            log.warning("removed %d stale scratch entries", len(removed))
    if judge:
        release_dead_clusters()


def this_host() -> str:
    """This machine and process-id namespace: where a cluster's pid can be checked.

    Containers may share a host name but not their process ids.
    """
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()} {namespace}".strip()


def release_dead_clusters() -> list[str]:
    """Release the messages and take back the jobs of dead clusters. Returns their names."""
    from . import services

    now = timezone.now()
    host = this_host()
    dead = [
        cluster.name
        for cluster in QueueCluster.objects.exclude(name=_cluster_name)
        if cluster.beat_at < now - DEAD_AFTER
        or (cluster.host == host and not scratch.process_alive(cluster.pid))
    ]
    if not dead:
        return []
    released = 0
    for lease in QueueLease.objects.filter(cluster__in=dead):
        # Conditional on the lock it set: a message delivered again since is
        # another cluster's now.
        released += (
            OrmQ.objects.using(Conf.ORM)
            .filter(pk=lease.message_id, lock=lease.lock)
            .update(lock=now)
        )
    QueueLease.objects.filter(cluster__in=dead).delete()
    jobs = services.jobs_take_back(workers=dead)
    if not Conf.ORM:
        # Redis: the messages the dead cluster had popped are lost.
        jobs += services.jobs_resend_queued(exclude=jobs)
    QueueCluster.objects.filter(name__in=dead).delete()
    log.warning(
        "clusters %s are gone: released %d messages, took back jobs %s",
        ", ".join(dead),
        released,
        jobs,
    )
    return dead
