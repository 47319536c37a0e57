"""Seed WaveSpeed's wan-2.2-animate prices (provider-api.md §9.6).

USD per output second by resolution, as 0016 seeded speech-to-video's, for
WaveSpeed and for its emulator (priced like the real provider, as in 0016).
Billing's rule (at least 5 s; references over 120 s are refused) is the
catalog's, not the table's.
"""

from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations

SINCE = datetime(2025, 1, 1, tzinfo=UTC)
SOURCE = "provider-api.md §9.6"
MODEL = "wavespeed-ai/wan-2.2-animate"
# (resolution, USD per output second)
PRICES = [("480P", "0.04"), ("720P", "0.08")]
PROVIDERS = ("wavespeed", "wavespeed-emulator")


def seed(apps, schema_editor):
    Price = apps.get_model("studio", "Price")
    for provider in PROVIDERS:
        for resolution, price in PRICES:
            Price.objects.get_or_create(
                provider=provider,
                model=MODEL,
                unit="second",
                resolution=resolution,
                currency="USD",
                valid_from=SINCE,
                defaults={"unit_price": Decimal(price), "source": SOURCE},
            )


def unseed(apps, schema_editor):
    apps.get_model("studio", "Price").objects.filter(
        provider__in=PROVIDERS, model=MODEL, valid_from=SINCE
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("studio", "0020_emo_prices")]
    operations = [migrations.RunPython(seed, unseed)]
