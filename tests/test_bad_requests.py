"""Malformed requests to every form-taking page get an answer, never a 500."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("method", "name", "data"),
    [
        ("post", "studio:team-switch", {"team": "abc"}),
        ("post", "studio:team-switch", {}),
        ("post", "studio:team-settings", {"action": "member-budget", "member": "abc"}),
        ("post", "studio:team-settings", {"action": "set-role", "member": "abc"}),
        ("post", "studio:team-settings", {"action": "remove-member", "member": ""}),
        (
            "post",
            "studio:team-settings",
            {"action": "team-budget", "team-monthly_amount": "lots"},
        ),
        (
            "post",
            "studio:team-settings",
            {"action": "add-member", "add-username": "", "add-role": "boss"},
        ),
        ("get", "studio:spend", {"month": "2026-13"}),
        ("get", "studio:spend", {"month": "x-y-z"}),
        ("get", "studio:ledger-csv", {"month": "0-0"}),
        ("get", "studio:job-estimate", {"audio": "zz", "resolution": "9000P"}),
        (
            "get",
            "studio:gallery",
            {"page": "abc", "sort": "nonsense", "from": "2026-99-99", "to": "x"},
        ),
        ("post", "studio:gallery-zip", {"job": "nope"}),
        ("post", "studio:provider-resume", {"provider": "what"}),
        (
            "post",
            "studio:job-create",
            {"portrait": "x", "audio": "y", "resolution": "1P"},
        ),
        ("get", "studio:job-create", {"from": "not-a-uuid"}),
    ],
)
def test_malformed_input_gets_an_answer_not_a_server_error(
    alice_client, method, name, data
):
    response = getattr(alice_client, method)(reverse(name), data)

    assert response.status_code < 500


def test_a_malformed_team_code_is_a_404(alice_client):
    assert (
        alice_client.post(reverse("studio:team-switch"), {"team": "abc"}).status_code
        == 404
    )


def test_a_malformed_member_id_is_a_404(alice_client):
    response = alice_client.post(
        reverse("studio:team-settings"),
        {"action": "set-role", "member": "abc", "role": "admin"},
    )

    assert response.status_code == 404
