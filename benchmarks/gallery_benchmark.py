"""How fast the gallery renders for a team with 10,000 jobs.

Run from the repository root:

    .venv/bin/python benchmarks/gallery_benchmark.py [--jobs 10000] [--repeat 25]

It migrates a throwaway SQLite database in a temporary S2V_DATA_DIR, seeds one
team with --jobs jobs (bulk_create, no media files) and an empty team, then
renders pages through Django's test client, signed in, exactly as a browser
would get them. It prints the median time per page and its ratio to rendering
the gallery of an empty team in the same run, so the figures compare across
machines; a team with one page of jobs shows what the 10,000 add. Target:
every ratio at most 3.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_RATIO = 3.0
BATCH = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=25)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="s2v-gallery-bench-") as data_dir:
        for key in [k for k in os.environ if k.startswith("S2V_")]:
            del os.environ[key]
        os.environ.update(
            DJANGO_SETTINGS_MODULE="s2vsite.settings",
            S2V_DATA_DIR=data_dir,
            S2V_ALLOWED_HOSTS="testserver",
            S2V_LOG_LEVEL="WARNING",
        )
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        run(args.jobs, args.repeat)


WORDS = ["welcome", "pricing", "berlin", "launch", "teaser", "onboarding", "recap"]


def seed(jobs: int) -> tuple[Any, dict[str, Any]]:
    """The viewer and three teams they admin: busy (`jobs` jobs), small (one page), empty."""
    from studio.models import Membership, Team, User

    rng = random.Random(7)
    users = [User.objects.create_user(f"user{n}") for n in range(8)]
    viewer = users[0]
    teams = {}
    for slug, count in (("busy", jobs), ("small", 12), ("empty", 0)):
        team = Team.objects.create(name=slug.title(), slug=slug)
        for user in users:
            role = Membership.Role.ADMIN if user == viewer else Membership.Role.MEMBER
            Membership.objects.create(user=user, team=team, role=role)
        seed_jobs(team, users, count, rng)
        teams[slug] = team
    return viewer, teams


def seed_jobs(team: Any, users: list[Any], count: int, rng: random.Random) -> None:
    from django.utils import timezone

    from studio.models import AudioClip, Favourite, GenerationJob, Portrait

    viewer = users[0]
    portrait = Portrait.objects.create(
        team=team,
        uploaded_by=viewer,
        file="bench/portrait.jpg",
        sha256="0" * 64,
        size=1,
        width=800,
        height=800,
        format="JPEG",
    )
    audio = AudioClip.objects.create(
        team=team,
        uploaded_by=viewer,
        file="bench/audio.wav",
        original_format="wav",
        format="wav",
        sha256="1" * 64,
        duration=12.0,
        size=1,
        sample_rate=16000,
        channels=1,
    )
    statuses = [s for s, _ in GenerationJob.Status.choices]
    weights = [2, 1, 1, 80, 12, 4]  # mostly finished, as a real gallery is
    rows = []
    for n in range(count):
        status = rng.choices(statuses, weights)[0]
        done = status == GenerationJob.Status.SUCCEEDED
        seconds = round(rng.uniform(3, 20), 2) if done else None
        rows.append(
            GenerationJob(
                team=team,
                created_by=rng.choice(users),
                portrait=portrait,
                audio=audio,
                provider=rng.choice(["local", "local", "dashscope"]),
                status=status,
                resolution=rng.choice(["480P", "720P"]),
                title=f"{rng.choice(WORDS).title()} take {n}",
                notes=rng.choice(["", "", f"client {rng.choice(WORDS)}"]),
                video_duration=seconds,
                cost=Decimal(f"{seconds * 0.129:.6f}") if seconds else None,
                currency="USD",
                video=f"bench/{n}.mp4" if done else "",
                poster=f"bench/{n}.jpg" if done else "",
                review_state=rng.choice(["none", "none", "approved", "changes"])
                if done
                else "none",
            )
        )
        if len(rows) == BATCH:
            GenerationJob.objects.bulk_create(rows)
            rows = []
    GenerationJob.objects.bulk_create(rows)
    # Spread the jobs over about a year (auto_now_add gave them all "now").
    now = timezone.now()
    ids = list(GenerationJob.objects.filter(team=team).values_list("pk", flat=True))
    for age, job_id in enumerate(reversed(ids)):
        GenerationJob.objects.filter(pk=job_id).update(
            queued_at=now - timedelta(minutes=age * 50)
        )
    Favourite.objects.bulk_create(
        Favourite(user=viewer, job_id=job_id)
        for job_id in rng.sample(ids, max(len(ids) // 20, min(len(ids), 3)))
    )


def run(jobs: int, repeat: int) -> None:
    from django.db import connection, transaction
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from studio.middleware import SESSION_TEAM_KEY

    started = time.perf_counter()
    with transaction.atomic():
        viewer, teams = seed(jobs)
    print(f"Seeded {jobs} jobs in {time.perf_counter() - started:.1f} s")

    client = Client()
    client.force_login(viewer)

    def use(team: Any) -> None:
        session = client.session
        session[SESSION_TEAM_KEY] = team.pk
        session.save()

    def get(query: dict[str, str], htmx: bool) -> float:
        headers = {"HX-Request": "true"} if htmx else {}
        t0 = time.perf_counter()
        response = client.get("/gallery/", query, headers=headers)
        elapsed = time.perf_counter() - t0
        assert response.status_code == 200, response.status_code
        return elapsed

    def render(team: Any, query: dict[str, str], htmx: bool) -> float:
        use(team)
        return get(query, htmx)

    def queries(team: Any, query: dict[str, str], htmx: bool) -> int:
        use(team)
        with CaptureQueriesContext(connection) as captured:
            get(query, htmx)
        return len(captured.captured_queries)

    busy = teams["busy"]
    cases = [
        ("empty gallery (baseline)", teams["empty"], {}, False),
        ("first page, 12 jobs in the team", teams["small"], {}, False),
        (f"first page, {jobs} jobs", busy, {}, False),
        ("first page, htmx grid", busy, {}, True),
        (
            "filtered: done, 720P, approved",
            busy,
            {"status": "succeeded", "resolution": "720P", "review": "approved"},
            True,
        ),
        (
            "filtered: author, date range",
            busy,
            {"author": "user3", "date_from": "2000-01-01", "date_to": "2100-01-01"},
            True,
        ),
        ("search in titles and notes", busy, {"q": "berlin"}, True),
        ("my favourites", busy, {"favourites": "1"}, True),
        ("sorted by cost", busy, {"sort": "costliest"}, True),
        ("sorted by duration, page 50", busy, {"sort": "longest", "page": "50"}, True),
    ]
    for _, team, query, htmx in cases:  # warm caches
        render(team, query, htmx)
    # Rounds interleave every page, and each ratio is taken within its round, so
    # a machine that gets busier during the run does not skew the ratios.
    times: list[list[float]] = [[] for _ in cases]
    for _ in range(repeat):
        for i, (_, team, query, htmx) in enumerate(cases):
            times[i].append(render(team, query, htmx))

    print(
        f"\nMedian of {repeat} interleaved rounds; ratio = time / the empty gallery"
        f" page in the same round (target <= {TARGET_RATIO:g})"
    )
    worst = 0.0
    for i, (label, team, query, htmx) in enumerate(cases):
        ratio = statistics.median(
            t / b for t, b in zip(times[i], times[0], strict=True)
        )
        if i:
            worst = max(worst, ratio)
        print(
            f"{label:36} {statistics.median(times[i]) * 1000:7.1f} ms  {ratio:4.2f}"
            f"  {queries(team, query, htmx)} queries"
        )
    verdict = "OK" if worst <= TARGET_RATIO else "SLOW"
    print(f"\nWorst ratio {worst:.2f} ({verdict})")


if __name__ == "__main__":
    main()
