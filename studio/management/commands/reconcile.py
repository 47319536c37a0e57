from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from studio import reconcile


class Command(BaseCommand):
    help = (
        "Compare the provider account's tasks of the last 24 h with the studio's, "
        "and record in the ledger what was billed outside the studio. Safe to run "
        "any number of times."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--provider", default="", help="provider name (default: S2V_PROVIDER)"
        )

    def handle(self, *args: Any, provider: str, **options: Any) -> None:
        try:
            run = reconcile.reconcile(provider_name=provider or None)
        except reconcile.NothingToReconcile as exc:
            self.stdout.write(str(exc))
            return
        if run.error:
            raise CommandError(run.error)
        self.stdout.write(reconcile.summary(run))
        for finding in run.findings:
            cost = f" {finding['cost']}" if finding["cost"] else ""
            seconds = f" {finding['seconds']} s" if finding["seconds"] else ""
            self.stdout.write(
                f"  {finding['kind']:<10} {finding['task_id']} {finding['status']}"
                f"{seconds}{cost}: {finding['note']}"
            )
