"""EMO in the emulator (provider-api.md §8): emo-detect-v1 and emo-v1.

The check is the s2v check's (the studio's face detector, same image bounds)
plus the two boxes §8.1 answers with, `[x1, y1, x2, y2]` in upright image
pixels: `face_bbox`, the face found, and `ext_bbox`, the region to animate,
in the requested aspect ratio, grown around the face and clamped to the
image. §8.1's example (a 308 px face in a 769 px square, the face low in it)
sets the proportions. emo-v1 crops the image to `ext_bbox` and renders it
with the studio's local renderer at §8.2's size, as long as the audio;
`style_level` is checked and kept, not drawn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from studio.emulators import common
from studio.media.images import load_rgb, read_image_info
from studio.media.render import RenderInfo

from . import errors, media
from .errors import ApiError

DETECT = "emo-detect-v1"
MODEL = "emo-v1"
MODELS = (DETECT, MODEL)
# §8.2: the ratio (width:height) and the video it makes.
RATIOS = {"1:1": (1, 1), "3:4": (3, 4)}
SIZES = {"1:1": (512, 512), "3:4": (512, 704)}
STYLE_LEVELS = ("normal", "calm", "active")
# §8.2 "< 15 MB, < 60 s": exclusive, MB as 10^6 bytes, as for s2v (§3.1).
AUDIO_MAX_SECONDS = 60.0
AUDIO_MAX_BYTES = 15_000_000
# ext_bbox is this many face widths wide (§8.1's example: 769 / 308 ≈ 2.5),
# with this share of the height it adds over the face above it: the example
# puts 60 % above a head shot; a half body (3:4) keeps more below, for the
# shoulders and chest.
EXT_SCALE = 2.5
HEADROOM = {"1:1": 0.6, "3:4": 0.35}
# How far a given ext_bbox's height/width may stray from its ratio's: boxes
# are whole pixels, so a client that rescales them loses a little.
RATIO_TOLERANCE = 0.03

Box = tuple[int, int, int, int]  # x1, y1, x2, y2


@dataclass(frozen=True, slots=True)
class EmoInput:
    """What an emo-v1 task takes besides its URLs (§8.2)."""

    face_bbox: Box
    ext_bbox: Box
    style_level: str
    ratio: str  # read from ext_bbox's aspect: it decides the output size


# Detect (§8.1)


def ratio_parameter(parameters: Mapping[str, Any]) -> str:
    """`parameters.ratio`, "1:1" (the default) or "3:4"; 400 otherwise."""
    ratio = parameters.get("ratio", "1:1")
    if ratio not in RATIOS:
        raise ApiError(400, "InvalidParameter", errors.missing("ratio"))
    return str(ratio)


def detect(path: Path, ratio: str) -> dict[str, Any]:
    """The check's `output`: check_pass and both boxes, or code and message."""
    check = media.inspect_image(path)
    face = None if check.face_box is None else _corners(check.face_box)
    if not check.ok or face is None:
        code = check.code or "InvalidFile.NoHuman"
        return {"check_pass": False, "code": code, "message": check.message}
    info = read_image_info(path)  # inspect_image just read it: it cannot fail
    ext = extended(face, ratio, info.width, info.height)
    if ext is None:
        # The face is too big to leave room around it at this ratio.
        code = "InvalidFile.BodyProportion"
        return {
            "check_pass": False,
            "code": code,
            "message": errors.known_message(code),
        }
    return {"check_pass": True, "face_bbox": list(face), "ext_bbox": list(ext)}


