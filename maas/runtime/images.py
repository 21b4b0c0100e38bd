"""Images: encoded bytes -> what every served network takes (RGB pixel values 0..255, NCHW at
its size), and Preprocess, the Python step that does it in Triton.

Pure functions over Pillow and numpy; the step, training, export, the build's gates and the
tests call the same ones, so what the server computes is what is tested offline. Pillow comes
from the step's own environment where it is served (maas build writes it: EXECUTION_ENV_PATH).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .errors import Refused
from .metrics import IMAGE_PIXELS
from .names import IMAGE, PIXELS
from .step import StepModel, split_batch

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


class Preprocess(StepModel):
    """IMAGE (encoded bytes) -> PIXELS at the size its config declares. Requests that Triton
    batches together are decoded one image at a time (decoding is per image anyway), then laid
    out in one array operation and split back; a request with a bad image gets its own
    INVALID_ARG error. On /metrics: each image's size as sent, and refusals by reason."""

    PARAMETERS = ("max_pixels",)
    REFUSED, TENSOR = ImageError, IMAGE
    NEEDS = ("pillow",)

    def setup(self) -> None:
        _, height, width = self.dims(PIXELS)
        self.spec = Preprocessing(height, width, int(self.params["max_pixels"]))

    def _decode(self, request) -> tuple[np.ndarray, list[int]]:
        images = self.input(request, IMAGE).reshape(-1)
        return decode_images([bytes(b) for b in images], self.spec)

    def execute(self, requests):
        responses, decoded = self.attempt_each(requests, self._decode)
        if decoded:
            arrays = [pixels for pixels, _ in decoded.values()]
            parts = split_batch(layout(np.concatenate(arrays)), [len(a) for a in arrays])
            for i, part in zip(decoded, parts, strict=True):
                responses[i] = self.respond(**{PIXELS: part})
        self.metrics.observe(IMAGE_PIXELS, [n for _, sent in decoded.values() for n in sent])
        return responses
