"""README and docs/: the README stays short and links every docs page, and the curl command it
shows is one that docs/clients.md holds (whose commands the e2e tests run as written)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_the_readme_is_short_and_links_every_docs_page():
    assert len(README.splitlines()) < 250
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert len(pages) >= 8
    assert [p for p in pages if f"(docs/{p}" not in README] == []


def test_the_readmes_curl_commands_are_the_tested_ones():
    clients = (ROOT / "docs" / "clients.md").read_text()
    commands = [
        line
        for block in re.findall(r"```bash\n(.*?)```", README, re.S)
        for line in block.splitlines()
        if line.startswith("curl ")
    ]
    assert commands and [c for c in commands if c not in clients] == []
