from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.files import File
from django.core.management.base import BaseCommand, CommandError

from studio import catalog, services
from studio.models import GenerationJob, Membership, Team


class Command(BaseCommand):
    help = (
        "Queue a video from a portrait and an audio file, with the same checks as "
        "the web page. With --wait, wait and exit non-zero unless it succeeds."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--team", required=True, help="team slug or name")
        parser.add_argument("--user", required=True, help="username of a team member")
        parser.add_argument("--portrait", required=True, type=Path)
        parser.add_argument("--audio", required=True, type=Path)
        parser.add_argument(
            "--resolution",
            default=catalog.RESOLUTION.default,
            choices=catalog.RESOLUTION.choices,
        )
        parser.add_argument(
            "--provider",
            default="",
            help="a provider the team may use (default: the team's first); "
            "S2V_PROVIDERS lists the enabled ones",
        )
        parser.add_argument(
            "--model", default=catalog.S2V, help=f"model id (default {catalog.S2V})"
        )
        parser.add_argument("--prompt", default="", help="for providers that take one")
        parser.add_argument("--seed", default="", help="for providers that take one")
        parser.add_argument("--title", default="")
        parser.add_argument("--wait", action="store_true")
        parser.add_argument(
            "--timeout", type=float, default=1800, help="seconds to wait"
        )

    def _choice(self, team: Team, provider: str, model: str) -> tuple[str, str]:
        """The provider and model asked for, checked against the catalog and the team."""
        try:
            catalog.model(model)
        except catalog.UnknownChoice as exc:
            raise CommandError(
                f"{exc.message} Use one of: {', '.join(catalog.MODELS)}."
            ) from exc
        if provider and provider not in catalog.KNOWN:
            raise CommandError(
                f"There is no provider called {provider!r}. Use one of: "
                + ", ".join(catalog.enabled_names())
                + "."
            )
        try:
            name = services.provider_choose(team=team, provider=provider)
            catalog.offer(name, model)
        except services.Rejected as exc:
            raise CommandError(exc.message) from exc
        except catalog.UnknownChoice as exc:
            raise CommandError(exc.message) from exc
        return name, model

    def handle(self, *args: Any, **opts: Any) -> None:
        team = (
            Team.objects.filter(slug=opts["team"]).first()
            or Team.objects.filter(name=opts["team"]).first()
        )
        if team is None:
            raise CommandError(f"No team {opts['team']!r}.")
        membership = (
            Membership.objects.filter(team=team, user__username=opts["user"])
            .select_related("user")
            .first()
        )
        if membership is None:
            raise CommandError(f"{opts['user']!r} is not a member of {team.name}.")
        user = membership.user
        provider, model = self._choice(team, opts["provider"], opts["model"])
        for key in ("portrait", "audio"):
            opts[key] = Path(opts[key])  # call_command() passes strings through
            if not opts[key].is_file():
                raise CommandError(f"{opts[key]} is not a file.")

        try:
            with opts["portrait"].open("rb") as fh:
                portrait = services.portrait_submit(
                    team=team,
                    user=user,
                    upload=File(fh, name=opts["portrait"].name),
                    provider=services.portrait_checker(provider, model),
                )
            if portrait.portrait is None:
                reason = portrait.verdict.message if portrait.verdict else ""
                raise CommandError(f"Portrait: {reason or portrait.message}")
            with opts["audio"].open("rb") as fh:
                audio = services.audio_submit(
                    team=team,
                    user=user,
                    upload=File(fh, name=opts["audio"].name),
                    limits=catalog.offer(provider, model).limits,
                )
            if audio.clip is None:
                raise CommandError("Audio: " + " ".join(audio.problems))
            job = services.job_create(
                team=team,
                user=user,
                portrait=portrait.portrait,
                audio=audio.clip,
                resolution=opts["resolution"],
                title=opts["title"],
                provider=provider,
                model=model,
                params={"prompt": opts["prompt"], "seed": opts["seed"]},
            )
        except services.Rejected as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            f"Queued {job.code} ({job.display_title}) on "
            f"{catalog.provider_label(job.provider)}."
        )
        if not opts["wait"]:
            return

        deadline = time.monotonic() + opts["timeout"]
        last_status = ""
        hinted = False
        started = time.monotonic()
        while not job.is_terminal:
            if (
                not hinted
                and job.status == "queued"
                and time.monotonic() - started > 30
            ):
                hinted = True
                self.stderr.write(
                    "  Still queued after 30 s: is `manage.py qcluster` running?"
                )
            if time.monotonic() > deadline:
                raise CommandError(
                    f"Still {job.get_status_display().lower()} after {opts['timeout']:g} s."
                )
            time.sleep(1)
            job.refresh_from_db()
            if job.status != last_status:
                last_status = job.status
                self.stdout.write(f"  {job.get_status_display()}")
        if job.status != GenerationJob.Status.SUCCEEDED:
            raise CommandError(
                f"{job.get_status_display()}: {job.error_message or 'no video'}"
            )
        try:
            location = job.video.path
        except NotImplementedError:  # remote storage has names, not paths
            location = job.video.name
        self.stdout.write(
            f"Succeeded: {job.video_duration:.1f} s, cost {job.cost} {job.currency}, "
            f"video at {location}"
        )
