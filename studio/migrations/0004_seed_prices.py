"""Seed the price table from provider-api.md (§2.3, §3.3, §9.5); admins edit it later."""

from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations

SINCE = datetime(2025, 1, 1, tzinfo=UTC)
DOC = "provider-api.md"
# (provider, model, unit, resolution, currency, price, source)
PRICES = [
    *(
        row
        for provider in ("dashscope", "emulator")
        for row in (
            (
                provider,
                "wan2.2-s2v",
                "second",
                "480P",
                "USD",
                "0.071677",
                f"{DOC} §3.3",
            ),
            (
                provider,
                "wan2.2-s2v",
                "second",
                "720P",
                "USD",
                "0.129018",
                f"{DOC} §3.3",
            ),
            (provider, "wan2.2-s2v", "second", "480P", "CNY", "0.5", f"{DOC} §3.3"),
            (provider, "wan2.2-s2v", "second", "720P", "CNY", "0.9", f"{DOC} §3.3"),
            (
                provider,
                "wan2.2-s2v-detect",
                "image",
                "",
                "USD",
                "0.000574",
                f"{DOC} §2.3",
            ),
            (provider, "wan2.2-s2v-detect", "image", "", "CNY", "0.004", f"{DOC} §2.3"),
        )
    ),
    (
        "wavespeed",
        "wavespeed-ai/wan-2.2/speech-to-video",
        "second",
        "480P",
        "USD",
        "0.03",
        f"{DOC} §9.5",
    ),
    (
        "wavespeed",
        "wavespeed-ai/wan-2.2/speech-to-video",
        "second",
        "720P",
        "USD",
        "0.06",
        f"{DOC} §9.5",
    ),
    *(
        ("local", "local", unit, resolution, currency, "0", "the local engine is free")
        for currency in ("USD", "CNY")
        for unit, resolution in (("second", "480P"), ("second", "720P"), ("image", ""))
    ),
]


def seed(apps, schema_editor):
    Price = apps.get_model("studio", "Price")
    for provider, model, unit, resolution, currency, price, source in PRICES:
        Price.objects.get_or_create(
            provider=provider,
            model=model,
            unit=unit,
            resolution=resolution,
            currency=currency,
            valid_from=SINCE,
            defaults={"unit_price": Decimal(price), "source": source},
        )


def unseed(apps, schema_editor):
    apps.get_model("studio", "Price").objects.filter(valid_from=SINCE).delete()


class Migration(migrations.Migration):
    dependencies = [("studio", "0003_costs_budgets")]
    operations = [migrations.RunPython(seed, unseed)]
