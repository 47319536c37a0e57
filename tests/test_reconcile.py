"""The provider's bill reconciled with the studio's records, over HTTP against the emulator."""

from __future__ import annotations

import io
import re
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from studio import lifecycle, reconcile
from studio.models import (
    GenerationJob,
    LedgerEntry,
    Membership,
    Reconciliation,
    Task,
)
from studio.providers.dashscope.client import S2V_MODEL, DashScopeClient
from studio.providers.wavespeed.client import WaveSpeedClient
from studio.queue import submit
from tests import media_factories
from tests.conftest import ASTRONAUT, make_member
from tests.test_dashscope_flow import drive, queue, tasks_of
from tests.test_dashscope_flow import inputs as inputs  # a fixture
from tests.test_wavespeed_flow import PROVIDER as WS
from tests.test_wavespeed_flow import drive as ws_drive
from tests.test_wavespeed_flow import inputs_for as ws_inputs_for
from tests.test_wavespeed_flow import predictions as ws_predictions
from tests.test_wavespeed_flow import queue as ws_queue
from tests.test_wavespeed_flow import wait_until as ws_wait_until

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setattr(reconcile, "QUERY_GAP", 0)


def wait_until_final(emu: Any, task_id: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        [task] = [t for t in tasks_of(emu) if t["id"] == task_id]
        if task["status"] in ("SUCCEEDED", "FAILED", "CANCELED"):
            return task
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} still {task['status']}")


def another_application(emu: Any, tmp_path: Path, *, fail: bool = False) -> Any:
    """A task made with the same key by a tool that is not the studio."""
    if fail:
        emu.faults(kind="fail_task", code="InvalidFile.NoHuman", count=1)
    client = DashScopeClient(api_key="sk-emulator", base_url=emu.base_url)
    policy = client.upload_policy(model=S2V_MODEL)
    wav = media_factories.make_wav(tmp_path / "other.wav", 1.5)
    task = client.submit(
        image_url=client.upload(policy=policy, path=ASTRONAUT),
        audio_url=client.upload(policy=policy, path=wav),
        resolution="720P",
    )
    client.close()
    return wait_until_final(emu, task.task_id)


def run_command(*args: str) -> str:
    out = io.StringIO()
    call_command("reconcile", *args, stdout=out)
    return out.getvalue()


def outside_lines() -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(kind="outside").order_by("id"))


