from __future__ import annotations

from typing import Any, cast

from django import forms

from . import catalog
from .models import Budget, Membership, Team

_BYTES_IN_MB = 1024 * 1024


class UploadForm(forms.Form):
    """One file, checked for presence and size before anything reads it."""

    def __init__(self, *args: Any, field_name: str, max_mb: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.field_name = field_name
        self.max_mb = max_mb
        self.fields[field_name] = forms.FileField(
            error_messages={
                "required": "Choose a file first.",
                "empty": "The file is empty (0 bytes). Choose another file.",
                "invalid": "That upload did not arrive as a file. Try again.",
            }
        )

    def clean(self) -> dict[str, Any]:
        # Form.clean() returns cleaned_data; only overrides may return None.
        data = cast("dict[str, Any]", super().clean())
        upload = data.get(self.field_name)
        if upload is not None and upload.size > self.max_mb * _BYTES_IN_MB:
            self.add_error(
                self.field_name,
                f"The file is {upload.size / _BYTES_IN_MB:.0f} MB; uploads are "
                f"limited to {self.max_mb} MB.",
            )
        return data


class GenerateForm(forms.Form):
    portrait = forms.UUIDField(
        error_messages={"required": "Choose a portrait that passes the check first."}
    )
    audio = forms.UUIDField(
        error_messages={"required": "Choose an audio clip that fits first."}
    )
    resolution = forms.ChoiceField(
        choices=[(t, t) for t in catalog.model(catalog.S2V).tiers],
        initial=catalog.RESOLUTION.default,
    )
    title = forms.CharField(max_length=120, required=False)
    budget_override = forms.BooleanField(required=False)
    # Checked by services.job_create against the catalog and the team's choices,
    # which word what is wrong (and what to choose instead) better than a field can.
    provider = forms.CharField(max_length=32, required=False)
    prompt = forms.CharField(required=False, strip=True)
    seed = forms.CharField(max_length=20, required=False, strip=True)


class RenameForm(forms.Form):
    title = forms.CharField(max_length=120, required=False)


class BudgetForm(forms.ModelForm[Budget]):
    class Meta:
        model = Budget
        fields = [
            "monthly_amount",
            "monthly_seconds",
            "max_resolution",
            "max_waiting_jobs",
        ]
        labels = {
            "monthly_amount": "Monthly budget",
            "monthly_seconds": "Monthly seconds",
            "max_resolution": "Highest resolution",
            "max_waiting_jobs": "Most waiting jobs",
        }
        # The browser's hint only; Budget.monthly_amount's validator refuses the rest.
        widgets = {
            "monthly_amount": forms.NumberInput(attrs={"min": "0", "step": "0.01"})
        }


class TeamBudgetForm(BudgetForm):
    class Meta(BudgetForm.Meta):
        fields = [*BudgetForm.Meta.fields, "stop_at_limit"]
        labels = {
            **BudgetForm.Meta.labels,
            "stop_at_limit": "Stop at the limit (off: only warn)",
        }


class TeamProvidersForm(forms.Form):
    """Which of the studio's enabled providers the team may use; none ticked means all."""

    providers = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple
    )

    def __init__(self, *args: Any, team: Team, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = cast("forms.MultipleChoiceField", self.fields["providers"])
        field.choices = [(p.name, p.label) for p in catalog.enabled()]
        self.initial.setdefault("providers", list(team.allowed_providers or []))


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(
        choices=Membership.Role.choices, initial=Membership.Role.MEMBER
    )
