"""The generative families (VAE, GAN): pure functions of what their Python steps compute, which
training and the build's gates use too, so that the server does what is tested offline; and
the two steps, Noise and Png.

    z = latents(seed=7, count=4, size=16)     # the same seed gives the same rows, anywhere
    pngs = to_png(decoder(z))                 # (N, 1, H, W) in 0..1 -> N greyscale PNGs

A request's numbers are checked here, with messages that name the tensor and the problem: a
SEED must fit numpy's seed range, a COUNT must be 1..the limit, a DIGIT one of the classes.
"""

from __future__ import annotations

import numpy as np

from . import names as C
from .errors import Refused
from .metrics import GENERATED
from .png import encode_png
from .step import StepModel

SEED_LIMIT = 2**32  # seeds are 0 .. 2**32 - 1: what numpy, PyTorch and most tools accept


class GenerationError(Refused):
    """A seed, count or digit the generator cannot take; the message says why."""


def one_value(values: np.ndarray, name: str) -> int:
    """The one integer a request carries in the [1] tensor `name`."""
    flat = np.asarray(values).reshape(-1)
    if flat.size != 1:
        raise GenerationError(f"{name}: expected one value, got {flat.size}", "not_one_value")
    return int(flat[0])


def check_seed(seed: int) -> int:
    if not 0 <= seed < SEED_LIMIT:
        raise GenerationError(f"{C.SEED} must be in 0..{SEED_LIMIT - 1}, got {seed}", "bad_seed")
    return seed


def check_count(count: int, limit: int) -> int:
    if not 1 <= count <= limit:
        raise GenerationError(f"{C.COUNT} must be in 1..{limit}, got {count}", "bad_count")
    return count


def check_digit(digit: int, classes: int) -> int:
    if not 0 <= digit < classes:
        raise GenerationError(f"{C.DIGIT} must be in 0..{classes - 1}, got {digit}", "bad_digit")
    return digit


def generator_inputs(
    seed: int, count: int, size: int, max_count: int, digit: int | None = None, classes: int = 0
) -> tuple[np.ndarray, np.ndarray | None]:
    """A checked request -> (noise rows (count, size), one-hot rows (count, classes) of the
    digit, or None for an unconditional generator); GenerationError names the bad tensor."""
    check_seed(seed)
    check_count(count, max_count)
    noise = latents(seed, count, size)
    return noise, (one_hot(digit, count, classes) if classes else None)


def latents(seed: int, count: int, size: int) -> np.ndarray:
    """`count` standard-normal rows of `size` from `seed`: float32 (count, size). Row i does
    not depend on `count`, so asking for more images keeps the first ones."""
    rng = np.random.Generator(np.random.PCG64(check_seed(seed)))
    return rng.standard_normal((count, size), dtype=np.float32)


def one_hot(digit: int, count: int, classes: int) -> np.ndarray:
    """float32 (count, classes), each row the one-hot code of `digit`."""
    out = np.zeros((count, classes), np.float32)
    out[:, check_digit(digit, classes)] = 1.0
    return out


def to_uint8(images: np.ndarray) -> np.ndarray:
    """(N, 1, H, W) floats in 0..1 -> uint8 (N, H, W); what a PNG of them holds."""
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"expected greyscale images (N, 1, H, W), got {images.shape}")
    if not np.isfinite(images).all():
        # What a decoder makes of a LATENT with NaN or inf in it: refuse, not a black PNG.
        raise GenerationError(
            "the decoded image has NaN or inf values: send finite values of a normal's "
            "range (|x| < 10 or so)",
            "not_finite",
        )
    return np.rint(np.clip(images[:, 0], 0.0, 1.0) * 255.0).astype(np.uint8)


def to_rgb(images: np.ndarray) -> np.ndarray:
    """(N, 1, H, W) in 0..1 -> uint8 (N, H, W, 3): what the image classifier sees of them
    (as if sent to it as the PNGs the server returns)."""
    grey = to_uint8(images)
    return np.repeat(grey[..., None], 3, axis=-1)


def to_png(images: np.ndarray) -> list[bytes]:
    """(N, 1, H, W) in 0..1 -> N greyscale PNG files."""
    return [encode_png(grey) for grey in to_uint8(images)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of images in 0..1 (inf when identical)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def mean_pairwise_distance(features: np.ndarray) -> float:
    """Mean Euclidean distance between all pairs of rows: how spread out a set of images
    (or their features) is. Near 0 for a generator that draws one image whatever the seed."""
    flat = np.asarray(features, np.float64).reshape(len(features), -1)
    if len(flat) < 2:
        return 0.0
    squared = (flat**2).sum(1)
    d2 = np.maximum(squared[:, None] + squared[None, :] - 2 * flat @ flat.T, 0.0)
    upper = np.triu_indices(len(flat), k=1)
    return float(np.sqrt(d2[upper]).mean())


class Noise(StepModel):
    """Unbatched: SEED, COUNT (and DIGIT) -> the inputs of a generator network for COUNT images
    (generator_inputs): standard-normal rows from the seed and, for a conditional generator
    (parameter classes > 0), the digit's one-hot rows. Used by vae_noise (-> LATENT) and
    gan_noise (-> NOISE, CONDITION); the output names and the noise size come from the config.
    A request whose SEED, COUNT or DIGIT is out of range gets its own INVALID_ARG error naming
    the tensor."""

    PARAMETERS = ("max_count", "classes")
    REFUSED = GenerationError

    def setup(self) -> None:
        self.max_count = int(self.params["max_count"])
        self.classes = int(self.params["classes"])
        self.names = [t["name"] for t in self.config["output"]]
        self.size = int(self.config["output"][0]["dims"][-1])

    def answer(self, request):
        names = (C.SEED, C.COUNT, C.DIGIT) if self.classes else (C.SEED, C.COUNT)
        given = {name: one_value(self.input(request, name), name) for name in names}
        noise, condition = generator_inputs(
            given[C.SEED], given[C.COUNT], self.size, self.max_count,
            given.get(C.DIGIT), self.classes,
        )  # fmt: skip
        arrays = (noise,) if condition is None else (noise, condition)
        return [self.pb.Tensor(n, a) for n, a in zip(self.names, arrays, strict=True)]


class Png(StepModel):
    """DECODED images (0..1) -> PNG files: batched (vae_png: one PNG per batch row) or
    unbatched (vae_sample_png, gan_png: the COUNT images of one request), as its config says.
    A request whose images are not finite (a LATENT with NaN in it, or values so large the
    decoder overflows) gets its own INVALID_ARG error; its batch-mates are answered."""

    # Refusals name LATENT, the input a client sends that can make them (vae_decode): seeds
    # (vae_sample, the GAN) and images (vae_reconstruct) always decode to finite images.
    REFUSED, TENSOR = GenerationError, C.LATENT

    def setup(self) -> None:
        self.row = (-1, 1) if self.config["max_batch_size"] > 0 else (-1,)

    def answer(self, request):
        images = self.input(request, C.DECODED)
        files = np.array(to_png(images), dtype=object).reshape(self.row)
        self.metrics.count(GENERATED, files.size)
        return [self.pb.Tensor(C.PNG, files)]