def test_reconcile_records_outside_billing_once_and_reports_it(
    emu, inputs, alice, team, enqueued, tmp_path, monkeypatch
):
    ours = drive(queue(alice, team, inputs, enqueued))
    assert ours.status == "succeeded"
    # A job the studio gave up on while the provider went on and billed it.
    given_up = queue(alice, team, inputs, enqueued)
    submit.dispatch_and_submit(provider_name="dashscope")
    given_up.refresh_from_db()
    lifecycle.fail(
        GenerationJob.objects.filter(pk=given_up.pk),
        code="lost_contact",
        message="The studio could not reach the provider.",
    )
    given_up_task = wait_until_final(emu, given_up.remote_task_id)
    other = another_application(emu, tmp_path)
    other_failed = another_application(emu, tmp_path, fail=True)
    assert (given_up_task["status"], other["status"], other_failed["status"]) == (
        "SUCCEEDED",
        "SUCCEEDED",
        "FAILED",
    )

    first = run_command()
    asked: list[str] = []
    real_usage = reconcile._usage
    monkeypatch.setattr(
        reconcile,
        "_usage",
        lambda provider, task_id: (
            asked.append(task_id) or real_usage(provider, task_id)
        ),
    )
    second = run_command()
    # What the first run learnt and recorded is not asked of the provider again.
    assert asked == []

    assert "4 tasks in the last 24 h; 2 unknown to the studio" in first
    assert "2 new ledger lines" in first and "0 new ledger lines" in second
    assert other["id"] in first and other_failed["id"] in first
    lines = outside_lines()
    assert len(lines) == 2  # idempotent: the second run recorded nothing
    by_task = {line.remote_id: line for line in lines}
    outside = by_task[other["id"]]
    assert outside.team is None and outside.billed
    assert outside.resolution == "720P"
    assert float(outside.seconds) == pytest.approx(
        float(other["video_duration"]), abs=0.01
    )
    assert "outside the studio" in outside.reason
    mine = by_task[given_up.remote_task_id]
    assert (mine.team, mine.job) == (team, given_up)
    assert float(mine.seconds) == pytest.approx(
        float(given_up_task["video_duration"]), abs=0.01
    )
    assert ours.remote_task_id not in by_task  # known and agreeing: nothing
    assert other_failed["id"] not in by_task  # failures are free

    staff = make_member(team, "root", Membership.Role.ADMIN)
    staff.is_staff = True
    staff.save()
    client = Client()
    client.force_login(staff)
    page = client.get(reverse("studio:provider-reconcile")).content.decode()
    assert "Last run" in page and "Reconcile now" in page
    for task_id in (other["id"], other_failed["id"], given_up.remote_task_id):
        assert task_id in page
    # The given-up job's own row: the provider's SUCCEEDED beside the studio's job.
    row = re.search(
        rf"<tr>(?:(?!</tr>).)*{given_up.remote_task_id}.*?</tr>", page, re.S
    )
    assert row is not None
    assert given_up.display_title in row[0] and "<td>SUCCEEDED</td>" in row[0]
    assert ours.remote_task_id not in page
    assert (
        reverse("studio:provider-reconcile")
        in client.get(reverse("studio:spend")).content.decode()
    )

    response = client.post(reverse("studio:provider-reconcile"), follow=True)
    assert "Reconciled now: 4 tasks" in response.content.decode()
    assert len(outside_lines()) == 2


def test_every_task_a_retried_job_had_is_remembered(emu, inputs, alice, team, enqueued):
    emu.faults(kind="fail_task", count=1)

    job = drive(queue(alice, team, inputs, enqueued))

    assert job.attempts == 2
    records = Task.objects.filter(job=job).order_by("submitted_at", "id")
    assert [(r.remote_id, r.remote_status) for r in records] == [
        (t["id"], t["status"]) for t in tasks_of(emu)
    ]
    run = reconcile.reconcile()
    assert run.tasks_found == 2 and run.findings == []


def test_only_staff_may_see_or_run_the_reconciliation(emu, alice_client):
    assert alice_client.get(reverse("studio:provider-reconcile")).status_code == 403
    refused = alice_client.post(reverse("studio:provider-reconcile"))
    assert refused.status_code == 403 and "site staff" in refused.content.decode()
    assert not Reconciliation.objects.exists()  # refused before it ran


def test_the_local_engine_has_nothing_to_reconcile(settings, team):
    settings.S2V_PROVIDER = "local"
    assert "nothing to reconcile" in run_command()
    staff = make_member(team, "root")
    staff.is_staff = True
    staff.save()
    client = Client()
    client.force_login(staff)
    assert (
        "nothing to reconcile"
        in client.get(reverse("studio:provider-reconcile")).content.decode()
    )


def test_a_job_a_crash_left_unsettled_is_settled_not_charged_twice(
    emu, inputs, alice, team, enqueued
):
    from decimal import Decimal

    from django.utils import timezone

    from studio import billing

    job = queue(alice, team, inputs, enqueued)
    submit.dispatch_and_submit(provider_name="dashscope")
    job.refresh_from_db()
    task = wait_until_final(emu, job.remote_task_id)
    # The video could not be saved, and the worker died between failing the
    # job and settling it: no charge in the ledger yet.
    GenerationJob.objects.filter(pk=job.pk).update(
        status=GenerationJob.Status.FAILED,
        remote_status="SUCCEEDED",
        billed_seconds=Decimal(f"{task['video_duration']:.2f}"),
        error_code="ResultExpired",
        finished_at=timezone.now(),
    )
    assert not LedgerEntry.objects.filter(job=job, kind="generation").exists()

    run_command()
    billing.job_finished(job_id=job.pk)  # the late settlement, e.g. an admin's
    run_command()

    [line] = LedgerEntry.objects.filter(remote_id=job.remote_task_id, billed=True)
    assert (line.kind, line.job) == ("generation", job)
    assert line.seconds == Decimal(f"{task['video_duration']:.2f}")
    assert outside_lines() == []


