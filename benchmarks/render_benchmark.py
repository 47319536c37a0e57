"""How fast the local provider renders and checks faces, and whether memory stays flat.

Run from the repository root (no Django needed):

    .venv/bin/python benchmarks/render_benchmark.py [--seconds 20] [--resolution 480P]

The target on a 2-core machine: render time at most half the clip's length.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from studio.media.animate import render_animate  # noqa: E402
from studio.media.images import check_face  # noqa: E402
from studio.media.render import RenderInfo, render_video  # noqa: E402
from tests.media_factories import (  # noqa: E402
    ASTRONAUT,
    make_panning_video,
    make_twelve_megapixel_jpeg,
    make_wav,
)

TARGET_RATIO = 0.5


def rss_bytes() -> int:
    """Current resident set size, from /proc (Linux)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples RSS every 5 ms in a thread; `growth` is the peak over the start."""

    def __init__(self) -> None:
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self.start = self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.start) / 2**20


def speech_segments(seconds: float) -> list[tuple[float, float]]:
    """Speech in 2.4 s stretches with 0.8 s pauses, like someone talking."""
    segments, t = [], 0.3
    while t < seconds:
        segments.append((t, min(seconds, t + 2.4)))
        t += 3.2
    return segments


def render_once(
    workdir: Path, *, seconds: float, resolution: str
) -> tuple[RenderInfo, float, float]:
    audio = make_wav(
        workdir / f"speech-{seconds:g}.wav",
        seconds,
        sample_rate=16000,
        loud_segments=speech_segments(seconds),
    )
    with PeakRss() as memory:
        started = time.perf_counter()
        info = render_video(
            portrait=ASTRONAUT,
            audio=audio,
            resolution=resolution,
            face_box=None,
            out=workdir / f"out-{seconds:g}.mp4",
            poster=workdir / f"poster-{seconds:g}.jpg",
        )
        elapsed = time.perf_counter() - started
    return info, elapsed, memory.growth_mib


def animate_once(workdir: Path, *, seconds: float, tier: str) -> tuple[float, float]:
    """Render time / clip length and peak RSS growth of one "move" animate preview."""
    reference = make_panning_video(
        workdir / f"ref-{seconds:g}.mp4",
        seconds,
        size=(1280, 720),
        fps=25,
        speed=(2, 0),
        audio=True,
    )
    with PeakRss() as memory:
        started = time.perf_counter()
        info = render_animate(
            ASTRONAUT,
            reference,
            workdir / f"animate-{seconds:g}.mp4",
            mode="move",
            tier=tier,  # type: ignore[arg-type]
        )
        elapsed = time.perf_counter() - started
    return elapsed / info.duration, memory.growth_mib


def time_face_check(path: Path, *, repeat: int = 3) -> float:
    check_face(path)  # loads the cascades once
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        check_face(path)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--resolution", default="480P", choices=("480P", "720P"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="s2v-bench-") as tmp:
        workdir = Path(tmp)
        # Warm-up: imports, cascades, codec setup, so later peaks show clip cost.
        render_once(workdir, seconds=1.0, resolution=args.resolution)

        short = min(5.0, args.seconds)
        _, _, short_peak = render_once(
            workdir, seconds=short, resolution=args.resolution
        )
        info, elapsed, long_peak = render_once(
            workdir, seconds=args.seconds, resolution=args.resolution
        )
        ratio = elapsed / info.duration
        print(f"clip                 {info.duration:.2f} s at {args.resolution}")
        print(f"output               {info.width}x{info.height}, {info.frames} frames")
        print(f"render wall time     {elapsed:.2f} s")
        verdict = "OK" if ratio <= TARGET_RATIO else "SLOWER THAN TARGET"
        print(f"render / clip        {ratio:.3f} (target <= {TARGET_RATIO}) {verdict}")
        print(f"frames per second    {info.frames / elapsed:.1f}")
        print(f"peak RSS growth      {short:g} s clip: {short_peak:.1f} MiB")
        print(f"peak RSS growth      {args.seconds:g} s clip: {long_peak:.1f} MiB")

        # The animate preview from a 720p 25 fps reference with sound, at the
        # tier that matches --resolution.
        tier = "standard" if args.resolution == "480P" else "professional"
        animate_once(workdir, seconds=1.0, tier=tier)  # warm-up
        _, animate_short = animate_once(workdir, seconds=short, tier=tier)
        animate_ratio, animate_long = animate_once(
            workdir, seconds=args.seconds, tier=tier
        )
        print(f"animate / clip       {animate_ratio:.3f} ({tier}, move)")
        print(f"animate RSS growth   {short:g} s clip: {animate_short:.1f} MiB")
        print(f"animate RSS growth   {args.seconds:g} s clip: {animate_long:.1f} MiB")

        big = make_twelve_megapixel_jpeg(workdir / "12mp.jpg")
        print(f"face check astronaut {time_face_check(ASTRONAUT) * 1000:.0f} ms")
        print(f"face check 12 MP JPG {time_face_check(big) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
