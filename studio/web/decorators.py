"""Who may open a page: a member of a team (team_required) or its admin (admin_required)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import render

from studio.models import Membership

View = Callable[..., HttpResponseBase]


def team_required(view: View) -> View:
    """Sign-in plus a team: the view receives the active membership."""

    @login_required
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        membership: Membership | None = request.membership  # type: ignore[attr-defined]
        if not membership:
            return render(request, "studio/no_team.html", status=403)
        return view(request, membership, *args, **kwargs)

    return wrapper


def admin_required(view: View) -> View:
    """Team admins (and site staff) only; everyone else gets 404, like any other team's page."""

    @team_required
    @functools.wraps(view)
    def wrapper(
        request: HttpRequest, membership: Membership, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        if membership.role != Membership.Role.ADMIN and not request.user.is_staff:
            raise Http404
        return view(request, membership, *args, **kwargs)

    return wrapper