# -- WaveSpeed: the same reconciliation through the provider contract -----------------


def ws_another_application(
    ws: Any, tmp_path: Path, *, fault: dict[str, Any] | None = None
) -> Any:
    """A prediction made with the studio's WaveSpeed key by another tool."""
    if fault:
        ws.faults(count=1, **fault)
    client = WaveSpeedClient(api_key="ws-emulator", base_url=ws.base_url)
    wav = media_factories.make_wav(tmp_path / "other.wav", 1.5)
    made = client.submit(
        image_url=client.upload(
            path=ASTRONAUT, filename="p.png", content_type="image/png"
        ),
        audio_url=client.upload(path=wav, filename="a.wav", content_type="audio/wav"),
        resolution="720p",
    )
    client.close()
    return ws_wait_until(
        f"prediction {made.id} to end",
        lambda: next(
            (
                p
                for p in ws_predictions(ws)
                if p["id"] == made.id and p["status"] in ("completed", "failed")
            ),
            None,
        ),
    )


def by_task(run: Reconciliation) -> dict[str, dict[str, Any]]:
    return {f["task_id"]: f for f in run.findings}


def test_wavespeed_reconcile_costs_what_it_can_know_and_says_what_it_cannot(
    ws_emu, alice, team, tmp_path, settings, monkeypatch
):
    settings.S2V_WAVESPEED_NSFW_BILLED = False
    wav = media_factories.make_wav(tmp_path / "voice.wav", 2.2)
    inputs = ws_inputs_for(alice, team, wav)
    ours = ws_drive(ws_queue(alice, team, inputs))
    assert ours.status == "succeeded"
    # A job the studio gave up on while WaveSpeed went on and billed it.
    given_up = ws_queue(alice, team, inputs, resolution="720P")
    submit.dispatch_and_submit(provider_name=WS)
    given_up.refresh_from_db()
    lifecycle.fail(
        GenerationJob.objects.filter(pk=given_up.pk),
        code="lost_contact",
        message="The studio could not reach the provider.",
    )
    ws_wait_until(
        "the given-up task to complete",
        lambda: any(
            p["id"] == given_up.remote_task_id and p["status"] == "completed"
            for p in ws_predictions(ws_emu)
        ),
    )
    other = ws_another_application(ws_emu, tmp_path)
    failed = ws_another_application(ws_emu, tmp_path, fault={"kind": "fail_task"})
    flagged = ws_another_application(
        ws_emu, tmp_path, fault={"kind": "nsfw", "mode": "completed"}
    )
    assert (other["status"], failed["status"], flagged["status"]) == (
        "completed",
        "failed",
        "completed",
    )

    first = reconcile.reconcile(provider_name=WS)
    asked: list[str] = []
    real_usage = reconcile._usage

    def usage(provider: Any, task_id: str) -> Any:
        asked.append(task_id)
        return real_usage(provider, task_id)

    monkeypatch.setattr(reconcile, "_usage", usage)
    second = reconcile.reconcile(provider_name=WS)

    # WaveSpeed keeps predictions 7 days (§9.6): the listing reaches that far back.
    assert first.window_end - first.window_start == timedelta(days=7)
    assert "5 tasks in the last 7 days; 3 unknown to the studio" in (
        reconcile.summary(first)
    )
    assert (first.entries_recorded, second.entries_recorded) == (1, 0)
    assert asked == []  # nothing learnt by the first run is asked again
    assert [(f["task_id"], f["kind"], f["note"]) for f in second.findings] == [
        (f["task_id"], f["kind"], f["note"]) for f in first.findings
    ]
    found = by_task(first)
    # Unknown and completed: WaveSpeed does not say what it billed, so no cost
    # is made up and the admin is told where to look.
    unknown = found[other["id"]]
    assert (unknown["kind"], unknown["seconds"], unknown["cost"]) == ("unknown", "", "")
    assert not unknown["recorded"]
    assert "does not report the seconds it billed" in unknown["note"]
    assert "usage and billing history" in unknown["note"]
    assert "Not billed" in found[failed["id"]]["note"]  # refunded (§9.5)
    assert found[flagged["id"]]["note"].startswith("Not billed")
    assert "S2V_WAVESPEED_NSFW_BILLED" in found[flagged["id"]]["note"]
    # Known: the studio's own input length gives the seconds (2.2 s -> 3 s at 720P).
    mine = found[given_up.remote_task_id]
    assert (mine["kind"], Decimal(mine["seconds"]), mine["recorded"]) == (
        "state",
        Decimal(3),
        True,
    )
    assert ours.remote_task_id not in found  # known and agreeing: nothing
    [line] = outside_lines()
    assert (line.remote_id, line.job, line.team) == (
        given_up.remote_task_id,
        given_up,
        team,
    )
    assert (line.seconds, line.resolution) == (Decimal(3), "720P")
    assert line.amount == Decimal("0.18")  # §9.5: $0.06 a second at 720p
    assert line.model == "wavespeed-ai/wan-2.2/speech-to-video"


