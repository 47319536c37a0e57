from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from .engine import get_engine
from .selectors import user_teams


def studio(request: HttpRequest) -> dict[str, Any]:
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    membership = request.membership  # type: ignore[attr-defined]
    return {
        "active_membership": membership if membership else None,
        "user_teams": lambda: list(user_teams(user=request.user)),  # type: ignore[arg-type]
        "engine": get_engine(),
    }