def extended(face: Box, ratio: str, width: int, height: int) -> Box | None:
    """The region around `face` at `ratio`, inside a width×height image; None
    when the face does not fit in the largest such region the image holds."""
    x1, y1, x2, y2 = face
    rw, rh = RATIOS[ratio]
    # Whole units keep the ratio exact: the box is rw×unit by rh×unit.
    unit = min(EXT_SCALE * max(x2 - x1, y2 - y1) / rw, width / rw, height / rh)
    w, h = rw * math.floor(unit), rh * math.floor(unit)
    if w < x2 - x1 or h < y2 - y1:
        return None
    left = round((x1 + x2 - w) / 2)
    top = round(y1 - HEADROOM[ratio] * (h - (y2 - y1)))
    left = min(max(left, 0), width - w)
    top = min(max(top, 0), height - h)
    return left, top, left + w, top + h


def _corners(box: tuple[int, int, int, int]) -> Box:
    """The studio's (x, y, w, h) as DashScope's [x1, y1, x2, y2]."""
    x, y, w, h = box
    return x, y, x + w, y + h


# Submit (§8.2)


def task_input(parameters: Mapping[str, Any], data: Mapping[str, Any]) -> EmoInput:
    """Both boxes required, `ext_bbox` holding the face at 1:1 or 3:4, and
    `style_level` normal (the default), calm or active; 400 otherwise."""
    style = parameters.get("style_level", "normal")
    if style not in STYLE_LEVELS:
        raise ApiError(400, "InvalidParameter", errors.STYLE_LEVEL)
    face = _box(data.get("face_bbox"))
    if face is None:
        raise ApiError(400, "InvalidParameter", errors.missing("face_bbox"))
    ext = _box(data.get("ext_bbox"))
    ratio = None if ext is None else _ratio_of(ext)
    if ext is None or ratio is None or not _inside(face, ext):
        raise ApiError(400, "InvalidParameter", errors.EXT_BBOX)
    return EmoInput(face_bbox=face, ext_bbox=ext, style_level=str(style), ratio=ratio)


def _box(value: object) -> Box | None:
    if not isinstance(value, list) or len(value) != 4:
        return None
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in value):
        return None
    x1, y1, x2, y2 = value
    return (x1, y1, x2, y2) if 0 <= x1 < x2 and 0 <= y1 < y2 else None


def _ratio_of(box: Box) -> str | None:
    x1, y1, x2, y2 = box
    aspect = (y2 - y1) / (x2 - x1)
    for name, (rw, rh) in RATIOS.items():
        if abs(aspect / (rh / rw) - 1) <= RATIO_TOLERANCE:
            return name
    return None


def _inside(inner: Box, outer: Box) -> bool:
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and inner[2] <= outer[2]
        and inner[3] <= outer[3]
    )


def inspect_image(path: Path, given: EmoInput) -> media.ImageCheck:
    """The task's image: s2v's format and size bounds, and both boxes inside it.
    The face itself is not judged again: the boxes say where it is."""
    check = media.inspect_image(path, for_task=True, faces=False)
    if not check.ok:
        return check
    info = read_image_info(path)
    frame = (0, 0, info.width, info.height)
    if not _inside(given.face_bbox, frame):
        message = errors.missing("face_bbox")
    elif not _inside(given.ext_bbox, frame):
        message = errors.EXT_BBOX
    else:
        return check
    return media.ImageCheck(
        ok=False, humanoid=True, code="InvalidParameter", message=message
    )


# The result


def render(*, image: Path, audio: Path, given: EmoInput, out: Path) -> RenderInfo:
    """The image cropped to ext_bbox, talking at §8.2's size. Raises InputError."""
    x1, y1, x2, y2 = given.ext_bbox
    crop = out.with_name(out.stem + "-ext.png")
    Image.fromarray(load_rgb(image)[y1:y2, x1:x2]).save(crop)
    fx1, fy1, fx2, fy2 = given.face_bbox
    try:
        return common.render(
            portrait=crop,
            audio=audio,
            resolution="480P",  # not used: the size is fixed
            face_box=(fx1 - x1, fy1 - y1, fx2 - fx1, fy2 - fy1),
            out=out,
            size=SIZES[given.ratio],
        )
    finally:
        common.discard(crop)
