"""Random sequences of submits and outcomes keep the ledger honest."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studio import billing, services
from studio.models import Budget, GenerationJob, LedgerEntry, Price, Team
from tests.conftest import make_member

pytestmark = pytest.mark.django_db

RATE = Decimal("0.5")
_teams = itertools.count()

operation = st.one_of(
    st.tuples(st.just("submit"), st.sampled_from(["480P", "720P"])),
    st.tuples(st.just("complete"), st.integers(0, 50), st.floats(0.1, 1.0)),
    st.tuples(st.just("fail"), st.integers(0, 50)),
    st.tuples(st.just("cancel"), st.integers(0, 50)),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(operation, max_size=30), limit=st.integers(0, 40))
def test_any_sequence_keeps_totals_holds_and_budgets_right(
    checked_inputs, enqueued, ops, limit
):
    Price.objects.filter(provider="local", unit="second").update(unit_price=RATE)
    portrait, audio = checked_inputs
    # Each example works in a team of its own, so examples do not see each other.
    team = Team.objects.create(name=f"T{next(_teams)}", slug=f"t-{next(_teams)}")
    user = make_member(team, f"u{team.pk}")
    portrait.team, audio.team = team, team
    portrait.pk = audio.pk = None
    portrait.code, audio.code = uuid.uuid4(), uuid.uuid4()
    portrait.save(force_insert=True)
    audio.save(force_insert=True)
    Budget.objects.create(team=team, monthly_amount=Decimal(limit))
    provider_billed = Decimal(0)
    jobs: list[GenerationJob] = []

    for op in ops:
        if op[0] == "submit":
            with contextlib.suppress(services.Rejected):
                jobs.append(
                    services.job_create(
                        team=team,
                        user=user,
                        portrait=portrait,
                        audio=audio,
                        resolution=op[1],
                    )
                )
            continue
        open_jobs = [
            j for j in jobs if not GenerationJob.objects.get(pk=j.pk).is_terminal
        ]
        if not open_jobs:
            continue
        job = open_jobs[op[1] % len(open_jobs)]
        if op[0] == "complete":
            # The provider bills at most what the clip's hold covers.
            held = LedgerEntry.objects.get(job=job, kind="hold").seconds
            seconds = (held * Decimal(str(op[2]))).quantize(Decimal("0.01"))
            GenerationJob.objects.filter(pk=job.pk).update(
                status="succeeded", billed_seconds=seconds
            )
            provider_billed += billing.amount_for(seconds, RATE)
            billing.job_finished(job_id=job.pk)
        elif op[0] == "fail":
            GenerationJob.objects.filter(pk=job.pk).update(status="failed")
            billing.job_finished(job_id=job.pk)
        else:
            services.job_cancel(job=job)

        used = billing.usage(team=team)
        assert used.held >= 0
        assert used.spent + used.held <= Decimal(limit)  # no budget exceeded

    ledger = LedgerEntry.objects.filter(team=team)
    charged = sum(
        (e.amount for e in ledger.filter(kind="generation", billed=True)), Decimal(0)
    )
    assert charged == provider_billed
    for job in jobs:
        money = {e.kind: e.amount for e in ledger.filter(job=job)}
        if GenerationJob.objects.get(pk=job.pk).is_terminal:
            assert money["hold"] + money["release"] == 0  # every finished job released
        else:
            assert "release" not in money and money["hold"] > 0
