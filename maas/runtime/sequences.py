"""The stream's sequences: each one's last observations, by sequence ID, bounded.

Pure (no Triton): forecaster_stream keeps one table in its stub. At most `capacity`
sequences are held; a START when the table is full evicts the least recently used one, so a
new sequence is admitted at once whatever others abandoned (a START that is also its END, as
the health probes send, is answered without joining the table). An evicted sequence's next
request is refused with the reason (START again), as is one silent over `idle_seconds`.

Sequences belong to an owner (the tenant the front door named, maas.tenants; "" without
one): the same ID from two owners is two sequences, and a START when full evicts the least
recently used sequence of the owner holding the most, so a client that opens thousands
evicts its own before anyone else's.
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
        # (owner, ID) -> [its last observations, last seen]; least recently used first.
        self.held: collections.OrderedDict = collections.OrderedDict()
        # IDs evicted, the latest `capacity` of them, so that their next request says why.
        self.evicted: collections.OrderedDict = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self.held)

    def sweep(self, now: float) -> None:
        """Free the sequences silent over the idle limit (the least recent come first)."""
        while self.held:
            key, (_, seen) = next(iter(self.held.items()))
            if now - seen <= self.idle:
                break
            del self.held[key]

    def _evict(self, starting: str) -> None:
        """The least recently used sequence of the owners holding the most, the one starting
        counted with its new sequence: a client flooding STARTs evicts its own first, and
        among equals (clients of one sequence each) the least recently used goes."""
        counts = collections.Counter(owner for owner, _ in self.held)  # only when full
        counts[starting] += 1
        top = max(counts.values())
        key = next(k for k in self.held if counts[k[0]] == top)
        del self.held[key]
        self.evicted[key] = None
        if len(self.evicted) > self.capacity:
            self.evicted.popitem(last=False)

    def end(self, sequence: Hashable, owner: str = "") -> None:
        self.held.pop((owner, sequence), None)

    def observe(
        self, sequence: Hashable, value: float, start: bool, end: bool, now: float, owner: str = ""
    ) -> np.ndarray:
        """Record `value` in `owner`'s sequence (begun afresh on START, freed after END); the
        sequence's values, oldest first, a copy."""
        if sequence in (0, ""):
            raise SequenceRefused(
                "no sequence ID: send sequence_id (an integer > 0 or a non-empty string), "
                "with START on its first request",
                "no_sequence_id",
            )
        key = (owner, sequence)
        if start and end:  # a sequence of one request (a probe): answered, nothing kept or evicted
            self.held.pop(key, None)
            return np.array([value])
        if start:
            self.held.pop(key, None)
            self.evicted.pop(key, None)
            if len(self.held) >= self.capacity:
                self._evict(owner)
            self.held[key] = [collections.deque(maxlen=self.length), now]
        elif key not in self.held:
            if key in self.evicted:
                raise SequenceRefused(
                    f"sequence {sequence} was evicted: the stream holds {self.capacity} "
                    "sequences at most, and it was the least recently used of the client holding "
                    "the most when another started. Send START again",
                    "evicted",
                )
            raise SequenceRefused(
                f"sequence {sequence} holds nothing here (it ended, or was silent over "
                f"{self.idle:g} s): send START again",
                "no_sequence",
            )
        state = self.held[key]
        self.held.move_to_end(key)
        state[0].append(value)
        state[1] = now
        values = np.array(state[0])
        if end:
            del self.held[key]
        return values
