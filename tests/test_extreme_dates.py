"""Dates far outside any real data in the gallery and spend filters: a message, no 500."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from studio.models import GenerationJob

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
RANGE = "Dates must be between 2000-01-01 and 2100-12-31."


def gallery(client, **query: str):
    response = client.get(reverse("studio:gallery"), query)
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize(
    ("name", "value", "label"),
    [
        ("date_to", "9999-12-31", "To"),
        ("date_from", "0001-01-01", "From"),
        ("date_from", "9999-12-31", "From"),
        ("date_to", "0001-01-01", "To"),
        ("date_to", "2101-01-01", "To"),
        ("date_from", "1999-12-31", "From"),
    ],
)
def test_a_gallery_date_out_of_range_is_ignored_with_a_message(
    alice_client, name, value, label
):
    html = gallery(alice_client, **{name: value})

    assert f"“{label}” date {value} is out of range and was ignored." in html
    assert RANGE in html


def test_the_message_reaches_the_grid_that_htmx_swaps_in(alice_client):
    response = alice_client.get(
        reverse("studio:gallery"), {"date_to": "9999-12-31"}, headers=HTMX
    )

    html = response.content.decode()
    assert html.lstrip().startswith('<section id="gallery-grid">')
    assert "out of range" in html


def test_an_out_of_range_date_does_not_filter_out_every_job(
    alice_client, checked_inputs, alice, team
):
    portrait, audio = checked_inputs
    GenerationJob.objects.create(
        team=team, created_by=alice, portrait=portrait, audio=audio, provider="local"
    )

    html = gallery(alice_client, date_from="0001-01-01", date_to="9999-12-31")

    assert "No videos match" not in html
    assert "out of range" in html


def test_a_gallery_date_that_is_not_a_date_says_so(alice_client):
    html = gallery(alice_client, date_from="2026-02-30")

    assert "“From” date 2026-02-30 is not a date like 2026-01-31" in html


def test_the_last_supported_day_still_filters(alice_client):
    html = gallery(alice_client, date_to="2100-12-31", date_from="2000-01-01")

    assert "out of range" not in html
    assert 'value="2100-12-31"' in html


@pytest.mark.parametrize("month", ["0001-01", "9999-12", "1999-12", "2101-01"])
def test_a_spend_month_out_of_range_shows_this_month_with_a_message(
    alice_client, month
):
    response = alice_client.get(reverse("studio:spend"), {"month": month})

    html = response.content.decode()
    assert response.status_code == 200
    assert (
        f"{month} is out of range. Months must be between 2000-01 and 2100-12. "
        "Showing this month instead." in html
    )
    assert f"Spend in {timezone.localtime():%Y-%m}" in html


@pytest.mark.parametrize("month", ["2026-13", "99999999999999999999-01"])
def test_a_spend_month_that_is_no_month_says_so(alice_client, month):
    html = alice_client.get(reverse("studio:spend"), {"month": month}).content
    assert f"{month[:20]} is not a month like 2026-01.".encode() in html


def test_the_edges_of_the_range_have_no_link_beyond_them(alice_client):
    first = alice_client.get(reverse("studio:spend"), {"month": "2000-01"}).content
    last = alice_client.get(reverse("studio:spend"), {"month": "2100-12"}).content

    assert b"Spend in 2000-01" in first and b"?month=1999-12" not in first
    assert b"?month=2000-02" in first
    assert b"Spend in 2100-12" in last and b"?month=2101-01" not in last


OUT_OF_RANGE = "Months must be between 2000-01 and 2100-12."
NO_MONTH = "is not a month like 2026-01."


@pytest.mark.parametrize(
    "month,expected",
    [
        ("0001-01", OUT_OF_RANGE),
        ("9999-12", OUT_OF_RANGE),
        ("0-0", NO_MONTH),
        ("soon", NO_MONTH),
        ("99999999999999999999-01", NO_MONTH),
    ],
)
def test_the_ledger_csv_refuses_a_bad_month_with_a_message(
    alice_client, month, expected
):
    response = alice_client.get(reverse("studio:ledger-csv"), {"month": month})

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    assert expected in response.content.decode()


def test_the_ledger_csv_of_the_last_supported_month_downloads(alice_client):
    response = alice_client.get(reverse("studio:ledger-csv"), {"month": "2100-12"})

    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    assert body.startswith("time_utc,")
    assert "2100-12" in response["Content-Disposition"]


def test_a_job_queued_today_is_inside_the_supported_range():
    # The range must cover real data for years to come.
    from studio import selectors

    today = timezone.localdate()
    assert selectors.DATE_MIN < today < selectors.DATE_MAX - timedelta(days=365 * 50)
