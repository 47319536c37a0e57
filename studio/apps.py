from __future__ import annotations

from django.apps import AppConfig


class StudioConfig(AppConfig):
    name = "studio"
    verbose_name = "S2V Studio"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from . import checks, devserver  # noqa: F401  (checks registers itself)

        post_migrate.connect(_ensure_schedules, sender=self)
        devserver.install()


def _ensure_schedules(**kwargs: object) -> None:
    # The sweep that recovers jobs whose worker died runs every minute on any
    # cluster; one schedule row serves every worker machine.
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name="studio-sweep",
        defaults={
            "func": "studio.tasks.jobs_sweep",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )
    # The provider's bill, compared with the studio's records (studio.reconcile).
    # The listing covers what each provider keeps and every run is idempotent,
    # so running it more often only finds outside billing sooner.
    from django.conf import settings

    Schedule.objects.update_or_create(
        name="studio-reconcile",
        defaults={
            "func": "studio.tasks.reconcile_account",
            "schedule_type": Schedule.MINUTES,
            "minutes": settings.S2V_RECONCILE_MINUTES,
            "repeats": -1,
        },
    )
