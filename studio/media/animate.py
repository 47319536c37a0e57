"""The local animate preview: a portrait moved by a reference video's global motion.

No neural model. The reference's camera-and-body motion is reduced to one
similarity transform per frame (shift, turn, zoom), measured between
consecutive downscaled grey frames, summed into a trajectory and lightly
smoothed. "move" moves the whole portrait along it; "mix" pastes the
portrait's face region into the reference video and moves that. A "Preview"
label in a corner says it is not the model's output. Frames are read, drawn
and encoded one at a time, so memory does not grow with the video's length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import av.container
import cv2
import numpy as np
from numpy.typing import NDArray

from studio.providers.base import RESOLUTION_AREAS

from .audio import OPEN_ERROR, whole_file
from .images import InputError, check_face, load_rgb, read_image_info
from .render import RenderInfo, encode_mp4
from .video import probe_clip

Mode = Literal["move", "mix"]
Tier = Literal["standard", "professional"]
Image = NDArray[np.uint8]

# Output limits per tier: the s2v tiers' pixel areas, and a frame-rate cap.
_TIER_AREA: dict[str, int] = {
    "standard": RESOLUTION_AREAS["480P"],
    "professional": RESOLUTION_AREAS["720P"],
}
_TIER_FPS: dict[str, int] = {"standard": 15, "professional": 30}
_MOTION_WIDTH = 160  # px: motion is measured on frames this wide
_SMOOTHING = 0.5  # weight of the newest trajectory point (1 = no smoothing)
# How far the picture may wander, so a long pan does not carry the portrait
# off screen: shifts approach these limits softly (tanh), never cross them.
_MAX_SHIFT = 0.3  # of the frame's side
_MAX_TURN = 30.0  # degrees
_MAX_ZOOM = 0.4  # natural log: x1.5 either way
_MOVE_ZOOM = 1.1  # the portrait is drawn a little larger, so edges show less
_MIX_HEIGHT = 0.45  # the pasted face region's height, as a share of the frame


@dataclass(frozen=True, slots=True)
class Pose:
    """Where the content has gone since the first frame, in shares of the frame."""

    dx: float = 0.0
    dy: float = 0.0
    angle: float = 0.0  # degrees, counter-clockwise on screen
    log_scale: float = 0.0


def animate_size(width: int, height: int, tier: Tier) -> tuple[int, int]:
    """The reference's aspect at no more than the tier's pixel area; even sides."""
    scale = min(1.0, math.sqrt(_TIER_AREA[tier] / (width * height)))
    return max(2, 2 * int(width * scale / 2)), max(2, 2 * int(height * scale / 2))


def animate_fps(reference_fps: float, tier: Tier) -> Fraction:
    """The reference's frame rate, capped by the tier (29.97 stays 30000/1001)."""
    rate = Fraction(reference_fps).limit_denominator(1001)
    # probe_clip rounds to 3 decimals; NTSC rates are whole rates x 1000/1001.
    ntsc = Fraction(round(reference_fps * 1.001) * 1000, 1001)
    if ntsc.denominator == 1001 and abs(float(ntsc) - reference_fps) < 0.0006:
        rate = ntsc
    return max(Fraction(1), min(rate, Fraction(_TIER_FPS[tier])))


