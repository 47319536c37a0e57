"""Uploaded files are served as what they are, never as what their name says.

Each upload here is a real portrait (the local provider finds the astronaut's
face) that is also an HTML page or a script. Whatever name it arrives under,
it must be stored and served only as its image type, in a sandbox.
"""

from __future__ import annotations

import importlib
import io
import shutil
import subprocess
from pathlib import Path

import pytest
from django.apps import apps
from django.core import signing
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from studio import services, tasks
from studio.models import AudioClip, Portrait
from studio.providers.staging import PUBLIC_LINK_SALT
from tests.conftest import ASTRONAUT, upload

pytestmark = pytest.mark.django_db

HTML = (
    b"<!DOCTYPE html><html><body><script>alert(document.domain)</script></body></html>"
)
SCRIPT_TAIL = b"*/;alert(document.domain);"
# Names a browser or a server would take for a page, a script or markup.
HOSTILE_NAMES = [
    "face.html",
    "face.htm",
    "face.xhtml",
    "face.svg",
    "face.js",
    "face.mjs",
    "face.xml",
    "face",
]


def astronaut() -> Image.Image:
    return Image.open(ASTRONAUT).convert("RGB")


def png_with_html_chunk() -> bytes:
    info = PngInfo()
    info.add_text("Comment", HTML.decode())
    buf = io.BytesIO()
    astronaut().save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def png_with_html_appended() -> bytes:
    return ASTRONAUT.read_bytes() + HTML


def jpeg_with_html_comment() -> bytes:
    buf = io.BytesIO()
    astronaut().save(buf, format="JPEG", quality=92, comment=HTML)
    return buf.getvalue()


def bmp_that_is_javascript() -> bytes:
    """A BMP whose bytes are also the script `BM=1;/*<pixels>*/;alert(...)`.

    Pillow ignores the file-size and reserved header fields, which here spell
    `=1;/*`; no `*` is left in the rest, so the comment ends only at the tail.
    """
    buf = io.BytesIO()
    astronaut().save(buf, format="BMP")
    data = bytearray(buf.getvalue())
    data[2:10] = b"=1;/*   "
    data[14:] = data[14:].replace(b"*", b"+")
    return bytes(data) + SCRIPT_TAIL


POLYGLOTS = {
    "png-html-chunk": (png_with_html_chunk, "PNG", ".png", "image/png"),
    "png-html-appended": (png_with_html_appended, "PNG", ".png", "image/png"),
    "jpeg-html-comment": (jpeg_with_html_comment, "JPEG", ".jpg", "image/jpeg"),
    "bmp-javascript": (bmp_that_is_javascript, "BMP", ".bmp", "image/bmp"),
}


def test_the_polyglots_really_are_pages_and_scripts():
    for make in (png_with_html_chunk, png_with_html_appended, jpeg_with_html_comment):
        assert HTML in make()
    script = bmp_that_is_javascript()
    assert script.startswith(b"BM=1;/*") and script.count(b"*/") == 1


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_the_bmp_polyglot_parses_as_javascript(tmp_path):
    path = tmp_path / "face.js"
    path.write_bytes(bmp_that_is_javascript())

    assert subprocess.run(["node", "--check", str(path)], check=False).returncode == 0


