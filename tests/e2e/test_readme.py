"""The curl commands of docs/clients.md ("Raw KServe v2 over HTTP with curl"), run as written
against the live server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CLIENTS_DOC = Path(__file__).resolve().parents[2] / "docs" / "clients.md"


def curl_block() -> str:
    text = CLIENTS_DOC.read_text()
    section = text[text.index("Raw KServe v2 over HTTP with curl") :]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl_commands(server, tmp_path, heldout_png, offline):
    sample = tmp_path / "artifacts" / "samples" / "00_4.png"
    sample.parent.mkdir(parents=True)
    sample.write_bytes(heldout_png[0])
    script = curl_block().replace("localhost:8000", server.http_url)
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    config, inferred, logits = (json.loads(line) for line in run.stdout.splitlines())
    assert config["name"] == "image_classifier"
    outputs = {o["name"]: o for o in inferred["outputs"]}
    assert outputs["LABELS"]["data"] == [b.decode() for b in offline["labels"][0]]
    assert outputs["SCORES"]["data"] == pytest.approx(offline["scores"][0].tolist(), rel=1e-5)
    assert {o["name"]: o["data"] for o in logits["outputs"]}["LABELS"] == ["4", "9"]
