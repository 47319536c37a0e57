"""Bad input to a form gets a visible message, never a silent no-op or a silent cut."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.test import RequestFactory
from django.urls import URLPattern, reverse

from studio import services, urls
from studio.admin import BudgetInline
from studio.models import Budget, Favourite, GenerationJob, Membership, Team
from tests.conftest import make_member

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
NEGATIVE = "A budget cannot be negative"


@pytest.fixture
def job(team, alice, checked_inputs):
    portrait, audio = checked_inputs
    return GenerationJob.objects.create(
        team=team,
        created_by=alice,
        portrait=portrait,
        audio=audio,
        provider="local",
        title="Pitch",
        notes="first notes",
        status=GenerationJob.Status.SUCCEEDED,
    )


def _page(response) -> str:
    return response.content.decode()


# -- titles and notes -------------------------------------------------------------


def test_a_title_over_its_limit_is_refused_with_a_message(alice_client, job):
    url = reverse("studio:job-rename", args=[job.code])
    long = "t" * 121

    fragment = alice_client.post(url, {"title": long}, headers=HTMX)
    page = alice_client.post(url, {"title": long}, follow=True)

    assert "120 characters" in _page(fragment)
    assert f'value="{long}"' in _page(fragment)  # the draft is kept to shorten
    assert "120 characters" in _page(page)
    job.refresh_from_db()
    assert job.title == "Pitch"


def test_the_rename_service_refuses_rather_than_cuts(job):
    with pytest.raises(services.Rejected, match="120 characters"):
        services.job_rename(job=job, title="x" * 121)
    job.refresh_from_db()
    assert job.title == "Pitch"


def test_a_new_videos_title_over_its_limit_is_shown_as_an_error(
    alice_client, checked_inputs, enqueued
):
    # Real inputs and a resolution: only the title stands in the way.
    portrait, audio = checked_inputs
    response = alice_client.post(
        reverse("studio:job-create"),
        {
            "portrait": portrait.code,
            "audio": audio.code,
            "resolution": "480P",
            "title": "t" * 121,
        },
    )

    assert "at most 120 characters (it has 121)" in _page(response)
    assert not GenerationJob.objects.exists()


def test_notes_over_their_limit_are_refused_not_cut(alice_client, job):
    url = reverse("studio:job-notes", args=[job.code])
    long = "n" * (services.NOTES_MAX + 1)

    fragment = alice_client.post(url, {"notes": long}, headers=HTMX)
    page = alice_client.post(url, {"notes": long}, follow=True)

    html = _page(fragment)
    assert f"limited to {services.NOTES_MAX} characters" in html
    assert "Saved." not in html
    assert long in html  # the text stays in the box
    assert "Nothing was saved" in _page(page)
    assert "Notes saved" not in _page(page)
    job.refresh_from_db()
    assert job.notes == "first notes"


def test_notes_at_their_limit_are_saved_whole(alice_client, job):
    notes = "n" * services.NOTES_MAX
    alice_client.post(reverse("studio:job-notes", args=[job.code]), {"notes": notes})
    job.refresh_from_db()
    assert job.notes == notes


# -- team settings ------------------------------------------------------------------


def _settings(client, data):
    return client.post(reverse("studio:team-settings"), data, follow=True)


def test_add_member_errors_are_shown(alice_client, team):
    make_member(Team.objects.create(name="Other", slug="other"), "zed")

    empty = _page(
        _settings(alice_client, {"action": "add-member", "add-role": "member"})
    )
    bad_role = _page(
        _settings(
            alice_client,
            {"action": "add-member", "add-username": "zed", "add-role": "boss"},
        )
    )
    nobody = _page(
        _settings(
            alice_client,
            {"action": "add-member", "add-username": "ghost", "add-role": "member"},
        )
    )

    assert "Nobody was added" in empty and "This field is required." in empty
    assert "Nobody was added" in bad_role and "boss is not one of" in bad_role
    assert "There is no user &#x27;ghost&#x27;" in nobody
    assert Membership.objects.filter(team=team).count() == 1


def test_an_invalid_role_is_refused_with_a_message(alice_client, team):
    bob = make_member(team, "bob")
    member = Membership.objects.get(user=bob)

    page = _page(
        _settings(
            alice_client,
            {"action": "set-role", "member": member.pk, "role": "overlord"},
        )
    )

    assert "The role of bob was not changed: choose member, reviewer, admin." in page
    member.refresh_from_db()
    assert member.role == "member"


def test_an_unknown_team_action_says_nothing_was_changed(alice_client, team):
    page = _page(
        _settings(alice_client, {"action": "delete-team", "approval_required": "on"})
    )

    assert "nothing was changed" in page
    team.refresh_from_db()
    assert not team.approval_required


def test_an_unknown_review_decision_is_refused_with_a_message(alice_client, job):
    url = reverse("studio:job-review", args=[job.code])

    fragment = alice_client.post(url, {"decision": "maybe"}, headers=HTMX)
    page = alice_client.post(url, {"decision": "maybe"}, follow=True)

    assert "Choose approve or request changes." in _page(fragment)
    assert "Choose approve or request changes." in _page(page)
    job.refresh_from_db()
    assert job.review_state == "none"


def test_an_unclear_star_changes_nothing_and_says_so(alice_client, alice, job):
    Favourite.objects.create(user=alice, job=job)
    url = reverse("studio:job-favourite", args=[job.code])

    page = alice_client.post(url, {"on": "yes"}, follow=True)
    fragment = alice_client.post(url, {}, headers=HTMX)

    assert "nothing was changed" in _page(page)
    assert fragment["HX-Retarget"] == "#alerts"
    assert Favourite.objects.filter(user=alice, job=job).exists()


def test_an_unknown_provider_account_is_not_reported_resumed(alice, alice_client):
    alice.is_staff = True
    alice.save()

    page = _page(
        alice_client.post(
            reverse("studio:provider-resume"), {"provider": "what"}, follow=True
        )
    )

    assert "nothing to resume" in page
    assert "Dispatching resumed" not in page


# -- negative money -----------------------------------------------------------------


def test_a_negative_member_budget_is_refused(alice_client, team):
    bob = make_member(team, "bob")
    member = Membership.objects.get(user=bob)

    page = _page(
        _settings(
            alice_client,
            {
                "action": "member-budget",
                "member": member.pk,
                f"m{member.pk}-monthly_amount": "-5",
            },
        )
    )

    assert "The budget of bob was not saved." in page
    assert f"Monthly budget: {NEGATIVE}" in page
    assert not Budget.objects.filter(user=bob).exists()


def test_a_negative_team_budget_is_refused(alice_client, team):
    page = _page(
        _settings(
            alice_client,
            {
                "action": "team-budget",
                "team-monthly_amount": "-0.01",
                "team-stop_at_limit": "on",
            },
        )
    )

    assert "The team budget was not saved." in page
    assert NEGATIVE in page
    assert Budget.objects.get(team=team, user=None).monthly_amount is None


def test_a_zero_budget_is_allowed(alice_client, team):
    _settings(alice_client, {"action": "team-budget", "team-monthly_amount": "0"})
    assert Budget.objects.get(team=team, user=None).monthly_amount == 0


def test_the_model_and_the_service_refuse_negative_money(team, alice):
    with pytest.raises(ValidationError, match=NEGATIVE):
        Budget(team=team, monthly_amount=Decimal("-1")).full_clean()
    with pytest.raises(services.Rejected, match=NEGATIVE):
        services.budget_update(team=team, user=None, monthly_amount=Decimal("-1"))
    assert not Budget.objects.filter(monthly_amount__lt=0).exists()


def test_the_admin_refuses_a_negative_budget(team, alice):
    alice.is_staff = alice.is_superuser = True
    alice.save()
    request = RequestFactory().get("/")
    request.user = alice
    inline = BudgetInline(Team, admin.site)
    formset_class = inline.get_formset(request, team)
    prefix = formset_class.get_default_prefix()
    data = {
        f"{prefix}-TOTAL_FORMS": "1",
        f"{prefix}-INITIAL_FORMS": "0",
        f"{prefix}-0-monthly_amount": "-3",
        f"{prefix}-0-stop_at_limit": "on",
    }

    formset = formset_class(data, instance=team, prefix=prefix)

    assert not formset.is_valid()
    assert NEGATIVE in str(formset.errors)


# -- methods ------------------------------------------------------------------------


def _kwargs(pattern: URLPattern) -> dict[str, object]:
    return {
        name: uuid.uuid4() if name == "code" else "token"
        for name in pattern.pattern.converters
    }


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_unsupported_methods_answer_405_on_every_page(method, alice_client):
    patterns = [p for p in urls.urlpatterns if isinstance(p, URLPattern)]
    wrong = {}
    for pattern in patterns:
        url = reverse(f"studio:{pattern.name}", kwargs=_kwargs(pattern))
        status = getattr(alice_client, method)(url).status_code
        if status != 405:
            wrong[pattern.name] = status

    assert wrong == {}
