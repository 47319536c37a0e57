"""'Use again' (GET /new/?from=<job>) when the cached verdict is another provider's."""

from __future__ import annotations

import pytest
from django.urls import reverse

from studio import services
from studio.models import FaceCheck, LedgerEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(alice, team, checked_inputs, enqueued):
    portrait, audio = checked_inputs
    return services.job_create(
        team=team, user=alice, portrait=portrait, audio=audio, resolution="480P"
    )


def test_use_again_checks_a_portrait_only_another_engine_has_seen(alice_client, job):
    # The only verdict on file is the other provider's: the local provider checks anew.
    FaceCheck.objects.filter(sha256=job.portrait.sha256).update(provider="dashscope")

    response = alice_client.get(reverse("studio:job-create"), {"from": str(job.code)})

    assert response.status_code == 200
    assert "Face found: good to go." in response.content.decode()
    assert FaceCheck.objects.get(
        sha256=job.portrait.sha256, provider="local"
    ).check_pass


def test_use_again_on_a_paid_engine_charges_the_check_to_the_team(
    alice, alice_client, job, emu
):
    # The job's portrait was checked locally; DashScope's check is paid.
    assert not FaceCheck.objects.filter(provider="dashscope").exists()
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CHECK).exists()

    response = alice_client.get(reverse("studio:job-create"), {"from": str(job.code)})

    assert response.status_code == 200
    assert "Face found: good to go." in response.content.decode()
    assert FaceCheck.objects.filter(
        sha256=job.portrait.sha256, provider="dashscope"
    ).exists()
    check = LedgerEntry.objects.get(kind=LedgerEntry.Kind.CHECK)
    assert (check.team_id, check.user_id, check.billed) == (job.team_id, alice.pk, True)
