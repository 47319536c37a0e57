"""The embedded provider: OpenCV face check and a PyAV renderer, no network."""

from __future__ import annotations

import shutil
from decimal import Decimal
from typing import IO

from studio import catalog, scratch
from studio.media import images, render

from .base import (
    GenerationRequest,
    InputFile,
    Progress,
    ProviderError,
    TaskResult,
    TaskState,
    Verdict,
)


class LocalProvider:
    name = "local"
    label = "Local preview"
    remote = False

    def __init__(self) -> None:
        self.limits = catalog.offer(self.name, catalog.S2V).limits

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
