"""The environment a Python step brings with it where a stock Triton has not what it imports:
an unpacked folder that the step's config names in Triton's documented way,
`EXECUTION_ENV_PATH: $$TRITON_MODEL_DIRECTORY/env`.

    env/bin/activate                      sourced by the Python backend before the stub starts
    env/python3.10/site-packages/PIL ...  one package set per Python the stub may run
    env/python3.11/site-packages/PIL ...
    env/environment.json                  what is in it: package versions per Python

Every Python step has one, for its activate script: it takes the server's storage credentials
out of the stub's environment (docs/security.md). Only the image steps bring packages in it
(Pillow: JPEG, WebP, TIFF need real decoders); every other step imports numpy alone, which
every Triton container has. Why this shape (measured in docs/deploy.md):
- a folder, not a conda-pack tarball: the Python backend uses a folder in place, while a
  tarball is unpacked at every server start; and a tarball must hold a whole Python (~100 MB)
  to bring a ~10 MB package;
- the stub's own Python, not one of ours: `activate` puts the site-packages built for that
  Python (found as `python3` on the stub's PATH, as the stub finds its own) first on
  PYTHONPATH. Triton 24.10's container runs Python 3.10, maas serve the Python it runs in: the
  folder holds both (Pillow's C extensions are built per Python version);
- Pillow trimmed to what decoding needs: its modules, the C extensions for images and WebP, and
  only the bundled libraries those load (read from their ELF headers with pyelftools), not the
  font, colour-management and AVIF ones (22 MB -> ~10 MB a Python).
The packages come from what is installed (the running Python's) and from wheels in the
wheelhouse for the others (`make install` downloads the container's; nothing is downloaded
here).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from maas.errors import PackagingError

ENV_FOLDER = "env"
EXECUTION_ENV = f"$$TRITON_MODEL_DIRECTORY/{ENV_FOLDER}"
PARAMETER = {"EXECUTION_ENV_PATH": EXECUTION_ENV}  # in every Python step's config
WHEELHOUSE_ENV = "MAAS_WHEELHOUSE"
# Pillow's C extensions decoding does not need: fonts, colour management, AVIF, Tk (the GIF
# plugin imports ImageMath: _imagingmath stays).
SKIPPED_EXTENSIONS = ("_avif", "_imagingcms", "_imagingft", "_imagingtk")

ACTIVATE = """\
# Sourced by Triton's Python backend before it starts this model's stub (EXECUTION_ENV_PATH).
# Written by maas build. The server's storage credentials (tritonserver reads an s3://, gs://
# or as:// repository with them) are not this step's: its stub runs without them. (Defence in
# depth: the stub runs as tritonserver's user, which can read the server's /proc environ.)
for _maas_v in $(compgen -v AWS_) $(compgen -v AZURE_STORAGE_) GOOGLE_APPLICATION_CREDENTIALS \
    TRITON_CLOUD_CREDENTIAL_PATH; do
  unset "$_maas_v"
done
unset _maas_v
"""
# Where the step brings packages: those built for the stub's Python first on its import path.
ACTIVATE_PACKAGES = """\
_maas_env=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_maas_python=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
if [ -d "$_maas_env/python$_maas_python/site-packages" ]; then
  export PYTHONPATH="$_maas_env/python$_maas_python/site-packages${PYTHONPATH:+:$PYTHONPATH}"
fi
unset _maas_env _maas_python
"""


def running_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def wheelhouse() -> Path:
    """Where wheels for other Pythons are looked for: $MAAS_WHEELHOUSE, else the venv's."""
    return Path(os.environ.get(WHEELHOUSE_ENV) or Path(sys.prefix) / "maas-wheelhouse")


def write_environment(folder: Path, packages: tuple[str, ...] = ()) -> dict:
    """`folder`/env with `packages` for the running Python and every other one the wheelhouse
    has them for (none: the activate script alone); returns what environment.json records.
    Packages: "pillow"."""
    env = folder / ENV_FOLDER
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "activate").write_text(ACTIVATE + (ACTIVATE_PACKAGES if packages else ""))
    record: dict[str, dict[str, str]] = {}
    for package in packages:
        if package != "pillow":
            raise PackagingError(f"maas knows no way to ship {package!r} with a step")
        versions = {running_python(): _installed_pillow(env)}
        for python, wheel in _wheels("pillow", wheelhouse()).items():
            if python not in versions:
                versions[python] = _wheel_pillow(wheel, env, python)
        record[package] = dict(sorted(versions.items()))
    (env / "environment.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def pythons(record: dict) -> list[str]:
    """The Pythons every package of an environment record is there for, sorted."""
    sets = [set(versions) for versions in record.values()]
    return sorted(set.intersection(*sets)) if sets else []


def _site(env: Path, python: str) -> Path:
    site = env / f"python{python}" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    return site


def _installed_pillow(env: Path) -> str:
    dist = importlib.metadata.distribution("pillow")
    root = Path(dist.locate_file(""))
    files = [root / f for f in dist.files or () if _wanted(str(f))]
    _copy_trimmed(files, root, _site(env, running_python()))
    return dist.version


def _wheels(name: str, folder: Path) -> dict[str, Path]:
    """Python version -> a wheel of `name` in `folder` for CPython (not free-threaded) on
    Linux x86-64, as its file name's tags say."""
    from packaging.utils import parse_wheel_filename

    found = {}
    for wheel in sorted(folder.glob(f"{name}-*.whl")) if folder.is_dir() else ():
        for tag in parse_wheel_filename(wheel.name)[3]:
            version = tag.interpreter.removeprefix("cp3")
            if tag.abi == tag.interpreter and version.isdigit() and "x86_64" in tag.platform:
                found[f"3.{version}"] = wheel
    return found


def _wheel_pillow(wheel: Path, env: Path, python: str) -> str:
    from packaging.utils import parse_wheel_filename

    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if _wanted(n) and not n.endswith("/")]
        archive.extractall(tmp, names)
        _copy_trimmed([Path(tmp) / n for n in names], Path(tmp), _site(env, python))
    return str(parse_wheel_filename(wheel.name)[1])


def _wanted(name: str) -> bool:
    top = name.split("/")[0]
    stem = Path(name).name.split(".")[0]
    return (
        top in ("PIL", "pillow.libs")
        and "__pycache__" not in name
        and (stem not in SKIPPED_EXTENSIONS)
    )


def _copy_trimmed(files: list[Path], root: Path, site: Path) -> None:
    """PIL's files as they are; of its bundled libraries, only those its kept extensions load
    (the closure of their DT_NEEDED entries)."""
    libraries = {f.name: f for f in files if f.parent.name == "pillow.libs"}
    needed: set[str] = set()
    todo = [f for f in files if f.suffix == ".so" and f.parent.name == "PIL"]
    while todo:
        for name in _needed(todo.pop()):
            if name in libraries and name not in needed:
                needed.add(name)
                todo.append(libraries[name])
    for f in files:
        if f.parent.name == "pillow.libs" and f.name not in needed:
            continue
        target = site / f.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)


def _needed(library: Path) -> list[str]:
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    with library.open("rb") as f:
        return [
            tag.needed
            for section in ELFFile(f).iter_sections()
            if isinstance(section, DynamicSection)
            for tag in section.iter_tags()
            if tag.entry.d_tag == "DT_NEEDED"
        ]
