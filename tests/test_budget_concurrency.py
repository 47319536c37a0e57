"""Concurrent submits against one budget: row locks on PostgreSQL let exactly enough through."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection, connections

from studio import services
from studio.models import Budget, GenerationJob, Price

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="row locks do nothing on SQLite; this runs in the PostgreSQL pass of make test",
    ),
]


def test_twenty_concurrent_submits_against_a_budget_for_five_accept_exactly_five(
    alice, team, checked_inputs, enqueued
):
    Price.objects.filter(provider="local", unit="second").update(
        unit_price=Decimal("0.5")
    )
    # A 2 s clip holds 3 s at $0.50: five holds fit in $7.50, a sixth does not.
    Budget.objects.create(team=team, monthly_amount=Decimal("7.50"))
    portrait, audio = checked_inputs
    start = threading.Barrier(20)
    accepted, refused = [], []

    def submit() -> None:
        try:
            start.wait()
            services.job_create(
                team=team, user=alice, portrait=portrait, audio=audio, resolution="480P"
            )
            accepted.append(1)
        except services.Rejected as exc:
            refused.append(exc.message)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=submit) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(accepted) == 5, refused
    assert len(refused) == 15 and all("monthly budget" in m for m in refused)
    assert GenerationJob.objects.count() == 5
