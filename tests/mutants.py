"""Twelve deliberate bugs, and whether the suite catches each: run by hand, not by pytest.

    .venv/bin/python tests/mutants.py                 # every mutant, one after another
    .venv/bin/python tests/mutants.py M3 M7           # some
    -> a table: mutant, what it breaks, the tests run, caught or not, seconds

Each mutant is one textual change to one file of a copy of this checkout (its tracked files
as they are in the working tree), and the tests that should catch it are run in that copy; a
mutant is caught when they fail. Written before the codebase was reorganised (issue 21) and
run again after it, with each change's place updated where its code moved: the suite must
catch the same bugs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    breaks: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS = [
    Mutant("M1", "transforms: layout swaps height and width", "maas/runtime/images.py",
           "ascontiguousarray(batch.transpose(0, 3, 1, 2)",
           "ascontiguousarray(batch.transpose(0, 3, 2, 1)",
           ("tests/unit/test_transforms.py",)),
    Mutant("M2", "transforms: top-k ranks the worst first", "maas/runtime/classify.py",
           "np.argsort(-probs", "np.argsort(probs", ("tests/unit/test_transforms.py",)),
    Mutant("M3", "configs: an image input declares no format", "build/configs.py",
           "format=FORMATS[t.format])", "format=FORMATS[''])",
           ("tests/unit/test_repository.py",)),
    Mutant("M4", "configs: the stream is served by as many instances as asked (its state split)",
           "build/configs.py", "_cpu(1 if step.sequences else opts.count(step))",
           "_cpu(opts.count(step))",
           ("tests/unit/test_repository.py",)),
    Mutant("M5", "batching: split_batch hands each request its neighbour's rows",
           "maas/runtime/step.py", "batch[end - n : end]", "batch[::-1][end - n : end]",
           ("tests/e2e/test_batching.py",)),
    Mutant("M6", "batching: every request of a batch gets the first one's TOP_K",
           "maas/runtime/classify.py",
           "LABELS: lab[:, :k], SCORES: sc[:, :k], CLASS_IDS: cid[:, :k]",
           "LABELS: lab[:, : ks[0]], SCORES: sc[:, : ks[0]], CLASS_IDS: cid[:, : ks[0]]",
           ("tests/e2e/test_batching.py",)),
    Mutant("M7", "health: the watchdog never reloads what died", "maas/health.py",
           '        """Reload what failed; restart the server when reloading did not help."""\n',
           '        """Reload what failed; restart the server when reloading did not help."""\n'
           "        return\n",
           ("tests/e2e/test_self_healing.py::test_a_dead_stub_is_detected_and_reloaded_under_load",)),
    Mutant("M8", "guard: a shape stating more elements than the body passes", "maas/guard.js",
           "if (count > body.length) {", "if (count > body.length * 1e12) {",
           ("tests/e2e/test_fuzz.py::test_the_guard_refuses_what_crashes_a_bare_tritonserver",)),
    Mutant("M9", "rollout: the new version is loaded but the old one kept", "maas/rollout.py",
           "new = _with_versions(config, [to])", "new = _with_versions(config, before)",
           ("tests/e2e/test_fleet.py::test_rollout_and_rollback_under_load_fail_no_request",)),
    Mutant("M10", "forecaster: windows are not centred (loc 0)", "maas/runtime/series.py",
           "loc = float(window.mean())", "loc = 0.0",
           ("tests/unit/test_series.py", "tests/e2e/test_forecaster.py")),
    Mutant("M11", "GAN: the one-hot code names the next digit", "maas/runtime/generate.py",
           "out[:, check_digit(digit, classes)] = 1.0",
           "out[:, (check_digit(digit, classes) + 1) % classes] = 1.0",
           ("tests/unit/test_generate.py", "tests/e2e/test_generative.py")),
    Mutant("M12", "stream: HELD counts one observation short", "maas/runtime/stream.py",
           "held = {i: len(values) for i, values in seen.items()}",
           "held = {i: len(values) - 1 for i, values in seen.items()}",
           ("tests/e2e/test_forecaster.py",)),
]  # fmt: skip


def tracked_copy(into: Path) -> Path:
    """The checkout's tracked files, as they are in the working tree, copied into `into`."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=CHECKOUT, capture_output=True,
                            check=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = CHECKOUT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


def run(mutant: Mutant, root: Path) -> tuple[bool, float]:
    """(caught, seconds): the mutant applied to a copy, its tests run there."""
    copy = tracked_copy(root / mutant.name)
    path = copy / mutant.path
    text = path.read_text()
    if text.count(mutant.old) != 1:
        raise LookupError(f"{mutant.name}: {mutant.old!r} is not once in {mutant.path}")
    path.write_text(text.replace(mutant.old, mutant.new))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutant.tests],
        cwd=copy, capture_output=True, text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    shutil.rmtree(copy, ignore_errors=True)
    return done.returncode != 0, time.monotonic() - started


def main(names: list[str]) -> int:
    chosen = [m for m in MUTANTS if not names or m.name in names]
    for mutant in chosen:  # every change applies to this tree, or nothing runs
        text = (CHECKOUT / mutant.path).read_text()
        if text.count(mutant.old) != 1:
            raise LookupError(f"{mutant.name}: {mutant.old!r} is not once in {mutant.path}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="maas-mutants-") as tmp:
        for mutant in chosen:
            caught, seconds = run(mutant, Path(tmp))
            rows.append((mutant, caught, seconds))
            print(f"{mutant.name}: {'caught' if caught else 'MISSED'} in {seconds:.0f} s "
                  f"({mutant.breaks})", flush=True)  # fmt: skip
    print("\n| mutant | what it breaks | tests | caught | s |\n|---|---|---|---|---|")
    for mutant, caught, seconds in rows:
        tests = ", ".join(t.removeprefix("tests/") for t in mutant.tests)
        print(f"| {mutant.name} | {mutant.breaks} | {tests} | {'yes' if caught else 'NO'} "
              f"| {seconds:.0f} |")  # fmt: skip
    return 0 if all(caught for _, caught, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
