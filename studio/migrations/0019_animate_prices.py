"""Seed DashScope's animate prices (provider-api.md §7.3), unconfirmed.

The figures come from a third-party table (§13.7), so each line says so in its
source, for admins to correct once Alibaba's own page is read. Prices are per
output second in CNY, keyed by the provider's mode word (wan-std, wan-pro) in
the `resolution` column, which is too short for the studio's "professional".
As in 0004, the DashScope emulator is priced like DashScope.
"""

from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations

SINCE = datetime(2025, 1, 1, tzinfo=UTC)
SOURCE = "provider-api.md §7.3 (third-party figure, unconfirmed)"
# (model, mode, CNY per output second)
PRICES = [
    ("wan2.2-animate-move", "wan-std", "0.40"),
    ("wan2.2-animate-move", "wan-pro", "0.60"),
    ("wan2.2-animate-mix", "wan-std", "0.60"),
    ("wan2.2-animate-mix", "wan-pro", "1.20"),
]
PROVIDERS = ("dashscope", "emulator")


def seed(apps, schema_editor):
    Price = apps.get_model("studio", "Price")
    for provider in PROVIDERS:
        for model, mode, price in PRICES:
            Price.objects.get_or_create(
                provider=provider,
                model=model,
                unit="second",
                resolution=mode,
                currency="CNY",
                valid_from=SINCE,
                defaults={"unit_price": Decimal(price), "source": SOURCE},
            )


def unseed(apps, schema_editor):
    apps.get_model("studio", "Price").objects.filter(
        provider__in=PROVIDERS,
        model__in={model for model, _, _ in PRICES},
        valid_from=SINCE,
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("studio", "0018_video_clips")]
    operations = [migrations.RunPython(seed, unseed)]
