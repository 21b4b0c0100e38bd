"""sweep_perf_analyzer's handling of perf_analyzer's exits, with a stand-in executable that
answers as perf_analyzer r24.10 does (the real one runs in tests/e2e/test_perf_analyzer.py):
an unstable measurement is retried once with windows twice as long; a failed request is not."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from maas.benchmarks.perf_analyzer_inputs import sweep_perf_analyzer

UNSTABLE = "Failed to obtain stable measurement within 10 measurement windows for concurrency 2."
ROW = "Concurrency,Inferences/Second,p99 latency\\n2,1158.99,2661\\n"


def stand_in(tmp_path: Path, first: str) -> Path:
    """An executable that logs its arguments, answers `first` on its first call (exit 2),
    then writes a CSV to the path after -f."""
    exe = tmp_path / "perf_analyzer"
    exe.write_text(
        "#!/bin/bash\n"
        f'echo "$@" >> {tmp_path}/calls\n'
        f'if [ $(wc -l < {tmp_path}/calls) -eq 1 ]; then echo "{first}"; exit 2; fi\n'
        'while [ "$1" != -f ]; do shift; done\n'
        f'printf "{ROW}" > "$2"\n'
    )
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


def test_an_unstable_measurement_is_retried_with_longer_windows(tmp_path):
    exe = stand_in(tmp_path, UNSTABLE)
    rows = sweep_perf_analyzer(str(exe), "floor", "127.0.0.1:1", "zero", "2", window_ms=1000)
    assert rows == [{"Concurrency": "2", "Inferences/Second": "1158.99", "p99 latency": "2661"}]
    calls = (tmp_path / "calls").read_text().splitlines()
    assert [c.split("--measurement-interval ")[1].split()[0] for c in calls] == ["1000", "2000"]


def test_a_failed_request_is_not_retried(tmp_path):
    exe = stand_in(tmp_path, "Thread [0] had error: failed to connect")
    with pytest.raises(RuntimeError, match="had error"):
        sweep_perf_analyzer(str(exe), "floor", "127.0.0.1:1", "zero", "2", window_ms=1000)
    assert len((tmp_path / "calls").read_text().splitlines()) == 1
