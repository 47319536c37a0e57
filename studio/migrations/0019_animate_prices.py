"""Seed DashScope's animate prices (provider-api.md §7.3), unconfirmed.

The CNY figures come from a third-party table (§13.7); USD is not published
and is converted at the rate Alibaba's own s2v prices imply (§3.3), so the
studio's default currency has prices too. Each line says which in its source,
for admins to correct once Alibaba's own page is read. Prices are per output
second, keyed by the provider's mode word (wan-std, wan-pro) in the
`resolution` column, which is too short for the studio's "professional". As in
0004, the DashScope emulator is priced like DashScope.
"""

from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations

SINCE = datetime(2025, 1, 1, tzinfo=UTC)
SOURCES = {
    "CNY": "provider-api.md §7.3 (third-party figure, unconfirmed)",
    "USD": "provider-api.md §7.3, converted from CNY at the §3.3 rate (unconfirmed)",
}
# (model, mode, currency, price per output second)
PRICES = [
    ("wan2.2-animate-move", "wan-std", "CNY", "0.40"),
    ("wan2.2-animate-move", "wan-pro", "CNY", "0.60"),
    ("wan2.2-animate-mix", "wan-std", "CNY", "0.60"),
    ("wan2.2-animate-mix", "wan-pro", "CNY", "1.20"),
    ("wan2.2-animate-move", "wan-std", "USD", "0.057342"),
    ("wan2.2-animate-move", "wan-pro", "USD", "0.086012"),
    ("wan2.2-animate-mix", "wan-std", "USD", "0.086012"),
    ("wan2.2-animate-mix", "wan-pro", "USD", "0.172025"),
]
PROVIDERS = ("dashscope", "emulator")


def seed(apps, schema_editor):
    Price = apps.get_model("studio", "Price")
    for provider in PROVIDERS:
        for model, mode, currency, price in PRICES:
            Price.objects.get_or_create(
                provider=provider,
                model=model,
                unit="second",
                resolution=mode,
                currency=currency,
                valid_from=SINCE,
                defaults={"unit_price": Decimal(price), "source": SOURCES[currency]},
            )


def unseed(apps, schema_editor):
    apps.get_model("studio", "Price").objects.filter(
        provider__in=PROVIDERS,
        model__in={model for model, *_ in PRICES},
        valid_from=SINCE,
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("studio", "0018_video_clips")]
    operations = [migrations.RunPython(seed, unseed)]
