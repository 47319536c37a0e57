"""Seed EMO's prices (provider-api.md §8): emo-detect-v1 per image, emo-v1 per
output second by ratio, keyed by the ratio ("1:1", "3:4") in the `resolution`
column as animate's lines are by their mode word (0019).

CNY is documented. USD is not: it is converted at the rate Alibaba's own s2v
prices imply (§3.3), and each USD line says so in its source for admins to
correct. As in 0004, the DashScope emulator is priced like DashScope.
"""

from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations

SINCE = datetime(2025, 1, 1, tzinfo=UTC)
CNY_SOURCE = "provider-api.md §8"
USD_SOURCE = "provider-api.md §8, converted from CNY at the §3.3 rate (unconfirmed)"
# (model, unit, ratio, currency, price)
PRICES = [
    ("emo-detect-v1", "image", "", "CNY", "0.004"),
    ("emo-v1", "second", "1:1", "CNY", "0.08"),
    ("emo-v1", "second", "3:4", "CNY", "0.16"),
    ("emo-detect-v1", "image", "", "USD", "0.000574"),
    ("emo-v1", "second", "1:1", "USD", "0.011468"),
    ("emo-v1", "second", "3:4", "USD", "0.022937"),
]
PROVIDERS = ("dashscope", "emulator")


def seed(apps, schema_editor):
    Price = apps.get_model("studio", "Price")
    for provider in PROVIDERS:
        for model, unit, ratio, currency, price in PRICES:
            Price.objects.get_or_create(
                provider=provider,
                model=model,
                unit=unit,
                resolution=ratio,
                currency=currency,
                valid_from=SINCE,
                defaults={
                    "unit_price": Decimal(price),
                    "source": CNY_SOURCE if currency == "CNY" else USD_SOURCE,
                },
            )


def unseed(apps, schema_editor):
    apps.get_model("studio", "Price").objects.filter(
        provider__in=PROVIDERS,
        model__in={model for model, *_ in PRICES},
        valid_from=SINCE,
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("studio", "0019_animate_prices")]
    operations = [migrations.RunPython(seed, unseed)]