def render_animate(
    portrait: Path,
    reference: Path,
    out: Path,
    *,
    mode: Mode,
    tier: Tier,
    progress: Callable[[float], None] | None = None,
    face_box: tuple[int, int, int, int] | None = None,
) -> RenderInfo:
    """Render the preview MP4 (H.264, plus AAC when the reference has sound).

    It lasts as long as the reference, at its frame rate and aspect within
    the tier's limits. `face_box` is in the portrait's upright pixels (None:
    detect it here). Raise InputError when either input cannot be read;
    whatever `progress` raises stops the render and leaves no file at `out`.
    """
    if mode not in ("move", "mix") or tier not in _TIER_AREA:
        raise ValueError(f"Unknown animate mode {mode!r} or tier {tier!r}")
    clip = probe_clip(reference)
    width, height = animate_size(clip.width, clip.height, tier)
    fps = animate_fps(clip.fps, tier)
    count = max(1, round(clip.duration * fps))
    rgb = load_rgb(portrait, max_side=2 * max(width, height))
    if face_box is None:
        face_box = check_face(portrait).face_box
    box = _scaled_box(face_box, rgb, portrait)
    painter: _Painter = (
        _Mover(rgb, box, width, height)
        if mode == "move"
        else _Mixer(rgb, box, width, height)
    )
    label = _Label(width, height)

    def frames() -> Iterator[Image]:
        motion = _Motion()
        for background in _reference_frames(reference, count, fps, width, height):
            pose = motion.track(background)
            yield label.stamp(painter.paint(pose, background))

    with whole_file(out) as partial:
        encode_mp4(
            partial,
            audio=reference if clip.has_audio else None,
            frames=frames(),
            count=count,
            width=width,
            height=height,
            fps=fps,
            progress=progress,
        )
    if progress is not None:
        progress(1.0)
    return RenderInfo(
        duration=float(count / fps),
        width=width,
        height=height,
        frames=count,
        fps=float(fps),
    )


# The reference


def _reference_frames(
    path: Path, count: int, fps: Fraction, width: int, height: int
) -> Iterator[Image]:
    """Exactly `count` upright RGB frames at `fps`: reference frames picked by time.

    Frames between two output times are skipped before conversion; when the
    reference runs out early, its last frame is repeated.
    """
    try:
        with av.open(str(path), "r", metadata_errors="ignore") as container:
            decoded = _timed(container)
            current = next(decoded, None)
            if current is None:
                raise InputError(
                    "The reference video has no pictures.", code=OPEN_ERROR
                )
            pending = next(decoded, None)
            start = current[0]
            for index in range(count):
                # Half an output frame of slack: a 29.97 fps frame at 0.0334 s
                # is the one to show at 1/30 s.
                due = start + float(index / fps) + 0.5 / float(fps)
                while pending is not None and pending[0] <= due:
                    current, pending = pending, next(decoded, None)
                yield _upright(current[1], width, height)
    except av.FFmpegError as exc:
        raise InputError(
            "The reference video is damaged and cannot be decoded.", code=OPEN_ERROR
        ) from exc


def _timed(
    container: av.container.InputContainer,
) -> Iterator[tuple[float, av.VideoFrame]]:
    stream = container.streams.video[0]
    last = -math.inf
    for frame in container.decode(stream):
        at = frame.time if frame.time is not None else last + 1e-3
        if at > last:  # out-of-order or repeated times would only confuse picking
            last = at
            yield at, frame


def _upright(frame: av.VideoFrame, width: int, height: int) -> Image:
    turns = round(frame.rotation) % 360 // 90  # counter-clockwise, as players show it
    # Scale the stored picture so that it is width x height once turned.
    w, h = (height, width) if turns % 2 else (width, height)
    rgb = frame.to_ndarray(format="rgb24", width=w, height=h)
    if turns:
        rgb = np.rot90(rgb, k=turns)
    return np.ascontiguousarray(rgb, dtype=np.uint8)


