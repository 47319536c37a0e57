from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from studio.models import Membership, Team, User

DEMO_USER, DEMO_PASSWORD = "demo", "demo-studio"


class Command(BaseCommand):
    help = "Create the demo team and a demo admin user (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        team, _ = Team.objects.get_or_create(
            slug="demo", defaults={"name": "Demo team"}
        )
        user = User.objects.filter(username=DEMO_USER).first()
        if user is None:
            user = User.objects.create_user(DEMO_USER, password=DEMO_PASSWORD)
            user.is_staff = user.is_superuser = True
            user.save()
        Membership.objects.get_or_create(
            user=user, team=team, defaults={"role": Membership.Role.ADMIN}
        )
        self.stdout.write(
            f"Demo team '{team.name}', user '{DEMO_USER}' "
            f"(password '{DEMO_PASSWORD}' unless you changed it)."
        )
