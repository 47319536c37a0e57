"""Price the WaveSpeed emulator like WaveSpeed (provider-api.md §9.5).

0004 seeded the DashScope emulator's lines beside DashScope's, so that runs
against the emulator cost what the real provider would; WaveSpeed's emulator
gets the same treatment. Its lines copy WaveSpeed's as seeded.
"""

from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations

SINCE = datetime(2025, 1, 1, tzinfo=UTC)
DOC = "provider-api.md"
MODEL = "wavespeed-ai/wan-2.2/speech-to-video"
# (model, unit, resolution, currency, price, source)
PRICES = [
    (MODEL, "second", "480P", "USD", "0.03", f"{DOC} §9.5"),
    (MODEL, "second", "720P", "USD", "0.06", f"{DOC} §9.5"),
]


def seed(apps, schema_editor):
    Price = apps.get_model("studio", "Price")
    for model, unit, resolution, currency, price, source in PRICES:
        Price.objects.get_or_create(
            provider="wavespeed-emulator",
            model=model,
            unit=unit,
            resolution=resolution,
            currency=currency,
            valid_from=SINCE,
            defaults={"unit_price": Decimal(price), "source": source},
        )


def unseed(apps, schema_editor):
    apps.get_model("studio", "Price").objects.filter(
        provider="wavespeed-emulator", valid_from=SINCE
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("studio", "0015_tasks")]
    operations = [migrations.RunPython(seed, unseed)]
