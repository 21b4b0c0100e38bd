"""The VAE and the GAN against the real tritonserver: what they answer, that the same seed
gives the same images, that the image classifier recognises what they draw, and that every
bad input gets an error naming its tensor while the server stays up and batch-mates are
answered."""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from maas.clients.client import AsyncClient, Client
from maas.clients.errors import InvalidInput
from maas.runtime import names as C
from maas.training.generative import grey_digits
from maas.training.vae import to_pixels

MAAS = str(Path(sys.executable).with_name("maas"))
SCHEMES = ["http", "grpc"]


def url(server, scheme: str) -> str:
    return server.url(scheme)


def grey(png: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(png))
    assert img.mode == "L" and img.size == (32, 32)
    return np.asarray(img)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_generator_same_seed_same_images_and_they_show_the_digit(server, scheme):
    with Client(url(server, scheme)) as client:
        first = client.generate(7, seed=11, count=4)
        assert len(first) == 4 and first == client.generate(7, seed=11, count=4)
        assert client.generate(7, seed=11, count=6)[:4] == first  # more keeps the first
        assert client.generate(7, seed=12, count=4) != first
        drawn = [png for digit in range(10) for png in client.generate(digit, seed=3, count=8)]
        seen = [c.top.class_id for c in client.classify(drawn)]
    wanted = np.repeat(np.arange(10), 8)
    # The build's gate held each digit at >= 90% of 100 by the same classifier.
    assert (np.array(seen) == wanted).mean() >= 0.85


@pytest.mark.parametrize("scheme", SCHEMES)
def test_vae_encode_equals_the_onnx_encoder_offline(server, vae_path, heldout_png, scheme):
    with Client(url(server, scheme)) as client:
        codes = client.encode(heldout_png[:20])
    session = ort.InferenceSession(str(vae_path.with_name("encoder.onnx")))
    want = session.run([C.LATENT], {C.PIXELS: to_pixels(grey_digits().test_x[:20])})[0]
    np.testing.assert_allclose(codes, want, atol=1e-4)


def test_vae_decode_of_encode_is_reconstruct_and_keeps_the_digit(server, heldout_png):
    with Client(f"grpc://{server.grpc_url}") as client:
        rebuilt = client.reconstruct(heldout_png[:40])
        assert client.decode(client.encode(heldout_png[:40])) == rebuilt
        before = [c.top.class_id for c in client.classify(heldout_png[:40])]
        after = [c.top.class_id for c in client.classify(rebuilt)]
    assert all(grey(p).shape == (32, 32) for p in rebuilt)
    assert np.mean(np.array(before) == np.array(after)) >= 0.9


@pytest.mark.parametrize("scheme", SCHEMES)
def test_vae_sample_same_seed_same_images(server, scheme):
    with Client(url(server, scheme)) as client:
        a = client.sample(seed=5, count=3)
        assert a == client.sample(seed=5, count=3) and len(a) == 3
        assert client.sample(seed=5, count=5)[:3] == a
        assert client.sample(seed=6, count=3) != a
    assert len({grey(p).tobytes() for p in a}) == 3  # three different images


GENERATOR_BAD = {
    "digit_10": ((10, 1, 1), "DIGIT must be in 0..9, got 10"),
    "digit_negative": ((-1, 1, 1), "DIGIT must be in 0..9, got -1"),
    "count_0": ((1, 1, 0), "COUNT must be in 1..64, got 0"),
    "count_past_limit": ((1, 1, 65), "COUNT must be in 1..64, got 65"),
    "seed_negative": ((1, -1, 1), "SEED must be in 0..4294967295, got -1"),
    "seed_huge": ((1, 2**40, 1), f"SEED must be in 0..4294967295, got {2**40}"),
}


