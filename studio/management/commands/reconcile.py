from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from studio import reconcile


class Command(BaseCommand):
    help = (
        "Compare each enabled remote provider account's recent tasks (as far back "
        "as the provider keeps them) with the studio's, and record in the ledger "
        "what was billed outside the studio. Safe to run any number of times."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--provider",
            default="",
            help="one provider's name (default: every enabled remote provider)",
        )

    def handle(self, *args: Any, provider: str, **options: Any) -> None:
        names = [provider] if provider else reconcile.remote_provider_names()
        if not names:
            names = [""]  # the default provider, which says why there is nothing
        failed: list[str] = []
        for name in names:
            try:
                run = reconcile.reconcile(provider_name=name or None)
            except reconcile.NothingToReconcile as exc:
                self.stdout.write(str(exc))
                continue
            if len(names) > 1:
                self.stdout.write(f"{run.provider}:")
            if run.error:
                failed.append(f"{run.provider}: {run.error}")
                continue
            self.stdout.write(reconcile.summary(run))
            for finding in run.findings:
                cost = f" {finding['cost']}" if finding["cost"] else ""
                seconds = f" {finding['seconds']} s" if finding["seconds"] else ""
                self.stdout.write(
                    f"  {finding['kind']:<10} {finding['task_id']} {finding['status']}"
                    f"{seconds}{cost}: {finding['note']}"
                )
        if failed:
            raise CommandError("; ".join(failed))
