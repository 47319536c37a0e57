"""The django-q2 ORM broker's bookkeeping: live clusters and the messages they hold."""

from __future__ import annotations

from django.db import models


class QueueCluster(models.Model):
    """A django-q2 cluster on the ORM broker, as its sentinel last reported.

    A row whose beat is stale, or whose process on this host is gone, is a dead
    cluster: its messages are released and its jobs taken back
    (studio.broker.release_dead_clusters), then the row is deleted.
    """

    name = models.CharField(max_length=100, unique=True)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField(auto_now_add=True)
    beat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} (pid {self.pid} on {self.host})"


class QueueLease(models.Model):
    """Which cluster took an ORM-broker message (django_q's OrmQ row), and when.

    `lock` is the OrmQ lock the cluster set, so releasing the message cannot
    undo a later delivery of it.
    """

    message_id = models.BigIntegerField(unique=True)
    cluster = models.CharField(max_length=100, db_index=True)
    lock = models.DateTimeField()

    def __str__(self) -> str:
        return f"message {self.message_id} held by {self.cluster}"