@pytest.mark.parametrize("case", list(GENERATOR_BAD))
@pytest.mark.parametrize("scheme", SCHEMES)
def test_generator_bad_input_named_and_the_server_stays_up(server, case, scheme):
    (digit, seed, count), message = GENERATOR_BAD[case]
    with Client(url(server, scheme)) as client:
        with pytest.raises(InvalidInput) as err:
            client.generate(digit, seed, count)
        assert message in str(err.value)
        assert err.value.status == ("400" if scheme == "http" else "StatusCode.INVALID_ARGUMENT")
        if case.startswith(("count", "seed")):  # the VAE's sampler checks the same way
            with pytest.raises(InvalidInput, match=message.split(",")[0]):
                client.sample(seed, count)
        assert client.is_ready() and len(client.generate(1, 0, 2)) == 2


@pytest.mark.parametrize("scheme", SCHEMES)
def test_latent_of_the_wrong_size_is_refused(server, scheme):
    with Client(url(server, scheme)) as client:
        with pytest.raises(InvalidInput, match=r"LATENT.*Expected \[-1,16\], got \[1,7\]"):
            client.decode(np.zeros((1, 7), np.float32))
        assert len(client.decode(np.zeros((1, 16), np.float32))) == 1


def test_bad_latent_or_image_fails_only_its_own_request_in_a_batch(server, heldout_png):
    async def run():
        async with AsyncClient(f"grpc://{server.grpc_url}") as client:
            codes = await client.encode(heldout_png[:12])
            rows = [codes[i : i + 1] for i in range(12)]
            rows[4] = np.full((1, 16), np.nan, np.float32)
            rows[5] = np.array([[3.4e38, -3.4e38] * 8], np.float32)  # finite; decodes to inf
            decoded = await asyncio.gather(
                *(client.decode(r) for r in rows), return_exceptions=True
            )
            images = list(heldout_png[:12])
            images[7] = b"not an image"
            rebuilt = await asyncio.gather(
                *(client.reconstruct([i]) for i in images), return_exceptions=True
            )
            return decoded, rebuilt

    decoded, rebuilt = asyncio.run(run())
    assert [i for i, r in enumerate(decoded) if isinstance(r, Exception)] == [4, 5]
    for refused in (decoded[4], decoded[5]):
        assert "LATENT: the decoded image has NaN or inf values" in str(refused)
    assert [i for i, r in enumerate(rebuilt) if isinstance(r, Exception)] == [7]
    assert "IMAGE: not a recognised image" in str(rebuilt[7])


def test_generate_sample_encode_decode_cli(server, heldout_png, tmp_path):
    address = ["--url", f"grpc://{server.grpc_url}"]
    run = subprocess.run(
        [MAAS, "generate", "4", "--seed", "2", "--count", "3", "--out", str(tmp_path), *address],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    paths = [Path(p) for p in run.stdout.split()]
    assert [p.name for p in paths] == [f"digit4_seed2_{i:02d}.png" for i in range(3)]
    with Client(f"grpc://{server.grpc_url}") as client:
        assert [p.read_bytes() for p in paths] == client.generate(4, 2, 3)
    image = tmp_path / "digit.png"
    image.write_bytes(heldout_png[0])
    codes = subprocess.run(
        [MAAS, "encode", str(image), *address],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert len(codes.split()) == 16
    decoded = subprocess.run(
        [MAAS, "decode", "--out", str(tmp_path / "d"), *address],
        input=codes, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert Path(decoded.stdout.strip()).is_file()
    bad = subprocess.run(
        [MAAS, "generate", "12", *address], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 1 and "DIGIT must be in 0..9, got 12" in bad.stderr


def clients_doc_curl(heading: str) -> str:
    """The bash block under `heading` in docs/clients.md, where the curl commands live."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "clients.md").read_text()
    section = text[text.index(heading) :]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize(
    ("heading", "png", "call"),
    [
        ("Sample with curl", "sample.png", lambda c: c.sample(3, 1)),
        ("Generate with curl", "seven.png", lambda c: c.generate(7, 42, 1)),
    ],
)
def test_readme_curl_gives_the_clients_png(server, tmp_path, heading, png, call):
    script = clients_doc_curl(heading).replace("localhost:8000", server.http_url)
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    with Client(f"http://{server.http_url}") as client:
        assert (tmp_path / png).read_bytes() == call(client)[0]
