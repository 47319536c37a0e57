"""What `manage.py dashscope_emulator` and `wavespeed_emulator` share.

Both take `--host`, `--port`, `--time-scale`, `--data-dir`, `--fault` and
`--quiet`, start their emulator, print where it listens and serve until
Ctrl-C or SIGTERM. Each command adds its vendor's own options and banner.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from django.core.management.base import BaseCommand, CommandError


class Serving(Protocol):
    @property
    def url(self) -> str: ...

    def start(self) -> Any: ...

    def stop(self) -> None: ...


E = TypeVar("E", bound=Serving)


class EmulatorCommand(BaseCommand):
    """Options every emulator takes, and the serve-until-stopped loop."""

    requires_system_checks: list[str] = []  # no database or apps involved

    # What a vendor's command sets: its default port, what --time-scale
    # divides, and an example --fault.
    default_port: int
    time_scale_help: str
    fault_example: str

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="loopback address")
        parser.add_argument("--port", type=int, default=self.default_port)
        parser.add_argument(
            "--time-scale", type=float, default=1.0, help=self.time_scale_help
        )
        parser.add_argument("--data-dir", type=Path, default=None)
        parser.add_argument(
            "--fault",
            action="append",
            dest="faults",
            default=[],
            metavar="SPEC",
            help="KIND[:COUNT[:ROUTE]][,key=value...] or JSON, "
            f"e.g. {self.fault_example}",
        )
        parser.add_argument("--quiet", action="store_true", help="no request log")
        self.add_vendor_arguments(parser)

    def add_vendor_arguments(self, parser: Any) -> None:
        """The vendor's own options."""

    def start_emulator(
        self,
        make: Callable[..., E],
        parse_fault: Callable[[str], dict[str, Any]],
        opts: dict[str, Any],
        settings: Iterable[str],
    ) -> E:
        """`make(...)` with the shared options and the named `settings`, started."""
        try:
            emulator = make(
                host=opts["host"],
                port=opts["port"],
                time_scale=opts["time_scale"],
                api_keys=opts["api_keys"] or None,
                data_dir=opts["data_dir"],
                quiet=opts["quiet"],
                faults=[parse_fault(text) for text in opts["faults"]],
                **{name: opts[name] for name in settings},
            )
            emulator.start()
        except (ValueError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        return emulator

    def serve(self, emulator: Serving, heading: Iterable[str], keys: str) -> None:
        """Print where it listens, then serve until Ctrl-C or SIGTERM and stop."""
        for line in heading:
            self.stdout.write(line)
        self.stdout.write(f"  control API {emulator.url}/_emulator/state")
        self.stdout.write(f"  API keys: {keys}")
        self.stdout.write("Quit with Ctrl-C.")
        done = threading.Event()
        # SIGTERM (e.g. from a process manager) stops as cleanly as Ctrl-C.
        with contextlib.suppress(ValueError):  # only the main thread may do this
            signal.signal(signal.SIGTERM, lambda *_: done.set())
        try:
            while not done.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            emulator.stop()
            self.stdout.write("Emulator stopped.")
