"""A message shown in the page's alert area, in answer to an htmx request."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def htmx_alert(request: HttpRequest, message: str) -> HttpResponse:
    """Status 200 with the message retargeted to #alerts: htmx 2 swaps no 4xx answer."""
    response = render(request, "studio/alert.html", {"message": message})
    response["HX-Retarget"] = "#alerts"
    response["HX-Reswap"] = "innerHTML"
    return response
