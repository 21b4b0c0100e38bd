"""The layout traps: our build/ is `maas.build`, never the top-level `build`, and installing
leaves no setuptools scratch in it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_stage_folders_are_maas_subpackages():
    import maas.benchmarks
    import maas.build
    import maas.clients
    import maas.training

    for module, folder in [
        (maas.build, "build"),
        (maas.clients, "clients"),
        (maas.training, "training"),
        (maas.benchmarks, "benchmarks"),
    ]:
        assert [Path(p) for p in module.__path__] == [ROOT / folder]


def test_pypa_build_is_not_shadowed_even_from_the_checkout():
    # `python -c` puts the current directory first on sys.path, as `python -m build` does.
    origin = subprocess.run(
        [sys.executable, "-c", "import build; print(build.__file__)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert origin and ROOT / "build" not in Path(origin).parents
    assert importlib.util.find_spec("maas.build.repository").origin == str(
        ROOT / "build" / "repository.py"
    )


def test_install_left_build_folder_clean():
    """No setuptools scratch (lib/, bdist.*/, __editable__.*): build/ holds our modules only."""
    entries = [p for p in (ROOT / "build").rglob("*") if "__pycache__" not in p.parts]
    ours = [p.parent == ROOT / "build" and p.suffix == ".py" for p in entries]
    assert entries and all(ours), entries
