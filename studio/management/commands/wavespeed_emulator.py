"""`manage.py wavespeed_emulator`: serve the WaveSpeed emulator until Ctrl-C."""

from __future__ import annotations

from typing import Any

from studio.emulators.command import EmulatorCommand
from studio.emulators.wavespeed.faults import parse_flag
from studio.emulators.wavespeed.server import WaveSpeedEmulator


class Command(EmulatorCommand):
    help = (
        "Serve a local emulator of WaveSpeedAI's wan-2.2 speech-to-video API "
        "(uploads, predictions, webhooks) on loopback "
        "(see studio/emulators/wavespeed/server.py)."
    )

    default_port = 8766
    time_scale_help = (
        "divide every WaveSpeed period (7 d retention, the rate-limit minute, "
        "created/processing delays) by this"
    )
    fault_example = "throttle:3:submit"

    def add_vendor_arguments(self, parser: Any) -> None:
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

    def handle(self, *args: Any, **opts: Any) -> None:
        emulator = self.start_emulator(
            WaveSpeedEmulator,
            parse_flag,
            opts,
            (
                "created_seconds",
                "processing_seconds",
                "retention_seconds",
                "webhook_retries",
            ),
        )
        keys = ", ".join(
            f"{k.key} ({k.tier} {k.max_concurrent}/{k.per_minute}"
            f"{'' if k.balance else ', no balance'})"
            for k in emulator.api_keys
        )
        heading = [
            f"WaveSpeed emulator at {emulator.base_url}",
            f"  submit {emulator.submit_url}",
        ]
        self.serve(emulator, heading, keys)
