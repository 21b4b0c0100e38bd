"""The stream's sequences: each one's last observations, by sequence ID, bounded.

Pure (no Triton): forecaster_stream keeps one table in its stub. At most `capacity`
sequences are held; a START when the table is full evicts the least recently used one, so a
new sequence is admitted at once whatever others abandoned (a START that is also its END, as
the health probes send, is answered without joining the table). An evicted sequence's next
request is refused with the reason (START again), as is one silent over `idle_seconds`.
"""

from __future__ import annotations

import collections
from collections.abc import Hashable

import numpy as np

from .errors import Refused


class SequenceRefused(Refused):
    """A request that continues no sequence this table holds."""


class SequenceTable:
    def __init__(self, length: int, capacity: int, idle_seconds: float):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.length, self.capacity, self.idle = length, capacity, idle_seconds
        # ID -> [its last observations, last seen]; least recently used first.
        self.held: collections.OrderedDict = collections.OrderedDict()
        # IDs evicted, the latest `capacity` of them, so that their next request says why.
        self.evicted: collections.OrderedDict = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self.held)

    def sweep(self, now: float) -> None:
        """Free the sequences silent over the idle limit (the least recent come first)."""
        while self.held:
            sequence, (_, seen) = next(iter(self.held.items()))
            if now - seen <= self.idle:
                break
            del self.held[sequence]

    def end(self, sequence: Hashable) -> None:
        self.held.pop(sequence, None)

    def observe(
        self, sequence: Hashable, value: float, start: bool, end: bool, now: float
    ) -> np.ndarray:
        """Record `value` in its sequence (begun afresh on START, freed after END); the
        sequence's values, oldest first, a copy."""
        if sequence in (0, ""):
            raise SequenceRefused(
                "no sequence ID: send sequence_id (an integer > 0 or a non-empty string), "
                "with START on its first request",
                "no_sequence_id",
            )
        if start and end:  # a sequence of one request (a probe): answered, nothing kept or evicted
            self.held.pop(sequence, None)
            return np.array([value])
        if start:
            self.held.pop(sequence, None)
            self.evicted.pop(sequence, None)
            if len(self.held) >= self.capacity:
                old, _ = self.held.popitem(last=False)
                self.evicted[old] = None
                if len(self.evicted) > self.capacity:
                    self.evicted.popitem(last=False)
            self.held[sequence] = [collections.deque(maxlen=self.length), now]
        elif sequence not in self.held:
            if sequence in self.evicted:
                raise SequenceRefused(
                    f"sequence {sequence} was evicted: the stream holds {self.capacity} "
                    "sequences at most, and it was the least recently used when another "
                    "started. Send START again",
                    "evicted",
                )
            raise SequenceRefused(
                f"sequence {sequence} holds nothing here (it ended, or was silent over "
                f"{self.idle:g} s): send START again",
                "no_sequence",
            )
        state = self.held[sequence]
        self.held.move_to_end(sequence)
        state[0].append(value)
        state[1] = now
        values = np.array(state[0])
        if end:
            del self.held[sequence]
        return values