class _Motion:
    """Global motion between consecutive frames, summed and smoothed into a Pose."""

    def __init__(self) -> None:
        self.previous: Image | None = None
        self.raw = [0.0, 0.0, 0.0, 0.0]  # dx, dy, angle, log scale (summed)
        self.smooth = [0.0, 0.0, 0.0, 0.0]

    def track(self, rgb: Image) -> Pose:
        height, width = rgb.shape[:2]
        small_h = max(8, round(height * _MOTION_WIDTH / width))
        small = cv2.resize(rgb, (_MOTION_WIDTH, small_h), interpolation=cv2.INTER_AREA)
        grey = np.asarray(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
        if self.previous is not None:
            dx, dy, angle, log_scale = _step(self.previous, grey)
            # Shifts as shares of the frame's width (and height), so they apply
            # to a portrait of any size.
            for i, delta in enumerate(
                (dx / _MOTION_WIDTH, dy / small_h, angle, log_scale)
            ):
                self.raw[i] += delta
        self.previous = grey
        for i, value in enumerate(self.raw):
            self.smooth[i] += _SMOOTHING * (value - self.smooth[i])
        dx, dy, angle, log_scale = self.smooth
        return Pose(
            dx=_soft_limit(dx, _MAX_SHIFT),
            dy=_soft_limit(dy, _MAX_SHIFT),
            angle=_soft_limit(angle, _MAX_TURN),
            log_scale=_soft_limit(log_scale, _MAX_ZOOM),
        )


def _step(
    previous: NDArray[np.uint8], grey: NDArray[np.uint8]
) -> tuple[float, float, float, float]:
    """(dx px, dy px, degrees, log scale) that carry `previous`'s content to `grey`.

    Tracked corners give turns and zooms too; with too few corners (flat or
    blurred pictures), phase correlation still gives the shift.
    """
    height, width = previous.shape[:2]
    corners = cv2.goodFeaturesToTrack(
        previous, maxCorners=200, qualityLevel=0.01, minDistance=6
    )
    if corners is not None and len(corners) >= 8:
        moved, status, _ = cv2.calcOpticalFlowPyrLK(
            previous, grey, corners, np.empty(0, dtype=np.float32)
        )
        found = status.reshape(-1) == 1
        if int(found.sum()) >= 8:
            matrix, _ = cv2.estimateAffinePartial2D(
                corners[found], moved[found], method=cv2.RANSAC
            )
            if matrix is not None:
                a, b = float(matrix[0, 0]), float(matrix[1, 0])
                scale = math.hypot(a, b)
                # Image y points down, so a positive b is a clockwise turn.
                angle = -math.degrees(math.atan2(b, a))
                log_scale = math.log(scale) if scale > 0 else 0.0
                # Restate the shift for a turn and zoom about the frame's centre
                # (x -> A(x - c) + c + t'), which is where they are applied.
                cx, cy = width / 2, height / 2
                dx = float(matrix[0, 2]) + a * cx - b * cy - cx
                dy = float(matrix[1, 2]) + b * cx + a * cy - cy
                return dx, dy, angle, log_scale
    (dx, dy), response = cv2.phaseCorrelate(
        previous.astype(np.float32), grey.astype(np.float32)
    )
    if response < 0.05:  # no shift stands out: call it still
        return 0.0, 0.0, 0.0, 0.0
    return float(dx), float(dy), 0.0, 0.0


def _soft_limit(value: float, limit: float) -> float:
    return limit * math.tanh(value / limit)


# The portrait


def _scaled_box(
    face_box: tuple[int, int, int, int] | None, rgb: Image, portrait: Path
) -> tuple[int, int, int, int] | None:
    """The face box in `rgb`'s pixels (load_rgb may have decoded it smaller)."""
    if face_box is None:
        return None
    info = read_image_info(portrait)
    sx, sy = rgb.shape[1] / info.width, rgb.shape[0] / info.height
    x, y, w, h = face_box
    return round(x * sx), round(y * sy), max(4, round(w * sx)), max(4, round(h * sy))


def _pose_matrix(
    pose: Pose, centre: tuple[float, float], width: int, height: int, zoom: float
) -> NDArray[np.float64]:
    """Turn and zoom about `centre`, then shift: the pose on a width x height frame."""
    matrix = cv2.getRotationMatrix2D(
        centre, pose.angle, zoom * math.exp(pose.log_scale)
    )
    matrix[0, 2] += pose.dx * width
    matrix[1, 2] += pose.dy * height
    return np.asarray(matrix, dtype=np.float64)


class _Painter:
    def paint(self, pose: Pose, background: Image) -> Image:
        raise NotImplementedError


class _Mover(_Painter):
    """The whole portrait, cropped to the frame's aspect around the face, moved."""

    def __init__(
        self, rgb: Image, box: tuple[int, int, int, int] | None, width: int, height: int
    ) -> None:
        self.size = (width, height)
        self.base = _cover(rgb, box, width, height)
        if box is None:
            self.centre = (width / 2.0, height / 2.0)
        else:
            self.centre = self._face_centre(rgb, box, width, height)

    @staticmethod
    def _face_centre(
        rgb: Image, box: tuple[int, int, int, int], width: int, height: int
    ) -> tuple[float, float]:
        left, top, scale = _cover_window(rgb, box, width, height)
        x, y, w, h = box
        return ((x + w / 2 - left) * scale, (y + h / 2 - top) * scale)

    def paint(self, pose: Pose, background: Image) -> Image:
        width, height = self.size
        matrix = _pose_matrix(pose, self.centre, width, height, _MOVE_ZOOM)
        moved = cv2.warpAffine(
            self.base,
            matrix,
            self.size,
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
        return np.asarray(moved, dtype=np.uint8)


class _Mixer(_Painter):
    """The portrait's face region, feathered, pasted into the reference and moved."""

    def __init__(
        self, rgb: Image, box: tuple[int, int, int, int] | None, width: int, height: int
    ) -> None:
        self.size = (width, height)
        # Head and shoulders around the face box, else the centre of the photo.
        ph, pw = rgb.shape[:2]
        if box is None:
            side = min(pw, ph) * 0.7
            cx, cy = pw / 2, ph / 2
            region_w, region_h = side, side
        else:
            x, y, w, h = box
            cx, cy = x + w / 2, y + h * 0.6
            region_w, region_h = w * 1.8, h * 2.2
        x0, x1 = max(0, round(cx - region_w / 2)), min(pw, round(cx + region_w / 2))
        y0, y1 = max(0, round(cy - region_h / 2)), min(ph, round(cy + region_h / 2))
        patch = rgb[y0:y1, x0:x1]
        scale = _MIX_HEIGHT * height / max(1, patch.shape[0])
        patch_w = max(2, round(patch.shape[1] * scale))
        patch_h = max(2, round(patch.shape[0] * scale))
        sprite = cv2.resize(patch, (patch_w, patch_h), interpolation=cv2.INTER_AREA)
        alpha = np.zeros((patch_h, patch_w), dtype=np.float32)
        cv2.ellipse(
            alpha,
            (patch_w // 2, patch_h // 2),
            (max(1, patch_w // 2 - 2), max(1, patch_h // 2 - 2)),
            0,
            0,
            360,
            1.0,
            thickness=-1,
        )
        feather = max(3, (min(patch_w, patch_h) // 12) | 1)
        alpha = cv2.GaussianBlur(alpha, (feather, feather), 0)
        # Laid out once on a frame-sized canvas, centred; each frame only warps it.
        self.canvas = np.zeros((height, width, 3), dtype=np.uint8)
        self.mask = np.zeros((height, width), dtype=np.float32)
        left = min(max(0, (width - patch_w) // 2), max(0, width - patch_w))
        top = min(max(0, (height - patch_h) // 2), max(0, height - patch_h))
        fit_w, fit_h = min(patch_w, width), min(patch_h, height)
        self.canvas[top : top + fit_h, left : left + fit_w] = sprite[:fit_h, :fit_w]
        self.mask[top : top + fit_h, left : left + fit_w] = alpha[:fit_h, :fit_w]
        self.centre = (left + fit_w / 2.0, top + fit_h / 2.0)
        right, bottom = left + fit_w, top + fit_h
        self.corners = np.array(
            [[left, top, 1], [right, top, 1], [left, bottom, 1], [right, bottom, 1]],
            dtype=np.float64,
        )

    def paint(self, pose: Pose, background: Image) -> Image:
        width, height = self.size
        matrix = _pose_matrix(pose, self.centre, width, height, 1.0)
        # Warp and blend only the box the moved face covers: at 720p the
        # whole-frame float blend took as long as everything else together.
        placed = self.corners @ matrix.T
        x0, y0 = np.floor(placed.min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(placed.max(axis=0)).astype(int) + 1
        x0, y0 = max(0, int(x0)), max(0, int(y0))
        x1, y1 = min(width, int(x1)), min(height, int(y1))
        if x1 <= x0 or y1 <= y0:
            return background
        matrix[:, 2] -= (x0, y0)
        box = (x1 - x0, y1 - y0)
        fg = cv2.warpAffine(self.canvas, matrix, box, flags=cv2.INTER_LINEAR)
        mask = cv2.warpAffine(self.mask, matrix, box, flags=cv2.INTER_LINEAR)
        alpha = mask[..., np.newaxis]
        region = background[y0:y1, x0:x1]
        mixed = background.copy()
        mixed[y0:y1, x0:x1] = region * (1.0 - alpha) + fg * alpha
        return mixed


def _cover_window(
    rgb: Image, box: tuple[int, int, int, int] | None, width: int, height: int
) -> tuple[float, float, float]:
    """Left, top (source px) and scale of the crop that fills width x height."""
    ph, pw = rgb.shape[:2]
    scale = max(width / pw, height / ph)
    crop_w, crop_h = width / scale, height / scale
    if box is None:
        cx, cy = pw / 2, ph / 2
    else:
        x, y, w, h = box
        cx, cy = x + w / 2, y + h / 2
    left = min(max(0.0, cx - crop_w / 2), pw - crop_w)
    top = min(max(0.0, cy - crop_h / 2), ph - crop_h)
    return left, top, scale


def _cover(
    rgb: Image, box: tuple[int, int, int, int] | None, width: int, height: int
) -> Image:
    """The portrait scaled to fill width x height, cropped to keep the face in."""
    left, top, scale = _cover_window(rgb, box, width, height)
    matrix = np.array([[scale, 0.0, -left * scale], [0.0, scale, -top * scale]])
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    filled = cv2.warpAffine(
        rgb, matrix, (width, height), flags=interp, borderMode=cv2.BORDER_REFLECT
    )
    return np.asarray(filled, dtype=np.uint8)


# The label


class _Label:
    """A small "Preview" tag, bottom right, drawn once and blended into each frame."""

    TEXT = "Preview"

    def __init__(self, width: int, height: int) -> None:
        font = cv2.FONT_HERSHEY_SIMPLEX
        size = max(0.35, min(width, height) / 720)
        thickness = max(1, round(size * 2))
        (text_w, text_h), baseline = cv2.getTextSize(self.TEXT, font, size, thickness)
        pad = max(3, text_h // 3)
        tag_w = min(width, text_w + 2 * pad)
        tag_h = min(height, text_h + baseline + 2 * pad)
        margin = max(2, min(width, height) // 60)
        self.x0 = max(0, width - tag_w - margin)
        self.y0 = max(0, height - tag_h - margin)
        tag = np.full((tag_h, tag_w, 3), 20, dtype=np.uint8)
        cv2.putText(
            tag,
            self.TEXT,
            (pad, pad + text_h),
            font,
            size,
            (255, 255, 255),
            thickness,
            cv2.LINE_AA,
        )
        # Dark backing at 70 %, white letters fully opaque: legible on any video.
        letters = tag.max(axis=2, keepdims=True).astype(np.float32) / 255.0
        self.alpha = np.maximum(0.7, letters)
        self.tag = tag.astype(np.float32)

    def stamp(self, frame: Image) -> Image:
        h, w = self.tag.shape[:2]
        region = frame[self.y0 : self.y0 + h, self.x0 : self.x0 + w]
        blended = region * (1.0 - self.alpha) + self.tag * self.alpha
        frame = frame if frame.flags.writeable else frame.copy()
        frame[self.y0 : self.y0 + h, self.x0 : self.x0 + w] = blended.astype(np.uint8)
        return frame