def assert_sandboxed(response, content_type):
    assert response["Content-Type"] == content_type
    csp = response["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp
    assert response["X-Content-Type-Options"] == "nosniff"


def public_link(name: str) -> str:
    return reverse(
        "studio:public-input", args=[signing.dumps(name, salt=PUBLIC_LINK_SALT)]
    )


def check_portrait(client, data: bytes, name: str) -> Portrait | None:
    response = client.post(
        reverse("studio:portrait-check"),
        {"portrait_file": ContentFile(data, name=name)},
    )
    assert response.status_code == 200
    return Portrait.objects.order_by("-pk").first()


@pytest.mark.parametrize("name", HOSTILE_NAMES)
@pytest.mark.parametrize("kind", POLYGLOTS)
def test_a_polyglot_portrait_is_stored_and_served_only_as_its_image_type(
    alice_client, kind, name
):
    make, fmt, suffix, content_type = POLYGLOTS[kind]
    data = make()

    portrait = check_portrait(alice_client, data, name)

    assert portrait is not None, "the polyglot is a good portrait; it should pass"
    assert portrait.format == fmt
    assert Path(portrait.file.name).suffix == suffix
    assert Path(portrait.file.name).stem != Path(name).stem
    for url in (portrait.get_absolute_url(), public_link(portrait.file.name)):
        response = alice_client.get(url)
        assert response.status_code == 200
        assert_sandboxed(response, content_type)
        assert b"".join(response.streaming_content) == data
        assert not response.get("Content-Disposition", "").startswith("attachment")


@pytest.mark.parametrize("name", [*HOSTILE_NAMES, "face.png"])
def test_a_plain_portrait_under_any_name_is_served_as_png(alice_client, name):
    portrait = check_portrait(alice_client, ASTRONAUT.read_bytes(), name)

    assert portrait is not None and portrait.file.name.endswith(".png")
    response = alice_client.get(portrait.get_absolute_url())
    assert_sandboxed(response, "image/png")


@pytest.mark.parametrize("name", ["voice.html", "voice.js", "voice.svg", "voice"])
def test_audio_under_a_hostile_name_is_stored_and_served_as_wav(
    alice_client, wav, name
):
    response = alice_client.post(
        reverse("studio:audio-check"),
        {"audio_file": ContentFile(wav.read_bytes(), name=name)},
    )

    assert response.status_code == 200
    clip = AudioClip.objects.get()
    assert clip.format == "wav" and clip.file.name.endswith(".wav")
    for url in (clip.get_absolute_url(), public_link(clip.file.name)):
        assert_sandboxed(alice_client.get(url), "audio/wav")


@pytest.fixture
def polyglot_job(alice, team, wav, enqueued):
    """A finished video made from a PNG-and-HTML portrait uploaded as .html."""
    outcome = services.portrait_submit(
        team=team,
        user=alice,
        upload=ContentFile(png_with_html_chunk(), name="face.html"),
    )
    clip = services.audio_submit(team=team, user=alice, upload=upload(wav)).clip
    assert outcome.portrait is not None and clip is not None
    job = services.job_create(
        team=team,
        user=alice,
        portrait=outcome.portrait,
        audio=clip,
        resolution="480P",
    )
    tasks.job_run(job.pk)
    job.refresh_from_db()
    assert job.video and job.poster
    return job


def test_every_kind_of_media_url_is_typed_sandboxed_and_revalidated(
    alice_client, alice, polyglot_job, client
):
    job = polyglot_job
    share = services.share_create(job=job, user=alice, days=7)
    token = services.share_token(share)
    urls = {
        reverse("studio:portrait-file", args=[job.portrait.code]): "image/png",
        reverse("studio:audio-file", args=[job.audio.code]): "audio/wav",
        reverse("studio:job-video", args=[job.code]): "video/mp4",
        reverse("studio:job-video", args=[job.code]) + "?download=1": "video/mp4",
        reverse("studio:job-poster", args=[job.code]): "image/jpeg",
        reverse("studio:share-video", args=[token]): "video/mp4",
        reverse("studio:share-poster", args=[token]): "image/jpeg",
        public_link(job.portrait.file.name): "image/png",
        public_link(job.audio.file.name): "audio/wav",
    }

    for url, content_type in urls.items():
        response = alice_client.get(url)
        assert response.status_code == 200, url
        assert_sandboxed(response, content_type)
        assert response["Cache-Control"] == "private, no-cache", url

    ranged = alice_client.get(job.portrait.get_absolute_url(), HTTP_RANGE="bytes=0-9")
    assert ranged.status_code == 206
    assert_sandboxed(ranged, "image/png")
    beyond = alice_client.get(
        job.portrait.get_absolute_url(), HTTP_RANGE="bytes=99999999-"
    )
    assert beyond.status_code == 416
    assert "sandbox" in beyond["Content-Security-Policy"]


def test_the_gallery_zip_is_sandboxed_too(alice_client, polyglot_job):
    response = alice_client.post(
        reverse("studio:gallery-zip"), {"job": [str(polyglot_job.code)]}
    )

    assert response.status_code == 200
    assert_sandboxed(response, "application/zip")


def test_a_file_of_no_known_format_is_only_ever_a_download(alice_client, alice, team):
    name = default_storage.save(
        f"teams/{team.code}/portraits/legacy.html", ContentFile(HTML)
    )
    portrait = Portrait.objects.create(
        team=team,
        uploaded_by=alice,
        file=name,
        sha256="0" * 64,
        size=len(HTML),
        width=512,
        height=512,
        format="GIF",
    )

    response = alice_client.get(portrait.get_absolute_url())

    assert_sandboxed(response, "application/octet-stream")
    assert response["Content-Disposition"].startswith("attachment;")


def test_a_staged_copy_with_an_uploaders_suffix_is_only_a_download(client):
    name = default_storage.save(f"staging/{'1' * 64}.html", ContentFile(HTML))

    response = client.get(public_link(name))

    assert_sandboxed(response, "application/octet-stream")
    assert response["Content-Disposition"].startswith("attachment;")


def test_staged_copies_for_the_provider_are_named_by_the_verified_format(tmp_path):
    from studio.providers.base import InputFile
    from studio.providers.staging import stage

    path = tmp_path / "face.html"
    path.write_bytes(png_with_html_chunk())

    name = stage(InputFile(path=path, sha256="2" * 64, format="PNG"))

    assert name == f"staging/{'2' * 64}.png"


# -- the data migration -------------------------------------------------------

migration = importlib.import_module("studio.migrations.0006_inputs_named_by_format")


def legacy_portrait(team, user, name: str, data: bytes | None) -> Portrait:
    """A portrait as stored before: under the suffix its uploader chose."""
    if data is not None:
        name = default_storage.save(name, ContentFile(data))
    return Portrait.objects.create(
        team=team,
        uploaded_by=user,
        file=name,
        sha256="3" * 64,
        size=len(data or b""),
        width=512,
        height=512,
        format="PNG",
    )


def test_the_migration_renames_a_legacy_html_portrait_to_png(alice_client, alice, team):
    data = png_with_html_chunk()
    portrait = legacy_portrait(team, alice, f"teams/{team.code}/portraits/x.html", data)
    old_name = portrait.file.name
    assert old_name.endswith(".html")

    migration.rename_inputs(apps, None)

    portrait.refresh_from_db()
    assert portrait.file.name.startswith(f"teams/{team.code}/portraits/")
    assert portrait.file.name.endswith(".png")
    assert not default_storage.exists(old_name)
    with default_storage.open(portrait.file.name, "rb") as fh:
        assert fh.read() == data
    assert_sandboxed(alice_client.get(portrait.get_absolute_url()), "image/png")


def test_the_migration_leaves_missing_files_and_good_names_alone(alice, team, wav):
    missing = legacy_portrait(
        team, alice, f"teams/{team.code}/portraits/gone.html", None
    )
    clip = services.audio_submit(team=team, user=alice, upload=upload(wav)).clip
    assert clip is not None
    good_name = clip.file.name

    migration.rename_inputs(apps, None)

    missing.refresh_from_db()
    clip.refresh_from_db()
    assert missing.file.name == f"teams/{team.code}/portraits/gone.html"
    assert clip.file.name == good_name and default_storage.exists(good_name)
