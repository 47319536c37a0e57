"""`manage.py dashscope_emulator`: serve the DashScope emulator until Ctrl-C."""

from __future__ import annotations

from typing import Any

from studio.emulators.command import EmulatorCommand
from studio.emulators.dashscope.faults import parse_flag
from studio.emulators.dashscope.server import Emulator


class Command(EmulatorCommand):
    help = (
        "Serve a local emulator of DashScope's wan2.2-s2v, wan2.2-s2v-detect and "
        "temporary-upload APIs on loopback (see studio/emulator/server.py)."
    )

    default_port = 8765
    time_scale_help = "divide every DashScope period (24 h, 48 h, 300 s) by this"
    fault_example = "throttle:3"

    def add_vendor_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--api-key",
            action="append",
            dest="api_keys",
            metavar="KEY[:ACCOUNT[:REGION]]",
            help="repeatable; default sk-emulator:acct-1:cn-beijing",
        )
        parser.add_argument(
            "--region", default="cn-beijing", choices=["cn-beijing", "ap-southeast-1"]
        )
        parser.add_argument("--overflow", default="queue", choices=["queue", "reject"])
        parser.add_argument("--overflow-code", default="Throttling.RateQuota")
        parser.add_argument(
            "--overflow-message",
            default="Requests rate limit exceeded, please try again later.",
        )
        parser.add_argument("--overflow-status", type=int, default=429)
        parser.add_argument("--concurrency", type=int, default=1)
        parser.add_argument(
            "--pending-seconds",
            type=float,
            default=0.0,
            help="least time each task stays PENDING before it may start",
        )
        parser.add_argument("--run-seconds-base", type=float, default=0.5)
        parser.add_argument("--run-seconds-per-audio-second", type=float, default=0.0)
        parser.add_argument(
            "--input-errors", default="async", choices=["sync", "async"]
        )
        parser.add_argument(
            "--usage-field",
            default="duration",
            choices=["duration", "video_duration", "both"],
        )
        for name, default in (
            ("submit-rps", 5.0),
            ("query-qps", 20.0),
            ("detect-rps", 5.0),
            ("policy-qps", 100.0),
        ):
            parser.add_argument(
                f"--{name}", type=float, default=default, help="0 turns it off"
            )
        for name in ("task", "result", "upload", "policy"):
            parser.add_argument(
                f"--{name}-ttl",
                type=float,
                default=None,
                help=f"real seconds the {name} period lasts (overrides --time-scale)",
            )
        parser.add_argument("--max-file-size-mb", type=float, default=100.0)

    def handle(self, *args: Any, **opts: Any) -> None:
        emulator = self.start_emulator(
            Emulator,
            parse_flag,
            opts,
            (
                "region",
                "overflow",
                "overflow_code",
                "overflow_message",
                "overflow_status",
                "concurrency",
                "pending_seconds",
                "run_seconds_base",
                "run_seconds_per_audio_second",
                "input_errors",
                "usage_field",
                "submit_rps",
                "query_qps",
                "detect_rps",
                "policy_qps",
                "task_ttl",
                "result_ttl",
                "upload_ttl",
                "policy_ttl",
                "max_file_size_mb",
            ),
        )
        keys = ", ".join(
            f"{k.key} ({k.account}, {k.region})" for k in emulator.api_keys
        )
        heading = [
            f"DashScope emulator at {emulator.base_url}",
            f"  also under {emulator.qwen_base_url}",
        ]
        self.serve(emulator, heading, keys)
