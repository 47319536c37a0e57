"""Who may open a page: a team member, its admin, or one who may change the job."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.views.decorators.http import require_POST

from studio.models import GenerationJob, Membership

from .common import _refuse_change, _team_job

View = Callable[..., HttpResponseBase]
JobView = Callable[[HttpRequest, GenerationJob], HttpResponseBase]


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


def job_change(action: str) -> Callable[[JobView], View]:
    """A POST that changes one of the team's jobs: the view receives the job.

    Members who may not change it get the studio's 403 saying they may not do
    `action` ("rename this video").
    """

    def decorate(view: JobView) -> View:
        @team_required
        @require_POST
        @functools.wraps(view)
        def wrapper(
            request: HttpRequest, membership: Membership, code: UUID
        ) -> HttpResponseBase:
            job = _team_job(membership, code)
            if refused := _refuse_change(request, membership, job, action=action):
                return refused
            return view(request, job)

        return wrapper

    return decorate
