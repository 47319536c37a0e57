from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.functional import SimpleLazyObject

from .alerts import htmx_alert
from .selectors import membership_for

SESSION_TEAM_KEY = "studio_team_id"


class ActiveTeamMiddleware:
    """Sets request.membership: the signed-in user's membership of the active team."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        def load() -> object:
            if not request.user.is_authenticated:
                return None
            return membership_for(
                user=request.user,
                team_id=request.session.get(SESSION_TEAM_KEY),
            )

        request.membership = SimpleLazyObject(load)  # type: ignore[attr-defined]
        return self.get_response(request)


class UploadLimitMiddleware:
    """Answers an oversized request before anything reads its body.

    Must sit before CsrfViewMiddleware, which parses POST bodies. htmx requests
    get the message in the page's alert area; others a plain 413 page.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit_mb = settings.S2V_MAX_UPLOAD_MB
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit_mb * 1024 * 1024:
            message = (
                f"That upload is {length / 1048576:.0f} MB; the limit is {limit_mb} MB "
                "per request. Choose a smaller file."
            )
            if request.headers.get("HX-Request") == "true":
                return htmx_alert(request, message)
            return render(
                request,
                "studio/upload_too_large.html",
                {"message": message},
                status=413,
            )
        return self.get_response(request)
