"""Rejected: what every service raises for a request the studio cannot honour."""

from __future__ import annotations


class Rejected(Exception):
    """A request the studio cannot honour. `message` says what to do instead."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class CheckUnavailable(Rejected):
    """The paid portrait check did not answer, even on a retry: ask again later."""
