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


def test_classify_cli_answers_good_files_and_names_each_bad_one(
    server, image_files, offline, tmp_path
):
    bad = tmp_path / "notes.png"
    bad.write_text("these are not pixels")
    missing = tmp_path / "missing.png"
    files = [image_files[0], bad, image_files[1], missing, image_files[2]]
    run = subprocess.run(
        [MAAS, "classify", *map(str, files), "--url", f"http://{server.http_url}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    answered = [line.partition(": ") for line in run.stdout.splitlines()]
    assert [path for path, _, _ in answered] == [str(p) for p in image_files]
    assert [preds.split(" (")[0] for _, _, preds in answered] == [
        offline["labels"][i, 0].decode() for i in range(3)
    ]
    errors = run.stderr.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"maas classify: {missing}: ") and "No such file" in errors[0]
    assert errors[1].startswith(f"maas classify: {bad}: ") and "not a recognised image" in errors[1]


@pytest.mark.parametrize("args", [["--help"], ["FILE", "--url", "grpc://ADDRESS"]])
def test_classify_never_imports_training_code(server, image_files, args):
    """A client command starts fast: neither torch nor maas.training is imported."""
    args = [
        a.replace("FILE", str(image_files[0])).replace("ADDRESS", server.grpc_url) for a in args
    ]
    probe = (
        "import sys\n"
        "from maas.cli import main\n"
        "try:\n"
        f"    code = main({['classify', *args]!r})\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or "
        "m.startswith('maas.training'))\n"
        "print('EXIT', code, 'HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.splitlines()[-1] == "EXIT 0 HEAVY []", out


def test_classify_cli_no_server(tmp_path, image_files):
    from maas.access import Ports

    run = subprocess.run(
        [MAAS, "classify", str(image_files[0]), "--url", f"grpc://127.0.0.1:{Ports.free().grpc}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1 and "ServerUnavailable" in run.stderr
