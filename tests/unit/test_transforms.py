"""maas.runtime.images and classify: decoding every supported format, the conversions, and
every refusal."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from maas.runtime.classify import postprocess, softmax, top_k
from maas.runtime.images import (
    ImageError,
    Preprocessing,
    decode,
    decode_images,
    layout,
    load_images,
    normalize,
    preprocess,
)
from maas.runtime.step import split_batch

SPEC = Preprocessing(height=32, width=32)


def encoded(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def gradient(w=48, h=40) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.float32)
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
    rgb = np.stack(
        [np.broadcast_to(x, (h, w)), np.broadcast_to(y, (h, w)), np.full((h, w), 60)], -1
    )
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"])
def test_every_supported_format_decodes_to_rgb(fmt):
    img = decode(encoded(gradient(), fmt))
    assert img.mode == "RGB" and img.size == (48, 40)
    # Lossy formats drift a little; all must keep the picture (a left-to-right red ramp).
    red = np.asarray(img)[:, :, 0].astype(int)
    assert red[:, -1].mean() - red[:, 0].mean() > 200


def test_exif_orientation_is_applied():
    img = gradient(60, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = decode(encoded(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 60)


def test_gif_first_frame():
    red, blue = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    data = encoded(red, "GIF", save_all=True, append_images=[blue])
    assert tuple(np.asarray(decode(data))[0, 0]) == (255, 0, 0)


def test_grey_rgba_cmyk_and_16bit_are_converted():
    grey = decode(encoded(Image.new("L", (4, 4), 77), "PNG"))
    assert tuple(np.asarray(grey)[0, 0]) == (77, 77, 77)
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 0))  # fully transparent -> white background
    assert tuple(np.asarray(decode(encoded(rgba, "PNG")))[0, 0]) == (255, 255, 255)
    cmyk = decode(encoded(Image.new("CMYK", (4, 4), (0, 255, 255, 0)), "JPEG", quality=95))
    r, g, b = np.asarray(cmyk)[0, 0]
    assert r > 200 and g < 60 and b < 60  # CMYK (0,255,255,0) is red
    deep = Image.fromarray(np.full((4, 4), 40000, np.uint16))  # 16-bit grey
    out = decode(encoded(deep, "PNG"))
    assert tuple(np.asarray(out)[0, 0]) == (40000 >> 8,) * 3


def test_empty_bytes_named():
    with pytest.raises(ImageError, match="empty image"):
        decode(b"")


def test_non_image_named():
    with pytest.raises(ImageError, match="not a recognised image"):
        decode(b"%PDF-1.4 definitely not a picture")


def test_truncated_png_named():
    data = encoded(gradient(), "PNG")
    with pytest.raises(ImageError, match="truncated or corrupt PNG"):
        decode(data[: len(data) // 2])


def test_png_header_with_a_zero_length_ihdr_named():
    """Found by the fuzz test: Pillow's PNG reader raises ValueError, not OSError, for it."""
    data = bytearray(encoded(gradient(), "PNG"))
    data[11] = 0  # the IHDR chunk's length: 13 -> 0
    with pytest.raises(ImageError, match="corrupt image header: Truncated IHDR chunk") as e:
        decode(bytes(data))
    assert e.value.reason == "corrupt"


def test_pixel_limit_checked_before_decoding():
    with pytest.raises(ImageError, match=r"48x40 = 1920 pixels, over the limit of 1000"):
        decode(encoded(gradient(), "PNG"), max_pixels=1000)


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size over a tiny payload: a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_refused_without_allocating():
    with pytest.raises(ImageError, match="image too large"):
        decode(_png_claiming(100_000, 100_000))


def test_load_images_names_the_failing_image():
    good = encoded(gradient(), "PNG")
    with pytest.raises(ImageError, match=r"^image 1: not a recognised image"):
        load_images([good, b"junk", good], SPEC)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"%PDF-1.4", "not_an_image"),
        (_png_claiming(100_000, 100_000), "too_large"),
        (encoded(gradient(), "PNG")[:-40], "corrupt"),
    ],
)
def test_each_refusal_has_its_reason_for_the_metrics(data, reason):
    good = encoded(gradient(), "PNG")
    with pytest.raises(ImageError) as refused:
        load_images([good, data], SPEC)
    assert refused.value.reason == reason and str(refused.value).startswith("image 1: ")


def test_decode_images_reports_each_size_as_sent():
    images = [encoded(gradient(48, 40), "PNG"), encoded(gradient(20, 10), "JPEG")]
    pixels, sizes = decode_images(images, SPEC)
    assert sizes == [48 * 40, 20 * 10] and pixels.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(pixels, load_images(images, SPEC))


