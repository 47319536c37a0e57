from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from studio.media.images import (
    ImageInfo,
    InputError,
    check_face,
    load_rgb,
    precheck_image,
    read_image_info,
)
from studio.providers.base import ProviderLimits, Reason
from studio.providers.dashscope.catalog import animate_video_limits, s2v_offer
from tests.media_factories import (
    ASTRONAUT,
    ASTRONAUT_FACE,
    NO_FACE,
    make_bomb_png,
    make_deep_grey,
    make_empty_file,
    make_group,
    make_image,
    make_large_canvas,
    make_portrait,
    make_small_face,
    make_text_file,
    make_truncated,
    make_twelve_megapixel_jpeg,
)

LIMITS = ProviderLimits(
    image_formats=frozenset({"JPEG", "PNG", "BMP", "WEBP"}),
    image_min_side=400,
    image_max_side=7000,
    audio_formats=frozenset({"wav", "mp3"}),
    audio_max_seconds=20.0,
    audio_max_bytes=15 * 1024 * 1024,
    resolutions=("480P", "720P"),
    concurrency=1,
    price_per_second={"480P": Decimal("0")},
)


def assert_on_astronaut_face(box: tuple[int, int, int, int] | None) -> None:
    assert box is not None
    x, y, w, h = box
    fx, fy, fw, fh = ASTRONAUT_FACE
    assert fx <= x + w / 2 <= fx + fw
    assert fy <= y + h / 2 <= fy + fh
    assert 0.5 * fw <= w <= 1.2 * fw


def test_read_image_info_gives_format_and_size():
    assert read_image_info(ASTRONAUT) == ImageInfo(
        format="PNG", width=512, height=512, size=ASTRONAUT.stat().st_size
    )
    assert read_image_info(NO_FACE) == ImageInfo(
        format="JPEG", width=640, height=427, size=NO_FACE.stat().st_size
    )


def test_astronaut_passes_with_a_box_around_her_face():
    verdict = check_face(ASTRONAUT)

    assert verdict.check_pass and verdict.humanoid
    assert verdict.reason is None
    assert_on_astronaut_face(verdict.face_box)
    assert verdict.details["faces"] == 1
    assert {"blur", "brightness", "face_share"} <= verdict.details.keys()


def test_photo_without_people_fails_with_no_face():
    verdict = check_face(NO_FACE)

    assert not verdict.check_pass
    assert not verdict.humanoid
    assert verdict.reason is Reason.NO_FACE
    assert verdict.message.startswith("No face found.")


def test_plain_picture_fails_with_no_face(tmp_path: Path):
    verdict = check_face(make_image(tmp_path / "plain.jpg", size=(800, 600)))

    assert verdict.reason is Reason.NO_FACE


def test_small_image_fails_precheck_as_too_small(tmp_path: Path):
    info = read_image_info(make_portrait(tmp_path / "small.jpg", size=(300, 300)))
    verdict = precheck_image(info, LIMITS)

    assert verdict is not None and not verdict.check_pass
    assert verdict.reason is Reason.TOO_SMALL
    assert verdict.message == (
        "The image is 300×300 px; each side must be between 400 and 7000 px. "
        "Use a larger photo."
    )


def test_image_over_7000_px_fails_precheck_as_too_large(tmp_path: Path):
    info = read_image_info(make_large_canvas(tmp_path / "wide.png", size=(7001, 10)))
    verdict = precheck_image(info, LIMITS)

    assert info.width == 7001
    assert verdict is not None and verdict.reason is Reason.TOO_LARGE
    assert "7001×10 px" in verdict.message


@pytest.mark.parametrize("fmt", ["GIF", "TIFF"])
def test_unsupported_format_fails_precheck_naming_the_accepted_ones(
    tmp_path: Path, fmt: str
):
    info = read_image_info(make_image(tmp_path / "pic", size=(600, 600), fmt=fmt))
    verdict = precheck_image(info, LIMITS)

    assert info.format == fmt
    assert verdict is not None and verdict.reason is Reason.FORMAT
    assert "BMP, JPEG, PNG, WEBP" in verdict.message


def test_good_image_passes_precheck():
    assert precheck_image(read_image_info(ASTRONAUT), LIMITS) is None


# DashScope's animate character image (provider-api.md §7.1): 1:3 to 3:1, <= 5 MB.
ANIMATE = animate_video_limits()


@pytest.mark.parametrize("sides", [(3000, 1000), (1000, 3000)])
def test_animate_image_at_exactly_3_to_1_passes_precheck(sides: tuple[int, int]):
    info = ImageInfo(format="JPEG", width=sides[0], height=sides[1], size=1_000_000)

    assert precheck_image(info, ANIMATE) is None