def test_a_flagged_task_of_another_application_is_not_costed_when_it_may_be_billed(
    ws_emu, tmp_path
):
    flagged = ws_another_application(
        ws_emu, tmp_path, fault={"kind": "nsfw", "mode": "completed"}
    )

    run = reconcile.reconcile(provider_name=WS)

    finding = by_task(run)[flagged["id"]]
    assert (finding["seconds"], finding["cost"], finding["recorded"]) == ("", "", False)
    assert "does not report the seconds it billed" in finding["note"]
    assert outside_lines() == []


def test_the_page_and_the_command_reconcile_every_enabled_remote_provider(
    emu, ws_emu, team, tmp_path, settings
):
    settings.S2V_PROVIDERS = ["dashscope", "wavespeed-emulator", "local"]
    settings.S2V_PROVIDER = "dashscope"
    other = another_application(emu, tmp_path)
    ws_other = ws_another_application(ws_emu, tmp_path)
    staff = make_member(team, "root", Membership.Role.ADMIN)
    staff.is_staff = True
    staff.save()
    client = Client()
    client.force_login(staff)
    url = reverse("studio:provider-reconcile")
    before = client.get(url).content.decode()
    assert before.count("No reconciliation has run yet.") == 2

    response = client.post(url, follow=True)

    page = response.content.decode()
    assert "Reconciled now: 1 tasks in the last 24 h" in page
    assert "Reconciled now: 1 tasks in the last 7 days" in page
    for name, label, task_id in (
        ("dashscope", "Alibaba DashScope", other["id"]),
        ("wavespeed-emulator", "WaveSpeed emulator", ws_other["id"]),
    ):
        section = re.search(rf'<section id="account-{name}".*?</section>', page, re.S)
        assert section is not None, name
        assert label in section[0] and "Last run" in section[0]
        assert task_id in section[0]
    assert "Local preview" not in page  # nothing to reconcile there
    assert Reconciliation.objects.filter(provider="dashscope").count() == 1

    # One provider's button runs that provider only.
    client.post(url, {"provider": "wavespeed-emulator"})
    assert Reconciliation.objects.filter(provider="wavespeed-emulator").count() == 2
    assert Reconciliation.objects.filter(provider="dashscope").count() == 1

    out = run_command()
    assert "dashscope:" in out and "wavespeed-emulator:" in out
    assert other["id"] in out and ws_other["id"] in out
    assert "in the last 7 days" in out and "in the last 24 h" in out