def test_normalize_matches_formula_and_layout():
    batch = np.random.default_rng(0).integers(0, 256, (2, 5, 6, 3), dtype=np.uint8)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    out = normalize(batch, mean, std)
    assert out.shape == (2, 3, 5, 6) and out.dtype == np.float32
    expected = (batch / 255.0 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(out, expected.transpose(0, 3, 1, 2), atol=1e-5)


def test_layout_keeps_the_values_and_moves_the_channels_first():
    batch = np.random.default_rng(0).integers(0, 256, (2, 5, 6, 3), dtype=np.uint8)
    out = layout(batch)
    assert out.shape == (2, 3, 5, 6) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, batch.transpose(0, 3, 1, 2))


def test_probabilities_are_scored_as_they_are_logits_through_softmax():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    _, as_given, _ = postprocess(probabilities, 1, ["a", "b", "c"], probabilities=True)
    np.testing.assert_array_equal(as_given[:, 0], probabilities.max(axis=1))
    _, twice, _ = postprocess(probabilities, 1, ["a", "b", "c"])  # a second softmax flattens
    assert twice[0, 0] < 0.5


def test_preprocess_resizes_to_model_input():
    out = preprocess([encoded(gradient(), "PNG"), encoded(gradient(64, 64), "JPEG")], SPEC)
    assert out.shape == (2, 3, 32, 32)


def test_softmax_top_k_postprocess():
    logits = np.array([[1.0, 3.0, 2.0, 3.0], [1000.0, 0.0, 0.0, 0.0]], np.float32)
    probs = softmax(logits)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
    ids, scores = top_k(probs, 3)
    assert ids.tolist() == [[1, 3, 2], [0, 1, 2]]  # a tie keeps the lower id first
    assert np.all(np.diff(scores, axis=1) <= 0)
    labels, _, cid = postprocess(logits, 10, ["a", "b", "c", "d"])
    assert labels.shape == (2, 4)  # k is capped at the number of classes
    assert labels[0].tolist() == [b"b", b"d", b"c", b"a"] and cid.dtype == np.int64
    with pytest.raises(ValueError, match="at least 1"):
        top_k(probs, 0)
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        postprocess(logits, 1, ["a", "b", "c"])


def test_split_batch_undoes_stacking():
    parts = split_batch(np.arange(10).reshape(5, 2), [2, 0, 3])
    assert [p.shape[0] for p in parts] == [2, 0, 3]
    assert parts[2].tolist() == [[4, 5], [6, 7], [8, 9]]


# Four saturated, distinct colours, one per quadrant: any swap of channels, of mean and std, or
# of height and width moves a known value to another place.
QUADRANTS = {  # (row, col) of the quadrant: RGB
    (0, 0): (200, 30, 90),
    (0, 1): (10, 220, 40),
    (1, 0): (60, 70, 250),
    (1, 1): (255, 128, 0),
}


def quadrants(width: int, height: int) -> Image.Image:
    rgb = np.zeros((height, width, 3), np.uint8)
    for (r, c), colour in QUADRANTS.items():
        rgb[r * height // 2 : (r + 1) * height // 2, c * width // 2 : (c + 1) * width // 2] = colour
    return Image.fromarray(rgb, "RGB")


def expected_pixels(rgb) -> np.ndarray:
    return np.asarray(rgb, np.float32)  # the networks normalise: preprocess sends the values


def quadrant_centres(pixels: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    """(3, H, W) model input -> the channel values at the centre of each quadrant."""
    _, h, w = pixels.shape
    return {(r, c): pixels[:, h // 4 + r * h // 2, w // 4 + c * w // 2] for r, c in QUADRANTS}


def test_preprocess_known_colours_per_channel():
    """A 64x48 coloured PNG resized to 32x32: each quadrant's value per channel, exactly."""
    [pixels] = preprocess([encoded(quadrants(64, 48), "PNG")], SPEC)
    for place, got in quadrant_centres(pixels).items():
        np.testing.assert_allclose(got, expected_pixels(QUADRANTS[place]), atol=1e-5)


def test_preprocess_exif_rotated_coloured_jpeg():
    """Stored 64x32 with orientation 6 (rotate 90 degrees clockwise to display): the quadrant
    stored bottom-left is displayed top-left, top-left goes top-right, and so on."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encoded(quadrants(64, 32), "JPEG", exif=exif.tobytes(), quality=95, subsampling=0)
    assert decode(data).size == (32, 64)
    [pixels] = preprocess([data], SPEC)
    shown_from_stored = {(0, 0): (1, 0), (0, 1): (0, 0), (1, 1): (0, 1), (1, 0): (1, 1)}
    tolerance = 6  # JPEG moves a flat colour by a few levels at most
    for place, got in quadrant_centres(pixels).items():
        want = expected_pixels(QUADRANTS[shown_from_stored[place]])
        np.testing.assert_allclose(got, want, atol=tolerance)
