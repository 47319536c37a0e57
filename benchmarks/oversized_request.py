"""How much the web process grows while refusing an oversized anonymous upload.

Starts a throwaway studio the way `make run` does (manage.py runstudio), sends
an anonymous POST of --size-mb (default 2048) to --path as a stream made on the
fly, and prints the answer and the web process's peak RSS growth during the
request (target: under 50 MB).

    .venv/bin/python benchmarks/oversized_request.py [--size-mb 2048] [--path /]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.live import (  # noqa: E402
    LiveStudio,
    find_child,
    reset_peak_rss,
    rss_kib,
    zero_body,
)

MB = 1024 * 1024


def oversized_post(
    studio: LiveStudio, web_pid: int, *, size: int, path: str
) -> tuple[httpx.Response, float, int]:
    """POST `size` zero bytes; returns the answer, seconds taken, peak growth in KiB."""
    with httpx.Client(base_url=studio.url, timeout=120) as client:
        # Warm up: the first refusal loads templates and the rest of the app.
        warm = 61 * MB
        client.post(
            path, content=zero_body(warm), headers={"Content-Length": str(warm)}
        )
        before = rss_kib(web_pid)
        reset_peak_rss(web_pid)
        started = time.monotonic()
        response = client.post(
            path,
            content=zero_body(size),
            headers={"Content-Length": str(size)},
        )
        took = time.monotonic() - started
    return response, took, rss_kib(web_pid, "VmHWM") - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=2048)
    parser.add_argument("--path", default="/")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="s2v-bench-oversized-") as tmp:
        studio = LiveStudio(Path(tmp), name="oversized-request benchmark")
        try:
            runstudio = studio.start_runstudio()
            web = find_child(runstudio.pid, "runserver")
            response, took, growth = oversized_post(
                studio, web, size=args.size_mb * MB, path=args.path
            )
        finally:
            studio.stop()
    print(f"POST {args.path} with {args.size_mb} MB, anonymous, streamed")
    print(f"answer: {response.status_code} in {took:.1f} s")
    print(f"web process RSS growth (peak): {growth / 1024:.1f} MB (target < 50 MB)")


if __name__ == "__main__":
    main()
