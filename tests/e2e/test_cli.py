"""The `maas` console script against the live server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

MAAS = str(Path(sys.executable).with_name("maas"))


@pytest.fixture(scope="module")
def image_files(tmp_path_factory, heldout_png):
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i in range(3):
        path = folder / f"digit_{i}.png"
        path.write_bytes(heldout_png[i])
        paths.append(path)
    return paths


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_classify_cli(server, image_files, offline, protocol):
    address = server.http_url if protocol == "http" else server.grpc_url
    out = subprocess.run(
        [
            MAAS,
            "classify",
            *map(str, image_files),
            "--url",
            address,
            "--protocol",
            protocol,
            "--top-k",
            "2",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    assert len(out) == 3
    for i, line in enumerate(out):
        path, _, preds = line.partition(": ")
        assert path == str(image_files[i])
        assert preds.split(" (")[0] == offline["labels"][i, 0].decode()
        assert preds.count("(") == 2


def test_classify_cli_json(server, image_files, offline):
    out = subprocess.run(
        [MAAS, "classify", str(image_files[0]), "--url", f"grpc://{server.grpc_url}", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    record = json.loads(out)
    assert record["image"] == str(image_files[0])
    assert [p["class_id"] for p in record["predictions"]] == offline["ids"][0].tolist()


def test_classify_cli_bad_image_exits_nonzero_with_reason(server, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("these are not pixels")
    run = subprocess.run(
        [MAAS, "classify", str(bad), "--url", f"http://{server.http_url}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "InvalidInput" in run.stderr and "not a recognised image" in run.stderr


def test_classify_cli_no_server(tmp_path, image_files):
    from maas.serve import Ports

    run = subprocess.run(
        [MAAS, "classify", str(image_files[0]), "--url", f"grpc://127.0.0.1:{Ports.free().grpc}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1 and "ServerUnavailable" in run.stderr
