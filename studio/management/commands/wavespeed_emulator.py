"""`manage.py wavespeed_emulator`: serve the WaveSpeed emulator until Ctrl-C."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from studio.emulators.wavespeed.faults import parse_flag
from studio.emulators.wavespeed.server import WaveSpeedEmulator


class Command(BaseCommand):
    help = (
        "Serve a local emulator of WaveSpeedAI's wan-2.2 speech-to-video API "
        "(uploads, predictions, webhooks) on loopback "
        "(see studio/emulators/wavespeed/server.py)."
    )
    requires_system_checks: list[str] = []  # no database or apps involved

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="loopback address")
        parser.add_argument("--port", type=int, default=8766)
        parser.add_argument(
            "--time-scale",
            type=float,
            default=1.0,
            help="divide every WaveSpeed period (7 d retention, the rate-limit "
            "minute, created/processing delays) by this",
        )
        parser.add_argument(
            "--key",
            action="append",
            dest="api_keys",
            metavar="KEY[:TIER|CONCURRENT/PER_MINUTE][:nobalance]",
            help="repeatable; tiers bronze, silver, unlimited; default "
            "ws-emulator:bronze",
        )
        parser.add_argument("--created-seconds", type=float, default=1.0)
        parser.add_argument("--processing-seconds", type=float, default=3.0)
        parser.add_argument(
            "--retention-seconds",
            type=float,
            default=None,
            help="real seconds predictions and uploads live (overrides --time-scale)",
        )
        parser.add_argument("--webhook-retries", type=int, default=2)
        parser.add_argument("--data-dir", type=Path, default=None)
        parser.add_argument(
            "--fault",
            action="append",
            dest="faults",
            default=[],
            metavar="SPEC",
            help="KIND[:COUNT[:ROUTE]][,key=value...] or JSON, e.g. throttle:3:submit",
        )
        parser.add_argument("--quiet", action="store_true", help="no request log")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            fault_specs = [parse_flag(text) for text in opts["faults"]]
            emulator = WaveSpeedEmulator(
                host=opts["host"],
                port=opts["port"],
                time_scale=opts["time_scale"],
                api_keys=opts["api_keys"] or None,
                created_seconds=opts["created_seconds"],
                processing_seconds=opts["processing_seconds"],
                retention_seconds=opts["retention_seconds"],
                webhook_retries=opts["webhook_retries"],
                data_dir=opts["data_dir"],
                quiet=opts["quiet"],
                faults=fault_specs,
            )
            emulator.start()
        except (ValueError, OSError) as exc:
            raise CommandError(str(exc)) from exc

        keys = ", ".join(
            f"{k.key} ({k.tier} {k.max_concurrent}/{k.per_minute}"
            f"{'' if k.balance else ', no balance'})"
            for k in emulator.api_keys
        )
        self.stdout.write(f"WaveSpeed emulator at {emulator.base_url}")
        self.stdout.write(f"  submit {emulator.submit_url}")
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
