"""Several qcluster processes share one Redis queue, and every job is done exactly once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import infra
from tests.live import REPO_ROOT, LiveStudio
from tests.media_factories import ASTRONAUT, make_wav

pytestmark = pytest.mark.cluster

JOBS = 8
UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _generate_at_once(studio: LiveStudio, audio: Path, count: int) -> list[str]:
    """Queue `count` jobs from as many processes at once: a burst on the queue."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "generate",
                "--team",
                "demo",
                "--user",
                "demo",
                "--portrait",
                str(ASTRONAUT),
                "--audio",
                str(audio),
                "--title",
                f"Burst {n}",
            ],
            cwd=REPO_ROOT,
            env=studio.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for n in range(count)
    ]
    codes = []
    for proc in procs:
        out, _ = proc.communicate(timeout=180)
        match = re.search(rf"Queued ({UUID_RE})", out)
        assert proc.returncode == 0 and match, out
        codes.append(match[1])
    return codes


def test_two_clusters_on_redis_do_every_job_exactly_once(tmp_path: Path) -> None:
    # Redis even on the embedded default's run: the broker is what is under test
    # (with SQLite there, with PostgreSQL and S3 on the services run).
    infra.ensure_redis()
    redis_url = os.environ.get("S2V_REDIS_URL") or infra.REDIS_URL
    audio = make_wav(tmp_path / "short.wav", 2.0)
    studio = LiveStudio(
        tmp_path / "studio",
        env={"S2V_REDIS_URL": redis_url, "S2V_Q_WORKERS": "2", "S2V_LOG_LEVEL": "INFO"},
        name="scale-out studio",
    )
    try:
        studio.prepare()
        clusters = {
            label: studio.spawn(label, "qcluster")
            for label in ("qcluster-a", "qcluster-b")
        }

        def both_listening() -> bool:
            logs = [(studio.log_dir / f"{label}.log").read_text() for label in clusters]
            return all(" running." in log for log in logs)

        studio.wait_for(both_listening, timeout=60, what="both clusters to start")
        codes = _generate_at_once(studio, audio, JOBS)

        def all_finished() -> bool:
            rows = studio.query("SELECT status FROM studio_generationjob")
            return len(rows) == JOBS and all(
                r["status"] in ("succeeded", "failed", "canceled") for r in rows
            )

        studio.wait_for(all_finished, timeout=240, interval=1, what="every job to end")
        for label, proc in clusters.items():
            assert proc.poll() is None, f"{label} exited\n{studio.logs()}"

        jobs = [studio.job(code) for code in codes]
        assert [j["status"] for j in jobs] == ["succeeded"] * JOBS, jobs
        # Claimed once each: no second start, by this cluster or the other.
        assert [j["attempts"] for j in jobs] == [1] * JOBS, jobs

        # django-q2's result table: one run per job message, none repeated.
        runs = studio.query(
            "SELECT name, success, attempt_count FROM django_q_task WHERE func = ?",
            ("studio.tasks.job_run",),
        )
        assert sorted(r["name"] for r in runs) == sorted(f"job-{j['id']}" for j in jobs)
        assert all(r["success"] and r["attempt_count"] == 1 for r in runs), runs

        # One rendered video per job in storage: nothing was rendered twice.
        videos = [n for n in studio.stored_names() if n.endswith(".mp4")]
        assert len(videos) == JOBS, videos
        assert sorted(videos) == sorted(j["video"] for j in jobs)

        # Both clusters took work from the one queue (django-q2 logs each task
        # it starts at INFO), and nothing is left in it.
        taken = {
            label: re.findall(
                r"processing (job-\d+) 'studio\.tasks\.job_run'",
                (studio.log_dir / f"{label}.log").read_text(),
            )
            for label in clusters
        }
        assert all(taken.values()), taken
        started = [name for names in taken.values() for name in names]
        assert sorted(started) == sorted(r["name"] for r in runs)
        client = infra.redis_client(redis_url)
        try:
            assert client.llen(f"django_q:{studio.env['S2V_REDIS_PREFIX']}:q") == 0
        finally:
            client.close()
    except BaseException:
        print(studio.logs())  # noqa: T201
        raise
    finally:
        studio.stop()
