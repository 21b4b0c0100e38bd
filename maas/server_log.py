"""What tritonserver prints: kept (the last 2,000 lines) for its error report, and echoed
without the CUDA start-up messages that the CPU build prints on a machine with no GPU."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator

from maas.backends import CPU_ONLY_NOISE

NO_GPU = (
    "[maas] no GPU here: Triton's CUDA start-up messages are expected on a CPU-only machine "
    "and are not shown"
)


class ServerLog:
    def __init__(self, gpu: bool, echo: bool = False, keep: int = 2000):
        self.gpu, self.echo = gpu, echo
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)

    def read(self, stream: Iterable[str]) -> None:
        """Until the stream ends (the server's stdout: a reader thread's loop)."""
        hidden = False
        for line in stream:
            self.lines.append(line.rstrip("\n"))
            if not self.echo:
                continue
            if not self.gpu and CPU_ONLY_NOISE.search(line):
                if not hidden:
                    print(NO_GPU, flush=True)
                    hidden = True
                continue
            print(line, end="", flush=True)

    def errors(self) -> str:
        """Triton's error lines (E...), or the log's tail when there are none; without a GPU,
        not the CUDA messages every CPU-only start prints."""
        lines = [ln for ln in self.lines if self.gpu or not CPU_ONLY_NOISE.search(ln)]
        errors = [ln for ln in lines if ln[:1] == "E" or "error" in ln.lower()]
        return "\n".join(errors or lines[-30:])

    def __iter__(self) -> Iterator[str]:
        return iter(self.lines)

    def __len__(self) -> int:
        return len(self.lines)
