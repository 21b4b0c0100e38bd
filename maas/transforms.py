"""Pure pre- and post-processing: encoded image bytes -> model input, logits -> top-k.

The Python-backend models in model_repository/ are thin adapters over these functions, and
training/export/build use the same ones, so what the server computes is what we test offline.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from maas.metrics import Refused

# Formats we decode; anything else is refused before Pillow tries a plugin on it.
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")
# Default decompression-bomb guard: a 32x32 model has no use for more than ~16 Mpixel inputs.
DEFAULT_MAX_PIXELS = 4096 * 4096


class ImageError(Refused):
    """An input that is not a usable image; the message says why."""


@dataclass(frozen=True)
class Preprocessing:
    """What turns an encoded image into a network's input: RGB pixel values (0..255) at the
    network's size, laid out NCHW. Normalisation is the network's own (inside its ONNX
    graph), so any client that sends pixel values gets the same answers as our ensemble."""

    height: int
    width: int
    max_pixels: int = DEFAULT_MAX_PIXELS


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode encoded bytes to an 8-bit RGB image (EXIF orientation applied, first frame)."""
    if len(data) == 0:
        raise ImageError("empty image: 0 bytes", "empty")
    try:
        # Image.open reads the header only, so the size check below runs before any decoding.
        img = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise ImageError(
            f"not a recognised image ({len(data)} bytes; expected one of {', '.join(FORMATS)})",
            "not_an_image",
        ) from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"image too large: {e}", "too_large") from None
    except (OSError, ValueError, SyntaxError) as e:  # Pillow: ValueError("Truncated IHDR chunk")
        raise ImageError(f"corrupt image header: {e}", "corrupt") from None
    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(
            f"image too large: {width}x{height} = {width * height} pixels, "
            f"over the limit of {max_pixels}",
            "too_large",
        )
    try:
        img.seek(0)  # GIF/TIFF/WebP animations: the first frame
        img.load()
        # Most images carry no rotation: check the tag before exif_transpose copies the image.
        if img.getexif().get(ExifTags.Base.Orientation, 1) != 1:
            img = ImageOps.exif_transpose(img)
        return _to_rgb(img)
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's truncated/corrupt data errors
        raise ImageError(f"truncated or corrupt {img.format} image: {e}", "corrupt") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit integer) grey: keep the top 8 bits of a 16-bit range.
        arr = np.asarray(img, dtype=np.uint32) >> 8
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels become white, as a viewer would show them.
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return img.convert("RGB")


def to_array(img: Image.Image, height: int, width: int) -> np.ndarray:
    """Resize an RGB image to the model's input size: uint8 array of shape (H, W, 3)."""
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def layout(batch: np.ndarray) -> np.ndarray:
    """uint8 NHWC batch -> float32 NCHW pixel values (0..255): what the served networks take."""
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)


def normalize(batch: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 NHWC batch -> float32 NCHW, (x/255 - mean) / std per channel, in one operation:
    what a network sees after the normalisation in front of it (training, and the exported
    graph's first two operations)."""
    scale = (np.float32(1.0 / 255.0) / np.asarray(std, dtype=np.float32)).reshape(3, 1, 1)
    shift = (np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)).reshape(
        3, 1, 1
    )
    # Written straight into an NCHW array: two passes over the pixels, no temporary copy.
    n, h, w, _ = batch.shape
    out = np.empty((n, 3, h, w), np.float32)
    np.multiply(batch.transpose(0, 3, 1, 2), scale, out=out)
    out -= shift
    return out


def load_pixels(data: bytes, spec: Preprocessing) -> np.ndarray:
    """Encoded bytes -> uint8 (H, W, 3) at the model's size; raises ImageError."""
    return to_array(decode(data, spec.max_pixels), spec.height, spec.width)


def load_images(images: Sequence[bytes], spec: Preprocessing) -> np.ndarray:
    """Encoded images -> uint8 (N, H, W, 3); raises ImageError naming the failing image."""
    return decode_images(images, spec)[0]


def decode_images(images: Sequence[bytes], spec: Preprocessing) -> tuple[np.ndarray, list[int]]:
    """load_images, and each image's size in pixels as sent (width x height, for metrics)."""
    pixels, sizes = [], []
    for i, data in enumerate(images):
        try:
            img = decode(data, spec.max_pixels)
        except ImageError as e:
            where = f"image {i}: " if len(images) > 1 else ""
            raise ImageError(f"{where}{e}", e.reason) from None
        sizes.append(img.width * img.height)
        pixels.append(to_array(img, spec.height, spec.width))
    if not pixels:
        return np.zeros((0, spec.height, spec.width, 3), np.uint8), sizes
    return np.stack(pixels), sizes


def preprocess(images: Sequence[bytes], spec: Preprocessing) -> np.ndarray:
    """Encoded images -> float32 (N, 3, H, W) pixel values, the networks' input; raises
    ImageError."""
    return layout(load_images(images, spec))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_k(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best (class ids int64, scores) per row, best first; ties keep the lower id first."""
    if k < 1:
        raise ValueError(f"top_k must be at least 1, got {k}")
    k = min(k, probs.shape[-1])
    ids = np.argsort(-probs, axis=-1, kind="stable")[..., :k]
    return ids.astype(np.int64), np.take_along_axis(probs, ids, axis=-1)


def scores(outputs: np.ndarray, probabilities: bool = False) -> np.ndarray:
    """A classifier's outputs (N, C) -> scores per class, float32: the softmax of logits, or
    probabilities as they are (a network whose last layer is a softmax: a second softmax
    would flatten them)."""
    outputs = outputs.astype(np.float32)
    return outputs if probabilities else softmax(outputs)


def postprocess(
    logits: np.ndarray, k: int, labels: Sequence[str], probabilities: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outputs (N, C) -> (labels as bytes objects, scores float32, class ids int64), each
    (N, k); `probabilities`: the outputs are scores already (see `scores`)."""
    if logits.ndim != 2 or logits.shape[1] != len(labels):
        raise ValueError(f"expected logits of shape (N, {len(labels)}), got {logits.shape}")
    ids, best = top_k(scores(logits, probabilities), k)
    names = np.asarray([label.encode() for label in labels], dtype=object)[ids]
    return names, best.astype(np.float32), ids


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes; how held-out images travel to the server in tests and demo."""
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


def split_batch(batch: np.ndarray, counts: Sequence[int]) -> list[np.ndarray]:
    """Undo the stacking of several requests: rows of `batch` back into per-request arrays."""
    ends = np.cumsum(counts).tolist()
    return [batch[end - n : end] for n, end in zip(counts, ends, strict=True)]