@pytest.mark.parametrize(
    ("sides", "message"),
    [
        (
            (3001, 1000),
            "The image is 3001×1000 px (3.00:1); it must be between 1:3 and 3:1. "
            "Crop 1 px off its width.",
        ),
        (
            (1000, 4000),
            "The image is 1000×4000 px (1:4.00); it must be between 1:3 and 3:1. "
            "Crop 1000 px off its height.",
        ),
    ],
)
def test_animate_image_beyond_3_to_1_fails_saying_how_much_to_crop(
    sides: tuple[int, int], message: str
):
    info = ImageInfo(format="JPEG", width=sides[0], height=sides[1], size=1_000_000)
    verdict = precheck_image(info, ANIMATE)

    assert verdict is not None and verdict.reason is Reason.ASPECT
    assert verdict.message == message


def test_animate_image_of_exactly_5_mb_passes_precheck():
    info = ImageInfo(format="JPEG", width=1000, height=1000, size=5_000_000)

    assert precheck_image(info, ANIMATE) is None


def test_animate_image_one_byte_over_5_mb_fails_in_bytes():
    info = ImageInfo(format="JPEG", width=1000, height=1000, size=5_000_001)
    verdict = precheck_image(info, ANIMATE)

    assert verdict is not None and verdict.reason is Reason.TOO_LARGE
    assert verdict.message == (
        "The image is 5,000,001 bytes, 1 byte over the 5 MB limit. "
        "Save it as a JPEG at a lower quality, or with fewer pixels."
    )


def test_animate_image_of_6_2_mb_fails_saying_how_much_over(tmp_path: Path):
    path = make_image(tmp_path / "big.png", size=(1000, 1000), fmt="PNG")
    with path.open("ab") as fh:  # after IEND: Pillow still reads the header
        fh.truncate(6_200_000)
    verdict = precheck_image(read_image_info(path), ANIMATE)

    assert verdict is not None and verdict.reason is Reason.TOO_LARGE
    assert verdict.message == (
        "The image is 6.2 MB, 1.2 MB over the 5 MB limit. "
        "Save it as a JPEG at a lower quality, or with fewer pixels."
    )


def test_s2v_offer_still_takes_a_4_to_1_image_of_6_mb():
    info = ImageInfo(format="JPEG", width=4000, height=1000, size=6_000_000)

    assert precheck_image(info, s2v_offer(concurrency=1).limits) is None


def test_transparent_png_portrait_passes(tmp_path: Path):
    path = make_portrait(tmp_path / "cut-out.png", fmt="PNG", transparent_corners=True)

    assert check_face(path).check_pass


@pytest.mark.parametrize(
    "make",
    [
        lambda d: make_text_file(d / "photo.jpg"),
        lambda d: make_empty_file(d / "photo.jpg"),
        lambda d: make_truncated(
            d / "cut.jpg", make_portrait(d / "full.jpg"), keep=0.6
        ),
        lambda d: make_truncated(d / "cut.png", ASTRONAUT, keep=0.6),
    ],
    ids=["text-named-jpg", "empty", "truncated-jpeg", "truncated-png"],
)
def test_unreadable_files_raise_not_image(tmp_path: Path, make):
    path = make(tmp_path)

    with pytest.raises(InputError) as header:
        read_image_info(path)
    with pytest.raises(InputError) as decode:
        check_face(path)

    assert header.value.code == decode.value.code == Reason.NOT_IMAGE
    assert header.value.message


@pytest.mark.parametrize("side", [10_000, 30_000], ids=["warning", "error"])
def test_decompression_bomb_raises_input_error(tmp_path: Path, side: int):
    # 100 megapixels only makes Pillow warn; 900 makes it refuse.
    bomb = make_bomb_png(tmp_path / "bomb.png", side=side)

    with pytest.raises(InputError) as header:
        read_image_info(bomb)
    with pytest.raises(InputError):
        check_face(bomb)

    assert "too many pixels" in header.value.message


def test_two_people_fail_with_multiple_faces(tmp_path: Path):
    verdict = check_face(make_group(tmp_path / "pair.jpg", people=2))

    assert not verdict.check_pass and verdict.humanoid
    assert verdict.reason is Reason.MULTIPLE_FACES
    assert verdict.details["faces"] == 2


def test_three_people_fail_with_multiple_faces(tmp_path: Path):
    verdict = check_face(make_group(tmp_path / "three.jpg", people=3))

    assert verdict.reason is Reason.MULTIPLE_FACES
    assert verdict.details["faces"] == 3


