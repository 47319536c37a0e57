"""Rename stored inputs so their suffix is their verified format's.

Before this, a portrait kept the suffix its uploader chose (`face.html` was
stored as `<random>.html`). Serving now goes by the recorded format alone, but
storage URLs and provider uploads still go by the name, so each input whose
name disagrees with its format is copied to a server-chosen name and the old
file removed. Rows whose file is missing from storage are left as they are:
their served type already comes from the format.
"""

import logging
import uuid
from pathlib import PurePosixPath

from django.core.files.storage import default_storage
from django.db import migrations

log = logging.getLogger(__name__)

# studio.formats' suffixes as of this migration; frozen here on purpose.
SUFFIXES = {
    "jpeg": ".jpg",
    "png": ".png",
    "bmp": ".bmp",
    "webp": ".webp",
    "wav": ".wav",
    "mp3": ".mp3",
    "m4a": ".m4a",
    "aac": ".aac",
    "ogg": ".ogg",
    "flac": ".flac",
}
FOLDERS = {"Portrait": "portraits", "AudioClip": "audio"}


def rename_inputs(apps, schema_editor, storage=default_storage):
    """Give every stored input a random name ending in its format's suffix."""
    for model_name, folder in FOLDERS.items():
        model = apps.get_model("studio", model_name)
        rows = model.objects.select_related("team").order_by("pk")
        for row in rows.iterator():
            name = row.file.name
            suffix = SUFFIXES.get(row.format.lower(), ".bin")
            if not name or PurePosixPath(name).suffix.lower() == suffix:
                continue
            try:
                present = storage.exists(name)
            except (OSError, ValueError):  # a name storage refuses outright
                present = False
            if not present:
                log.warning("%s %s: %s is not in storage", model_name, row.pk, name)
                continue
            new = f"teams/{row.team.code}/{folder}/{uuid.uuid4().hex}{suffix}"
            with storage.open(name, "rb") as fh:
                new = storage.save(new, fh)
            model.objects.filter(pk=row.pk).update(file=new)
            storage.delete(name)


class Migration(migrations.Migration):
    # Row by row: each rename is committed before its old file is deleted, so
    # an interrupted run leaves every row pointing at a file that exists.
    atomic = False

    dependencies = [
        ("studio", "0005_gallery_review"),
    ]

    operations = [migrations.RunPython(rename_inputs, migrations.RunPython.noop)]
