"""The embedded provider: OpenCV face check and a PyAV renderer, no network."""

from __future__ import annotations

import shutil
from decimal import Decimal
from typing import IO

from django.conf import settings

from studio import scratch
from studio.media import images, render

from .base import (
    GenerationRequest,
    InputFile,
    Progress,
    ProviderError,
    ProviderLimits,
    TaskResult,
    TaskState,
    Verdict,
)


class LocalProvider:
    name = "local"
    label = "Local preview"
    remote = False

    def __init__(self) -> None:
        self.limits = ProviderLimits(
            image_formats=frozenset({"JPEG", "PNG", "BMP", "WEBP"}),
            # DashScope's bounds (provider-api.md §2.1), so a portrait that
            # passes here is one the real service would take too.
            image_min_side=400,
            image_max_side=7000,
            audio_formats=frozenset({"wav", "mp3"}),
            audio_max_seconds=float(settings.S2V_LOCAL_MAX_AUDIO_SECONDS),
            audio_max_bytes=50_000_000,
            resolutions=("480P", "720P"),
            concurrency=int(settings.Q_CLUSTER.get("workers", 1)),
            price_per_second={"480P": Decimal("0"), "720P": Decimal("0")},
            price_per_check=Decimal("0"),
        )

    def check_portrait(self, image: InputFile, *, fresh: bool = False) -> Verdict:
        # `fresh` asks a remote provider for a new connection; nothing to renew here.
        info = images.read_image_info(image.path)
        return images.precheck_image(info, self.limits) or images.check_face(image.path)

    def start(self, request: GenerationRequest, progress: Progress) -> TaskResult:
        workdir = scratch.make_dir(f"s2v-render-{request.job_code[:8]}")
        video, poster = workdir / "video.mp4", workdir / "poster.jpg"
        try:
            info = render.render_video(
                portrait=request.portrait.path,
                audio=request.audio.path,
                resolution=request.resolution,
                face_box=request.face_box,
                out=video,
                poster=poster,
                progress=progress,
            )
        except images.InputError as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            raise ProviderError(exc.message, code=exc.code, permanent=True) from exc
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return TaskResult(
            task_id=f"local-{request.job_code}",
            state=TaskState.SUCCEEDED,
            video_path=video,
            poster_path=poster,
            billed_seconds=Decimal(str(round(info.duration, 2))),
        )

    def fetch(self, result: TaskResult, dest: IO[bytes]) -> None:
        if result.video_path is None:
            raise ProviderError("The render left no video file.", permanent=True)
        with result.video_path.open("rb") as src:
            shutil.copyfileobj(src, dest, 1024 * 1024)
