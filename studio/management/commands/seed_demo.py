from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from studio.models import Membership, Team, User

DEMO_USER = "demo"
PASSWORD_FILE = "demo-password"


def demo_password_file() -> Path:
    return settings.DATA_DIR / PASSWORD_FILE


def read_or_make_password(path: Path) -> tuple[str, bool]:
    """The password kept in path, or a new random one written there (mode 0600).

    Returns the password and whether it is new.
    """
    if path.exists() and (kept := path.read_text().strip()):
        return kept, False
    password = secrets.token_urlsafe(12)
    # Created 0600 from the start: never readable by others, even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(password + "\n")
    path.chmod(0o600)
    return password, True


class Command(BaseCommand):
    help = (
        "Create the demo team and a demo admin user (idempotent). The password is "
        "random, kept in S2V_DATA_DIR/demo-password. Refused in production."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url", default="", help="The studio's address, printed with the password."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError(
                "seed_demo makes a superuser with a password kept in a file, which "
                "has no place in production (S2V_PRODUCTION is on). Create real "
                "accounts with: manage.py createsuperuser"
            )
        path = demo_password_file()
        password, new = read_or_make_password(path)
        team, _ = Team.objects.get_or_create(
            slug="demo", defaults={"name": "Demo team"}
        )
        user = User.objects.filter(username=DEMO_USER).first()
        if user is None:
            user = User.objects.create_user(DEMO_USER, password=password)
            user.is_staff = user.is_superuser = True
            user.save()
        elif new:
            # A demo user without a kept password predates the random ones and
            # still has the password that was once published: replace it.
            user.set_password(password)
            user.save(update_fields=["password"])
        Membership.objects.get_or_create(
            user=user, team=team, defaults={"role": Membership.Role.ADMIN}
        )
        where = f"Open {options['url']} and sign" if options["url"] else "Sign"
        self.stdout.write(
            f"Demo team '{team.name}'. {where} in as {DEMO_USER} / {password}\n"
            f"(kept in {path}; a run after deleting that file sets a new one)."
        )
