"""The signed-in user's own choices: which team they work in."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from studio.middleware import SESSION_TEAM_KEY
from studio.models import Team


@login_required
@require_POST
def team_switch(request: HttpRequest) -> HttpResponse:
    try:
        code = UUID(request.POST.get("team", ""))
    except ValueError:
        raise Http404("You are not in that team.") from None
    team = get_object_or_404(Team, code=code, memberships__user=request.user)
    request.session[SESSION_TEAM_KEY] = team.pk
    messages.success(request, f"Now working in {team.name}.")
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}
    ):
        next_url = reverse("studio:gallery")
    return redirect(next_url)
