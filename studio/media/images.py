"""Portrait inspection: cheap header checks and the local face check.

`read_image_info` and `precheck_image` cost next to nothing and run before any
provider is paid. `check_face` decodes the picture and looks for exactly one
usable face with OpenCV's Haar cascades, which ship inside opencv-python, so
no model is downloaded.
"""

from __future__ import annotations

import math
import struct
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from studio.providers.base import ProviderLimits, Reason, Verdict

# Detection runs on a copy whose longer side is at most this many pixels:
# Haar cascades need ~25 px per face, and portraits have faces far bigger.
WORK_SIDE = 640
# The face crop is resized to this width before measuring sharpness, so the
# score means "sharp relative to the face", whatever the photo's resolution.
BLUR_CROP = 128
# Variance of the Laplacian on that crop, with the crop's contrast scaled to
# a standard deviation of 50 so dim or flat photos are not called blurry.
# Sharp faces score 200-400; a Gaussian blur of 1 % of the face width scores
# ~40, 2 % scores ~10. Only clearly soft faces fail.
BLUR_MIN = 20.0
BLUR_STD = 50.0
# Mean grey level (0-255) of the face. Under this the face is mostly shadow.
BRIGHTNESS_MIN = 40.0
# Face box area as a share of the picture. Haar boxes cover brow to chin,
# about half of the head, so 1.2 % is a head of roughly 5 % of the picture.
FACE_SHARE_MIN = 0.012
# A face box wider than this share of the picture leaves no room for the head.
FACE_WIDTH_MAX = 0.8
# Faces narrower than this share of the largest face are background people
# (or pictures on a wall) and are not counted as a second person.
SECONDARY_FACE_MIN = 0.4

_ACCEPTED_HINT = "Use a photo saved as JPEG or PNG."
# What Pillow raises on damaged data, besides its own UnidentifiedImageError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)


