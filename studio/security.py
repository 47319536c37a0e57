"""The content security policy header (Django 5.2 has none built in).

A small middleware rather than django-csp: one fixed policy from
settings.SECURE_CSP (the shape Django 6's own setting takes, so an upgrade can
swap this for django.middleware.csp), with no nonces because the templates have
no inline code, and one looser policy for the admin under S2V_CSP_ADMIN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse

HEADER = "Content-Security-Policy"


def serialize(policy: Mapping[str, Sequence[str]]) -> str:
    """{"default-src": ["'self'"], "upgrade-insecure-requests": []} -> header value."""
    return "; ".join(
        " ".join([directive, *sources]) for directive, sources in policy.items()
    )


def admin_policy() -> dict[str, list[str]]:
    """The pages' policy, loosened as S2V_CSP_ADMIN says for Django's admin.

    Django 5.2's admin templates carry no inline scripts, but some of its
    widgets build elements with style attributes, so it may style inline.
    """
    policy = {name: list(sources) for name, sources in settings.SECURE_CSP.items()}
    for directive, sources in getattr(settings, "S2V_CSP_ADMIN", {}).items():
        policy[directive] = [*policy.get(directive, []), *sources]
    return policy


class ContentSecurityPolicyMiddleware:
    """Adds the policy to every response that has none of its own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if HEADER in response:
            return response
        # Django's debug pages are inline HTML, styles and scripts.
        if settings.DEBUG and response.status_code >= 400:
            return response
        response[HEADER] = serialize(
            admin_policy() if _is_admin(request) else settings.SECURE_CSP
        )
        return response


def _is_admin(request: HttpRequest) -> bool:
    try:
        return request.path_info.startswith(reverse("admin:index"))
    except NoReverseMatch:
        return False
