"""Prices, the ledger, holds and settlement, budgets, alerts, and the money pages."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from studio import billing, services, tasks
from studio.models import Budget, GenerationJob, LedgerEntry, Membership, Price
from studio.providers.base import ProviderError
from studio.providers.local import LocalProvider
from tests.conftest import ASTRONAUT, ROCKET, make_member, upload

pytestmark = pytest.mark.django_db

RATE = Decimal("0.5")  # per second, set on the local provider's price lines below


@pytest.fixture
def priced(db):
    """The local provider priced like a paid one, as an admin would edit the table."""
    Price.objects.filter(provider="local", unit="second").update(unit_price=RATE)


def budget(team, *, user=None, **limits):
    row, _ = Budget.objects.get_or_create(team=team, user=user)
    for name, value in limits.items():
        setattr(row, name, value)
    row.save()
    return row


def submit(alice, team, checked_inputs, **kwargs):
    portrait, audio = checked_inputs
    return services.job_create(
        team=team,
        user=alice,
        portrait=portrait,
        audio=audio,
        resolution="480P",
        **kwargs,
    )


def entries(job):
    return {e.kind: e for e in LedgerEntry.objects.filter(job=job)}


def test_the_price_table_is_seeded_from_the_provider_docs(settings):
    settings.S2V_CURRENCY = "USD"
    assert billing.price_for(
        provider="dashscope", unit="second", resolution="720P"
    ).unit_price == Decimal("0.129018")
    assert billing.price_for(provider="dashscope", unit="image").unit_price == Decimal(
        "0.000574"
    )
    settings.S2V_CURRENCY = "CNY"
    assert billing.price_for(
        provider="dashscope", unit="second", resolution="480P"
    ).unit_price == Decimal("0.5")
    assert billing.price_for(provider="dashscope", unit="image").unit_price == Decimal(
        "0.004"
    )
    # WaveSpeed's speech-to-video at both resolutions (its animate has its own).
    assert (
        Price.objects.filter(
            provider="wavespeed", model="wavespeed-ai/wan-2.2/speech-to-video"
        ).count()
        == 2
    )


def test_money_is_rounded_once_half_up_to_six_places():
    assert billing.amount_for(Decimal("18.13"), Decimal("0.071677")) == Decimal(
        "1.299504"
    )
    assert billing.amount_for(Decimal("1"), Decimal("0.0000005")) == Decimal("0.000001")


def test_the_estimate_is_seconds_times_rate_plus_an_unchecked_portrait(settings):
    settings.S2V_CURRENCY = "USD"
    est = billing.estimate(
        provider="dashscope", resolution="480P", audio_seconds=9.6, needs_check=True
    )

    assert est.seconds == Decimal(
        11
    )  # rounded up with a margin for the provider's rounding
    assert est.generation == Decimal("0.788447")
    assert est.check == Decimal("0.000574")
    assert est.total == est.generation + est.check


def test_submit_holds_the_estimate_and_success_settles_to_the_billed_amount(
    priced, alice, team, checked_inputs, enqueued
):
    job = submit(alice, team, checked_inputs)
    hold = entries(job)["hold"]
    assert (
        hold.amount == job.estimate == billing.hold_seconds(job.audio.duration) * RATE
    )
    assert billing.usage(team=team).held == hold.amount

    tasks.job_run(job.pk)

    job.refresh_from_db()
    money = entries(job)
    assert money["release"].amount == -hold.amount
    charge = money["generation"]
    assert charge.billed and charge.amount == job.cost == billing.amount_for(
        job.billed_seconds, RATE
    )
    used = billing.usage(team=team)
    assert (used.held, used.spent) == (Decimal(0), job.cost)


@pytest.mark.parametrize("outcome", ["fail", "cancel"])
def test_failure_and_cancel_release_the_hold_and_bill_nothing(
    priced, alice, team, checked_inputs, enqueued, monkeypatch, outcome
):
    job = submit(alice, team, checked_inputs)
    if outcome == "fail":
        monkeypatch.setattr(
            LocalProvider,
            "start",
            lambda *a: (_ for _ in ()).throw(ProviderError("broke")),
        )
        tasks.job_run(job.pk)
    else:
        services.job_cancel(job=job)

    money = entries(job)
    assert money["release"].amount == -money["hold"].amount
    assert not money["generation"].billed and money["generation"].amount == 0
    assert "not billed" in money["generation"].reason
    assert billing.usage(team=team) == billing.Usage(
        Decimal(0), Decimal(0), Decimal(0), Decimal(0)
    )


def test_settling_twice_writes_nothing_more(
    priced, alice, team, checked_inputs, enqueued
):
    job = submit(alice, team, checked_inputs)
    tasks.job_run(job.pk)

    billing.job_finished(job_id=job.pk)
    billing.job_finished(job_id=job.pk)

    assert LedgerEntry.objects.filter(job=job).count() == 3


def test_the_ledger_is_append_only(priced, alice, team, checked_inputs, enqueued):
    hold = entries(submit(alice, team, checked_inputs))["hold"]
    hold.amount = Decimal(0)

    with pytest.raises(ValueError, match="append-only"):
        hold.save()


def test_a_submit_over_the_team_budget_says_which_limit_by_how_much_and_who(
    priced, alice, team, checked_inputs, enqueued
):
    budget(team, monthly_amount=Decimal("1.00"))

    with pytest.raises(services.Rejected) as excinfo:
        submit(alice, team, checked_inputs)

    message = excinfo.value.message
    assert "the team's monthly budget of $1.00" in message
    assert "by $" in message and "alice" in message  # who can raise it
    assert not GenerationJob.objects.exists()


def test_a_member_budget_binds_that_member(
    priced, alice, team, checked_inputs, enqueued
):
    budget(team, monthly_amount=Decimal("100"))
    budget(team, user=alice, monthly_amount=Decimal("0.50"))

    with pytest.raises(services.Rejected, match="your monthly budget"):
        submit(alice, team, checked_inputs)


def test_seconds_resolution_and_waiting_limits(
    priced, alice, team, checked_inputs, enqueued
):
    budget(
        team, user=alice, max_resolution="480P", max_waiting_jobs=1, monthly_seconds=100
    )
    portrait, audio = checked_inputs

    with pytest.raises(
        services.Rejected, match="720P is above your highest allowed resolution"
    ):
        services.job_create(
            team=team, user=alice, portrait=portrait, audio=audio, resolution="720P"
        )
    submit(alice, team, checked_inputs)
    with pytest.raises(services.Rejected, match="1 videos waiting"):
        submit(alice, team, checked_inputs)

    budget(team, user=alice, max_waiting_jobs=None, monthly_seconds=5)
    with pytest.raises(services.Rejected, match="allowance of 5 s"):
        submit(alice, team, checked_inputs)


def test_without_stop_at_limit_the_team_is_only_warned(
    priced, alice, alice_client, team, checked_inputs, enqueued
):
    budget(team, monthly_amount=Decimal("1.00"), stop_at_limit=False)

    submit(alice, team, checked_inputs)

    page = alice_client.get(reverse("studio:gallery")).content.decode()
    assert "monthly budget of $1.00 is used up" in page


def test_an_admin_can_let_one_job_past_the_budget(
    priced, alice, team, checked_inputs, enqueued
):
    budget(team, monthly_amount=Decimal("1.00"))

    job = submit(alice, team, checked_inputs, budget_override=True)

    assert job.budget_override
    assert entries(job)["hold"].reason == "admin override of the budget"


def test_the_override_checkbox_is_ignored_for_members(
    priced, team, checked_inputs, enqueued
):
    bob = make_member(team, "bob")
    budget(team, monthly_amount=Decimal("1.00"))
    client = Client()
    client.force_login(bob)
    portrait, audio = checked_inputs

    response = client.post(
        reverse("studio:job-create"),
        {
            "portrait": portrait.code,
            "audio": audio.code,
            "resolution": "480P",
            "budget_override": "1",
        },
        headers={"HX-Request": "true"},
    )

    assert "monthly budget" in response.content.decode()
    assert not GenerationJob.objects.exists()


def test_alerts_at_80_and_100_percent_are_mailed_once(
    priced, alice, team, checked_inputs, enqueued
):
    alice.email = "alice@example.com"
    alice.save()
    job = submit(alice, team, checked_inputs)
    cost = billing.amount_for(job.audio.duration and Decimal("2.00"), RATE)
    budget(
        team,
        monthly_amount=(cost / Decimal("0.85")).quantize(Decimal("0.01")),
        stop_at_limit=False,
    )

    tasks.job_run(job.pk)
    assert [m.subject for m in mail.outbox] == [
        "[S2V Studio] Acme: 80% of the team budget used"
    ]

    billing.alert_if_needed(team=team)
    assert len(mail.outbox) == 1  # not again for the same level
    tasks.job_run(submit(alice, team, checked_inputs).pk)
    assert mail.outbox[-1].subject.endswith("100% of the team budget used")


def test_the_form_shows_the_estimate_and_the_budget_left(
    priced, alice_client, alice, team, checked_inputs
):
    budget(team, monthly_amount=Decimal("20"))
    portrait, audio = checked_inputs

    html = alice_client.get(
        reverse("studio:job-estimate"),
        {"audio": audio.code, "portrait": portrait.code, "resolution": "480P"},
    ).content.decode()

    assert "Estimated cost: $1.50" in html  # 3 s held (2 s clip, rounded up) × $0.50
    assert "Budget left this month for the team: <strong>$20.00" in html


def test_the_job_page_shows_estimate_and_actual(
    priced, alice_client, alice, team, checked_inputs, enqueued
):
    job = submit(alice, team, checked_inputs)
    tasks.job_run(job.pk)
    job.refresh_from_db()

    html = alice_client.get(job.get_absolute_url()).content.decode()

    assert "Estimate</dt><dd>$1.50" in html
    assert f"Actual cost</dt><dd>${job.cost.quantize(Decimal('0.01'))}" in html


def test_a_remote_check_is_billed_even_when_the_image_fails(emu, alice, team):
    services.portrait_submit(team=team, user=alice, upload=upload(ROCKET))
    services.portrait_submit(
        team=team, user=alice, upload=upload(ROCKET)
    )  # cached: no call

    [check] = LedgerEntry.objects.filter(kind="check")
    assert check.billed and check.amount == Decimal("0.000574")
    assert check.reason == "failed: InvalidFile.NoHuman"


def test_a_failed_check_call_is_recorded_but_not_billed(emu, alice, team):
    # Two faults: the call and its one retry (studio.services.inputs._check).
    emu.faults(kind="server_error", route="detect", count=2)

    outcome = services.portrait_submit(team=team, user=alice, upload=upload(ASTRONAUT))

    assert outcome.portrait is None and "did not answer" in outcome.message
    checks = LedgerEntry.objects.filter(kind="check")
    assert len(checks) == 2
    for check in checks:
        assert (
            not check.billed
            and check.amount == 0
            and check.reason.startswith("call failed")
        )


def test_a_paid_check_is_refused_when_the_budget_has_no_room(emu, alice, team):
    budget(team, monthly_amount=Decimal("0"))

    with pytest.raises(services.Rejected, match="portrait check costs money"):
        services.portrait_submit(team=team, user=alice, upload=upload(ASTRONAUT))

    assert emu.account_state().get("counts", {}).get("detect_calls", 0) == 0


def test_team_settings_are_for_team_admins_only(team, alice_client):
    bob = make_member(team, "bob", Membership.Role.REVIEWER)
    client = Client()
    client.force_login(bob)

    assert client.get(reverse("studio:team-settings")).status_code == 404
    assert client.get(reverse("studio:spend")).status_code == 404
    assert client.get(reverse("studio:ledger-csv")).status_code == 404
    assert alice_client.get(reverse("studio:team-settings")).status_code == 200


def test_admins_set_budgets_and_members_within_the_team_budget(
    alice_client, alice, team
):
    bob = make_member(team, "bob")
    url = reverse("studio:team-settings")
    alice_client.post(
        url,
        {
            "action": "team-budget",
            "team-monthly_amount": "50",
            "team-stop_at_limit": "on",
        },
    )
    member = Membership.objects.get(user=bob)

    alice_client.post(
        url,
        {
            "action": "member-budget",
            "member": member.pk,
            f"m{member.pk}-monthly_amount": "20",
            f"m{member.pk}-max_resolution": "480P",
        },
    )
    response = alice_client.post(
        url,
        {
            "action": "member-budget",
            "member": member.pk,
            f"m{member.pk}-monthly_amount": "80",
        },
        follow=True,
    )

    assert Budget.objects.get(team=team, user=None).monthly_amount == Decimal("50")
    assert Budget.objects.get(team=team, user=bob).monthly_amount == Decimal("20")
    assert "cannot exceed the team" in response.content.decode()


def test_admins_add_and_remove_members_but_keep_an_admin(alice_client, alice, team, db):
    from studio.models import User

    User.objects.create_user("carol")
    url = reverse("studio:team-settings")

    alice_client.post(
        url, {"action": "add-member", "add-username": "carol", "add-role": "reviewer"}
    )
    assert Membership.objects.get(user__username="carol").role == "reviewer"
    me = Membership.objects.get(user=alice)
    response = alice_client.post(
        url, {"action": "remove-member", "member": me.pk}, follow=True
    )
    assert "at least one admin" in response.content.decode()
    assert Membership.objects.filter(user=alice).exists()


def test_spend_report_and_csv_match_the_ledger(
    priced, alice_client, alice, team, checked_inputs, enqueued
):
    job = submit(alice, team, checked_inputs)
    tasks.job_run(job.pk)
    job.refresh_from_db()

    page = alice_client.get(reverse("studio:spend")).content.decode()
    response = alice_client.get(reverse("studio:ledger-csv"))

    assert "<svg" in page and "alice" in page
    rows = list(
        csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))
    )
    assert [r["kind"] for r in rows] == ["hold", "release", "generation"]
    billed = [r for r in rows if r["billed"] == "yes"]
    assert sum(Decimal(r["amount"]) for r in billed) == job.cost
    assert (
        billed[0]["job"] == str(job.code)
        and billed[0]["remote_id"] == job.remote_task_id
    )


def test_admin_usage_columns_match_usage_and_cost_no_query_per_row(
    priced, alice, team, checked_inputs, enqueued, django_assert_max_num_queries
):
    from django.test import Client

    from studio.models import Team

    alice.is_staff = alice.is_superuser = True
    alice.save()
    client = Client()
    client.force_login(alice)
    budget(team, monthly_amount=Decimal("50"))
    member = budget(team, user=alice, monthly_amount=Decimal("20"))
    done = submit(alice, team, checked_inputs)
    tasks.job_run(done.pk)
    submit(alice, team, checked_inputs)  # still held

    rows = {
        b.pk: b
        for b in billing.with_usage(
            Budget.objects.all(), team_field="team", per_user=True
        )
    }
    for row in (rows[member.pk], next(b for b in rows.values() if b.user_id is None)):
        used = billing.usage(team=team, user=row.user)
        assert (row.spent, row.held) == (used.spent, used.held)
    [teamrow] = billing.with_usage(
        Team.objects.filter(pk=team.pk), team_field="pk", per_user=False
    )
    assert (teamrow.spent, teamrow.held) == (
        billing.usage(team=team).spent,
        billing.usage(team=team).held,
    )

    with django_assert_max_num_queries(40) as few:
        client.get(reverse("admin:studio_budget_changelist"))
    for n in range(6):
        other = Team.objects.create(name=f"Extra {n}", slug=f"extra-{n}")
        budget(other, monthly_amount=Decimal("5"))
    with django_assert_max_num_queries(40) as many:
        page = client.get(reverse("admin:studio_budget_changelist"))
    assert len(many.captured_queries) == len(few.captured_queries)
    assert page.status_code == 200


def test_without_a_price_line_the_engines_declared_price_applies(settings, db):
    settings.S2V_CURRENCY = "USD"
    settings.DASHSCOPE_API_KEY = "sk-test"
    Price.objects.filter(
        provider="dashscope", unit="second", resolution="480P"
    ).delete()

    assert billing.unit_price(
        provider="dashscope", unit="second", resolution="480P"
    ) == Decimal("0.071677")
    assert (
        billing.unit_price(
            provider="no-such-provider", unit="second", resolution="480P"
        )
        == 0
    )


def test_provider_accounts_show_in_the_admin(alice, db):
    from django.test import Client
    from django.utils import timezone

    from studio.models import ProviderAccount

    alice.is_staff = alice.is_superuser = True
    alice.save()
    ProviderAccount.objects.create(
        provider="dashscope", paused_code="Arrearage", paused_at=timezone.now()
    )
    client = Client()
    client.force_login(alice)

    page = client.get(
        reverse("admin:studio_provideraccount_changelist")
    ).content.decode()

    assert "Arrearage" in page and "dashscope" in page
