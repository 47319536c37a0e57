from __future__ import annotations

from typing import Any

from django import forms

from .models import GenerationJob

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
        data = super().clean()
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
        choices=GenerationJob.Resolution.choices, initial=GenerationJob.Resolution.P480
    )
    title = forms.CharField(max_length=120, required=False)


class RenameForm(forms.Form):
    title = forms.CharField(max_length=120, required=False)
