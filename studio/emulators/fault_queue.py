"""Fault bookkeeping both emulators share: a queue of injected faults, and `--fault`.

Each emulator defines its own fault kinds, routes and JSON fields (its
`faults.py`); the queue only needs a fault to say whether it matches a
request, to count itself down and to describe itself as JSON. A fault's
`owner` is who it is limited to: a DashScope account, a WaveSpeed key.
`BaseFault` and the `check_*`/`parse_*` helpers hold the fields and the
checks of a spec that both emulators' faults have alike.
"""

from __future__ import annotations

import copy
import fnmatch
import itertools
import json
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar


class QueuedFault(Protocol):
    id: int
    kind: str
    delay_ms: int

    @property
    def owner(self) -> str | None: ...

    @property
    def spent(self) -> bool: ...

    def matches(self, route: str, path: str, owner: str | None) -> bool: ...

    def take(self) -> None: ...

    def to_json(self) -> dict[str, Any]: ...


F = TypeVar("F", bound=QueuedFault)

# Kinds, in every emulator, that act on a request before (or instead of) its
# normal answer.
REQUEST_KINDS = ("throttle", "server_error", "drop", "slow")


@dataclass
class BaseFault:
    """The fields and matching every emulator's fault has.

    A subclass adds its owner field (named by `owner_field`) and its
    vendor's own fields, and extends `to_json` with them.
    """

    owner_field: ClassVar[str]

    id: int
    kind: str
    remaining: int | None
    route: tuple[str, ...] = ()  # empty: every route the kind applies to
    path: str | None = None  # fnmatch pattern on the request path
    status: int = 0
    message: str = ""
    delay_ms: int = 1000
    when: str = "before"  # drop: before handling, or after (the work is done)
    hits: int = 0

    @property
    def owner(self) -> str | None:
        owner: str | None = getattr(self, self.owner_field)
        return owner

    def matches(self, route: str, path: str, owner: str | None) -> bool:
        if self.route and route not in self.route:
            return False
        if self.path is not None and not fnmatch.fnmatchcase(path, self.path):
            return False
        return self.owner is None or self.owner == owner

    def take(self) -> None:
        self.hits += 1
        if self.remaining is not None:
            self.remaining -= 1

    @property
    def spent(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "count": self.remaining,
            "hits": self.hits,
            "route": ",".join(self.route) or "*",
            "path": self.path,
            self.owner_field: self.owner,
        }


# Checks of a fault's JSON spec; each raises ValueError when it is wrong.


def check_kind(
    spec: Mapping[str, Any], kinds: Collection[str], fields: Collection[str]
) -> str:
    """The spec's kind, once it and every field name are known."""
    kind = spec.get("kind")
    if kind not in kinds:
        raise ValueError(f"kind must be one of {', '.join(kinds)}")
    unknown = set(spec) - set(fields)
    if unknown:
        raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
    return str(kind)


def parse_count(spec: Mapping[str, Any], default: int | None) -> int | None:
    count = spec.get("count", default)
    if count in ("*", "inf", -1):
        count = None
    if count is not None and (not isinstance(count, int) or count < 1):
        raise ValueError("count must be a positive integer or null (until cleared)")
    return count


def parse_when(spec: Mapping[str, Any]) -> str:
    when = spec.get("when", "before")
    if when not in ("before", "after"):
        raise ValueError("when must be 'before' or 'after'")
    return str(when)


def parse_delay(spec: Mapping[str, Any]) -> int:
    delay = spec.get("delay_ms", 1000)
    if not isinstance(delay, int | float) or delay < 0:
        raise ValueError("delay_ms must be a non-negative number")
    return int(delay)


def parse_routes(route: object, routes: Collection[str]) -> tuple[str, ...]:
    """Route names from a list or a comma-separated text; `*` or empty: all."""
    names = route if isinstance(route, list | tuple) else str(route).split(",")
    picked = tuple(str(n).strip() for n in names if str(n).strip() not in ("", "*"))
    for name in picked:
        if name not in routes:
            raise ValueError(f"route must be '*' or among {', '.join(routes)}")
    return picked


def optional_text(spec: Mapping[str, Any], name: str) -> str | None:
    value = spec.get(name)
    return str(value) if value else None


# The spec fields every emulator's fault has, besides its owner and its own.
FIELDS = ("kind", "count", "route", "path", "status", "message", "delay_ms", "when")


def base_fields(
    spec: Mapping[str, Any],
    kind: str,
    *,
    default_count: int | None,
    routes: Collection[str],
) -> dict[str, Any]:
    """The `BaseFault` fields of a checked spec (all but id, status, message)."""
    return {
        "kind": kind,
        "remaining": parse_count(spec, default_count),
        "route": parse_routes(spec.get("route") or "*", routes),
        "path": optional_text(spec, "path"),
        "delay_ms": parse_delay(spec),
        "when": parse_when(spec),
    }


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


class FaultStore(Generic[F]):
    """An emulator state's fault methods, over its `faults` queue.

    Requests and tasks take their faults with `faults.take(...)`.
    """

    faults: FaultQueue[F]

    def add_faults(self, specs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return self.faults.add(specs)

    def clear_faults(self, kind: str | None = None, owner: str | None = None) -> int:
        return self.faults.clear(kind, owner)

    def list_faults(self) -> list[dict[str, Any]]:
        return self.faults.listing()


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