class InputError(Exception):
    """A user-supplied file cannot be used. `code` is a `Reason` value or InvalidFile.*."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str  # Pillow format name, e.g. "JPEG"
    width: int
    height: int
    size: int  # bytes


def read_image_info(path: Path) -> ImageInfo:
    """Read format and sides from the header; raise InputError if it is no image."""
    size = path.stat().st_size
    if size == 0:
        raise InputError(
            f"The image file is empty. {_ACCEPTED_HINT}", code=Reason.NOT_IMAGE
        )
    with _open(path) as im:
        # Phones save JPEGs with extra frames (MPO); the first is a plain JPEG.
        fmt = "JPEG" if im.format == "MPO" else im.format or ""
        width, height = im.size
        _check_complete(path, im)
        # EXIF rotation swaps what the viewer sees; the limits apply to that.
        if _exif_swaps_sides(im):
            width, height = height, width
    return ImageInfo(format=fmt, width=width, height=height, size=size)


def precheck_image(info: ImageInfo, limits: ProviderLimits) -> Verdict | None:
    """Return a failing Verdict for format, side, aspect or file size problems.

    None when all pass.
    """
    if info.format not in limits.image_formats:
        accepted = ", ".join(sorted(limits.image_formats))
        shown = info.format or "This"
        return _fail(
            Reason.FORMAT,
            f"{shown} images are not accepted. Save the photo as one of: {accepted}.",
        )
    low, high = limits.image_min_side, limits.image_max_side
    size = f"The image is {info.width}×{info.height} px"
    bounds = f"each side must be between {low} and {high} px"
    if max(info.width, info.height) > high:
        return _fail(Reason.TOO_LARGE, f"{size}; {bounds}. Use a smaller photo.")
    if min(info.width, info.height) < low:
        return _fail(Reason.TOO_SMALL, f"{size}; {bounds}. Use a larger photo.")
    short, long = min(info.width, info.height), max(info.width, info.height)
    aspect = limits.image_aspect_max
    if aspect is not None and short and long / short > aspect:
        wide = info.width >= info.height
        ratio = f"{long / short:.2f}:1" if wide else f"1:{long / short:.2f}"
        cut = long - math.floor(short * aspect)
        return _fail(
            Reason.ASPECT,
            f"{size} ({ratio}); it must be between 1:{aspect:g} and {aspect:g}:1. "
            f"Crop {cut} px off its {'width' if wide else 'height'}.",
        )
    top = limits.image_max_bytes
    if top is not None and info.size > top:
        over = info.size - top
        # MB as 10^6 bytes, the reading the limit uses; bytes when a tenth of
        # an MB would hide the difference.
        if over >= 100_000:
            shown = f"{info.size / 1e6:.1f} MB, {math.ceil(over / 1e5) / 10:.1f} MB"
        else:
            unit = "byte" if over == 1 else "bytes"
            shown = f"{info.size:,} bytes, {over:,} {unit}"
        return _fail(
            Reason.TOO_LARGE,
            f"The image is {shown} over the {top / 1e6:g} MB limit. "
            "Save it as a JPEG at a lower quality, or with fewer pixels.",
        )
    return None


def check_face(path: Path) -> Verdict:
    """Decode the portrait and judge its face: one, big enough, sharp and lit."""
    rgb, original_size = _decode(path, max_side=WORK_SIDE * 2)
    return _judge(rgb, original_size=original_size)


def load_rgb(path: Path, *, max_side: int | None = None) -> NDArray[np.uint8]:
    """Fully decode an image, upright (EXIF applied), as an RGB array.

    With `max_side`, JPEGs are decoded at a reduced scale (DCT scaling is far
    cheaper than decoding everything and shrinking), keeping at least
    `max_side` px on each side. Raise InputError if the file does not decode.
    """
    return _decode(path, max_side=max_side)[0]


# Opening and validating


def _open(path: Path) -> Image.Image:
    """Open the header, mapping every failure to an InputError."""
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 89 and 179 megapixels; any such picture
            # is far over every provider's limit, so refuse it before decoding.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(
            "The image has too many pixels to open safely. "
            "Use a photo of at most 7000 px on each side.",
            code=Reason.TOO_LARGE,
        ) from exc
    except (UnidentifiedImageError, *_DECODE_ERRORS) as exc:
        raise InputError(
            f"The file is not an image that can be opened. {_ACCEPTED_HINT}",
            code=Reason.NOT_IMAGE,
        ) from exc


def _check_complete(path: Path, im: Image.Image) -> None:
    """Catch truncated files without decoding the pixels."""
    truncated = False
    if im.format in ("JPEG", "MPO"):
        # A JPEG ends with the EOI marker; cameras may pad a little after it.
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - 4096))
            truncated = b"\xff\xd9" not in fh.read()
    elif im.format == "PNG":
        try:
            # Walks the chunks and their checksums; no pixel is inflated.
            with Image.open(path) as again:
                again.verify()
        except _DECODE_ERRORS:
            truncated = True
    if truncated:
        raise InputError(
            f"The image file is damaged or incomplete. {_ACCEPTED_HINT}",
            code=Reason.NOT_IMAGE,
        )


def _exif_swaps_sides(im: Image.Image) -> bool:
    try:
        orientation = im.getexif().get(0x0112, 1)
    except _DECODE_ERRORS:
        return False
    return orientation in (5, 6, 7, 8)


def _decode(
    path: Path, *, max_side: int | None
) -> tuple[NDArray[np.uint8], tuple[int, int]]:
    """The upright RGB pixels and the upright size of the file at full scale."""
    if path.stat().st_size == 0:
        raise InputError(
            f"The image file is empty. {_ACCEPTED_HINT}", code=Reason.NOT_IMAGE
        )
    with _open(path) as im:
        width, height = im.size
        if _exif_swaps_sides(im):
            width, height = height, width
        if max_side is not None and im.format in ("JPEG", "MPO"):
            im.draft("RGB", (max_side, max_side))
        try:
            im.load()
            upright = _eight_bit(ImageOps.exif_transpose(im))
            if upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info:
                # Transparent parts show as white, as a browser shows them.
                upright = upright.convert("RGBA")
                white = Image.new("RGBA", upright.size, (255, 255, 255, 255))
                upright = Image.alpha_composite(white, upright)
            rgb = upright.convert("RGB")
        except (*_DECODE_ERRORS, Image.DecompressionBombError) as exc:
            raise InputError(
                f"The image file is damaged or incomplete. {_ACCEPTED_HINT}",
                code=Reason.NOT_IMAGE,
            ) from exc
    return np.asarray(rgb, dtype=np.uint8), (width, height)


def _eight_bit(im: Image.Image) -> Image.Image:
    """Greyscale of more than 8 bits per pixel, scaled down to 0-255 ("L").

    Pillow's own conversion of 16-bit greyscale clips every value over 255,
    which turns a normal photo white. 16-bit files use 0-65535, so their top
    byte is the 8-bit value; 32-bit integer images holding values over 255
    came from 16-bit data too, and float images use 0-1 or 0-255.
    """
    if im.mode not in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return im
    pixels = np.asarray(im)
    top = float(pixels.max()) if pixels.size else 0.0
    if im.mode.startswith("I;16"):
        grey = (pixels.astype(np.uint16) >> 8).astype(np.uint8)
    elif im.mode == "I":
        wide = top > 255
        grey = (
            np.clip(pixels, 0, 65535 if wide else 255) >> (8 if wide else 0)
        ).astype(np.uint8)
    else:
        scale = 255.0 if top <= 1.0 else 1.0 if top <= 255 else 1 / 257
        grey = np.clip(np.rint(pixels * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L")


# Face detection


# One set of cascades per thread: a CascadeClassifier must not be used by two
# threads at once (it crashes the process), and web servers check in threads.
_local = threading.local()


def _cascade(name: str) -> cv2.CascadeClassifier:
    cascades: dict[str, cv2.CascadeClassifier] = _local.__dict__.setdefault(
        "cascades", {}
    )
    if name not in cascades:
        folder = cv2.data.haarcascades  # type: ignore[attr-defined]  # not in cv2's stubs
        cascade = cv2.CascadeClassifier(str(Path(folder) / name))
        if cascade.empty():  # pragma: no cover - a broken OpenCV install
            raise RuntimeError(f"OpenCV cascade {name} is missing")
        cascades[name] = cascade
    return cascades[name]


Box = tuple[int, int, int, int]


def _iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / float(aw * ah + bw * bh - inter)


def _detect(cascade: str, grey: NDArray[np.uint8], *, neighbours: int) -> list[Box]:
    min_side = max(24, min(grey.shape[:2]) // 20)
    found = _cascade(cascade).detectMultiScale(
        grey, scaleFactor=1.1, minNeighbors=neighbours, minSize=(min_side, min_side)
    )
    return [(int(x), int(y), int(w), int(h)) for x, y, w, h in found]


def _has_two_eyes(grey: NDArray[np.uint8], box: Box) -> bool:
    """Two eye detections, side by side, in the upper part of the box."""
    x, y, w, h = box
    upper = grey[y : y + int(h * 0.6), x : x + w]
    side = max(8, w // 10)
    eyes = _cascade("haarcascade_eye.xml").detectMultiScale(
        upper, scaleFactor=1.1, minNeighbors=4, minSize=(side, side)
    )
    centres = sorted(float(ex + ew / 2) for ex, _, ew, _ in eyes)
    return len(centres) >= 2 and centres[-1] - centres[0] > w * 0.25


def find_faces(grey: NDArray[np.uint8]) -> list[Box]:
    """Faces in a greyscale image, largest first.

    A single cascade fires on coins, cells and fabric now and then; the two
    frontal cascades rarely fire on the same wrong spot. So a face counts when
    both cascades agree, or when one finds it and two eyes sit inside it.
    """
    primary = _detect("haarcascade_frontalface_default.xml", grey, neighbours=5)
    second = _detect("haarcascade_frontalface_alt2.xml", grey, neighbours=3)
    faces: list[Box] = []
    for box in primary + second:
        if any(_iou(box, kept) > 0.3 for kept in faces):
            continue
        others = second if box in primary else primary
        if any(_iou(box, other) > 0.4 for other in others) or _has_two_eyes(grey, box):
            faces.append(box)
    faces.sort(key=lambda b: b[2] * b[3], reverse=True)
    if faces:
        biggest = faces[0][2]
        faces = [b for b in faces if b[2] >= biggest * SECONDARY_FACE_MIN]
    return faces


def _find_profile(grey: NDArray[np.uint8]) -> bool:
    """A face seen from the side (the cascade only knows one side, so flip too)."""
    for img in (grey, cv2.flip(grey, 1)):
        min_side = max(24, min(img.shape[:2]) // 12)
        found = _cascade("haarcascade_profileface.xml").detectMultiScale(
            img, scaleFactor=1.2, minNeighbors=6, minSize=(min_side, min_side)
        )
        if len(found):
            return True
    return False


def _judge(rgb: NDArray[np.uint8], *, original_size: tuple[int, int]) -> Verdict:
    height, width = rgb.shape[:2]
    grey_full = _u8(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    scale = min(1.0, WORK_SIDE / max(width, height))
    grey = (
        _u8(
            cv2.resize(
                grey_full, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA
            )
        )
        if scale < 1.0
        else grey_full
    )
    image_brightness = float(grey.mean())
    # Haar features are contrast-normalised, so the plain image usually works
    # best (equalising a big flat background crushes a small face); dark or
    # flat photos need the equalised one.
    equalised = _u8(cv2.equalizeHist(grey))
    faces = find_faces(grey) or find_faces(equalised)
    details: dict[str, float] = {
        "faces": float(len(faces)),
        "brightness": round(image_brightness, 1),
    }

    if not faces:
        if image_brightness < BRIGHTNESS_MIN:
            return _fail(
                Reason.TOO_DARK,
                "The photo is too dark to find a face. "
                "Use a brighter photo, taken in good light.",
                details=details,
            )
        if _find_profile(equalised):
            return _fail(
                Reason.FACE_POSE,
                "The face is turned to the side. "
                "Use a photo where the person looks straight at the camera.",
                humanoid=True,
                details=details,
            )
        return _fail(
            Reason.NO_FACE,
            "No face found. Use a photo of one person facing the camera, "
            "with the whole face visible.",
            details=details,
        )
    if len(faces) > 1:
        return _fail(
            Reason.MULTIPLE_FACES,
            f"Found {len(faces)} faces. Use a photo with only one person in it.",
            humanoid=True,
            details=details,
        )

    # Map the box back to full-resolution (upright) pixels.
    wx, wy, ww, wh = faces[0]
    to_full = 1.0 / scale
    box_full = _scale_box(faces[0], to_full, width, height)
    ox, oy = original_size[0] / width, original_size[1] / height
    face_box = (
        round(box_full[0] * ox),
        round(box_full[1] * oy),
        round(box_full[2] * ox),
        round(box_full[3] * oy),
    )
    share = (ww * wh) / float(grey.shape[0] * grey.shape[1])
    brightness = float(grey[wy : wy + wh, wx : wx + ww].mean())
    blur = _sharpness(grey_full, box_full)
    details.update(
        brightness=round(brightness, 1),
        blur=round(blur, 1),
        face_share=round(share, 4),
    )

    def fail(reason: Reason, message: str) -> Verdict:
        return _fail(reason, message, humanoid=True, face_box=face_box, details=details)

    if share < FACE_SHARE_MIN:
        return fail(
            Reason.FACE_TOO_SMALL,
            f"The face covers only {share:.1%} of the picture. "
            "Crop the photo closer, to the head and shoulders.",
        )
    if ww > FACE_WIDTH_MAX * grey.shape[1]:
        return fail(
            Reason.FACE_TOO_SMALL,
            "The face fills almost the whole picture. "
            "Use a photo that shows the whole head with some space around it.",
        )
    if brightness < BRIGHTNESS_MIN:
        return fail(
            Reason.TOO_DARK,
            "The face is too dark. Use a brighter photo, taken in good light.",
        )
    if blur < BLUR_MIN:
        return fail(
            Reason.BLURRY,
            "The face is blurry. Use a sharp, in-focus photo.",
        )
    return Verdict(check_pass=True, humanoid=True, face_box=face_box, details=details)


def _scale_box(box: Box, factor: float, width: int, height: int) -> Box:
    x, y, w, h = (round(v * factor) for v in box)
    x, y = max(0, x), max(0, y)
    return x, y, min(w, width - x), min(h, height - y)


def _sharpness(grey: NDArray[np.uint8], box: Box) -> float:
    """Contrast-normalised variance of the Laplacian over the face and a margin."""
    x, y, w, h = box
    mx, my = w // 8, h // 8
    crop = grey[max(0, y - my) : y + h + my, max(0, x - mx) : x + w + mx]
    crop_h = max(1, round(crop.shape[0] * BLUR_CROP / crop.shape[1]))
    interp = cv2.INTER_AREA if crop.shape[1] > BLUR_CROP else cv2.INTER_CUBIC
    crop = _u8(cv2.resize(crop, (BLUR_CROP, crop_h), interpolation=interp))
    spread = max(float(crop.std()), 1.0)
    return float(cv2.Laplacian(crop, cv2.CV_64F).var()) * (BLUR_STD / spread) ** 2


def _u8(array: object) -> NDArray[np.uint8]:
    """OpenCV's stubs type every result loosely; this pins the 8-bit images."""
    return np.asarray(array, dtype=np.uint8)


def _fail(
    reason: Reason,
    message: str,
    *,
    humanoid: bool = False,
    face_box: Box | None = None,
    details: dict[str, float] | None = None,
) -> Verdict:
    return Verdict(
        check_pass=False,
        humanoid=humanoid,
        reason=reason,
        message=message,
        face_box=face_box,
        details=details or {},
    )
