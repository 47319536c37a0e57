"""Fault bookkeeping both emulators share: a queue of injected faults, and `--fault`.

Each emulator defines its own fault kinds, routes and JSON fields (its
`faults.py`); the queue only needs a fault to say whether it matches a
request, to count itself down and to describe itself as JSON. A fault's
`owner` is who it is limited to: a DashScope account, a WaveSpeed key.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar


class QueuedFault(Protocol):
    id: int
    kind: str

    @property
    def owner(self) -> str | None: ...

    @property
    def spent(self) -> bool: ...

    def matches(self, route: str, path: str, owner: str | None) -> bool: ...

    def take(self) -> None: ...

    def to_json(self) -> dict[str, Any]: ...


F = TypeVar("F", bound=QueuedFault)


class FaultQueue(Generic[F]):
    """Queued faults in order; `take` hands out the first match and counts it down.

    Shares its owner's lock (faults are taken while other state is changed)
    and counts each fault taken in `totals` as `fault_<kind>`.
    """

    def __init__(
        self,
        build: Callable[[Mapping[str, Any], int], F],
        *,
        lock: threading.RLock,
        totals: Counter[str],
    ) -> None:
        self._build = build
        self._lock = lock
        self._totals = totals
        self._faults: list[F] = []
        self._ids = itertools.count(1)

    def add(self, specs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Validate every spec first, then queue them all; return the whole queue."""
        built = [self._build(spec, 0) for spec in specs]
        with self._lock:
            for fault in built:
                fault.id = next(self._ids)
                self._faults.append(fault)
            return self.listing()

    def clear(self, kind: str | None = None, owner: str | None = None) -> int:
        """Remove the faults of `kind` and/or `owner` (all when both are None)."""
        with self._lock:
            keep = [
                f
                for f in self._faults
                if (kind is not None and f.kind != kind)
                or (owner is not None and f.owner != owner)
            ]
            removed = len(self._faults) - len(keep)
            self._faults = keep
            return removed

    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_json() for f in self._faults]

    def take(
        self,
        kinds: Iterable[str],
        *,
        route: str = "",
        path: str = "",
        owner: str | None = None,
    ) -> F | None:
        """A copy of the first queued fault of `kinds` matching the request."""
        wanted = tuple(kinds)
        with self._lock:
            for fault in self._faults:
                if fault.kind in wanted and fault.matches(route, path, owner):
                    fault.take()
                    if fault.spent:
                        self._faults.remove(fault)
                    self._totals[f"fault_{fault.kind}"] += 1
                    return copy.copy(fault)
            return None


def parse_flag(text: str, *, numeric: Collection[str]) -> dict[str, Any]:
    """`--fault` syntax: JSON, or KIND[:COUNT[:ROUTE]][,key=value...].

    COUNT may be empty or `*` for "until cleared"; the options named in
    `numeric` are read as integers.
    """
    text = text.strip()
    if text.startswith("{"):
        loaded = json.loads(text)
        if not isinstance(loaded, dict):
            raise ValueError("a JSON fault must be an object")
        return loaded
    head, *options = text.split(",")
    kind, _, rest = head.partition(":")
    count_text, _, route = rest.partition(":")
    spec: dict[str, Any] = {"kind": kind.strip()}
    if count_text.strip() in ("*", "inf"):
        spec["count"] = None
    elif count_text.strip():
        spec["count"] = int(count_text)
    if route.strip():
        spec["route"] = route.strip()
    for option in options:
        key, sep, value = option.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, got {option!r}")
        key = key.strip()
        spec[key] = int(value) if key in numeric else value.strip()
    return spec