def test_heavily_blurred_portrait_fails_as_blurry(tmp_path: Path):
    verdict = check_face(make_portrait(tmp_path / "soft.jpg", blur=4))

    assert not verdict.check_pass and verdict.humanoid
    assert verdict.reason is Reason.BLURRY
    assert verdict.face_box is not None


def test_slightly_soft_portrait_still_passes(tmp_path: Path):
    assert check_face(make_portrait(tmp_path / "soft.jpg", blur=0.8)).check_pass


def test_very_dark_portrait_fails_as_too_dark(tmp_path: Path):
    verdict = check_face(make_portrait(tmp_path / "dark.jpg", brightness=0.15))

    assert not verdict.check_pass
    assert verdict.reason is Reason.TOO_DARK
    assert verdict.details["brightness"] < 40


def test_dim_portrait_still_passes(tmp_path: Path):
    assert check_face(make_portrait(tmp_path / "dim.jpg", brightness=0.5)).check_pass


def test_black_picture_fails_as_too_dark(tmp_path: Path):
    verdict = check_face(make_image(tmp_path / "black.png", fmt="PNG", color=(5, 5, 5)))

    assert verdict.reason is Reason.TOO_DARK
    assert not verdict.humanoid


def test_small_face_in_a_big_picture_fails_as_too_small(tmp_path: Path):
    verdict = check_face(make_small_face(tmp_path / "far.jpg"))

    assert not verdict.check_pass and verdict.humanoid
    assert verdict.reason is Reason.FACE_TOO_SMALL
    assert verdict.details["face_share"] < 0.012


def test_exif_rotated_portrait_passes_with_box_in_upright_pixels(tmp_path: Path):
    # Stored 440×512 on its side; upright it is 512×440 with the face on top.
    path = make_portrait(
        tmp_path / "turned.jpg", crop=(0, 0, 512, 440), exif_orientation=6
    )

    verdict = check_face(path)

    assert read_image_info(path) == ImageInfo(
        format="JPEG", width=512, height=440, size=path.stat().st_size
    )
    assert verdict.check_pass
    assert_on_astronaut_face(verdict.face_box)


def test_face_box_is_in_original_pixels_for_large_jpeg(tmp_path: Path):
    # The JPEG is decoded at a reduced scale; the box must be scaled back.
    path = make_portrait(tmp_path / "big.jpg", size=(2048, 2048))

    verdict = check_face(path)

    assert verdict.check_pass
    x, y, w, h = verdict.face_box or (0, 0, 0, 0)
    assert_on_astronaut_face((x // 4, y // 4, w // 4, h // 4))


def test_face_check_of_a_12_megapixel_jpeg_is_fast(tmp_path: Path):
    path = make_twelve_megapixel_jpeg(tmp_path / "12mp.jpg")
    check_face(path)  # cascades load once per process

    started = time.perf_counter()
    verdict = check_face(path)
    elapsed = time.perf_counter() - started

    assert verdict.check_pass
    assert elapsed < 1.0


def test_face_checks_in_parallel_threads_do_not_interfere() -> None:
    """Web servers check in threads; OpenCV cascades must not be shared between them."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(pool.map(lambda _: check_face(ASTRONAUT), range(8)))

    assert all(v.check_pass for v in verdicts)
    assert len({v.face_box for v in verdicts}) == 1


@pytest.mark.parametrize(
    ("mode", "fmt"), [("I;16", "PNG"), ("I", "TIFF"), ("F", "TIFF")]
)
def test_deep_greyscale_decodes_like_its_8_bit_version(
    tmp_path: Path, mode: str, fmt: str
):
    path = make_deep_grey(tmp_path / f"grey.{fmt.lower()}", mode=mode, fmt=fmt)
    eight = tmp_path / "grey8.png"
    Image.open(ASTRONAUT).convert("L").save(eight)

    deep, plain = load_rgb(path).astype(int), load_rgb(eight).astype(int)

    # Clipping to 255 used to make every pixel white.
    assert abs(deep - plain).max() <= 1
    assert 80 < deep.mean() < 200


def test_16_bit_greyscale_portrait_passes_like_its_8_bit_version(tmp_path: Path):
    path = make_deep_grey(tmp_path / "grey16.png")
    assert Image.open(path).mode == "I;16"

    verdict = check_face(path)

    assert verdict.check_pass, verdict.message
    assert_on_astronaut_face(verdict.face_box)
    assert read_image_info(path) == ImageInfo(
        format="PNG", width=512, height=512, size=path.stat().st_size
    )
