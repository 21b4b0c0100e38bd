"""The root of maas's errors, and the one every Python step turns a request down with.

MaasError                  anything maas raises on purpose (the CLI turns it into a message)
└── Refused                a request's input a step turns down (INVALID_ARG), e.g.
    ├── ImageError         not a usable image (runtime.images)
    ├── SeriesError        a history or horizon the forecaster cannot use (runtime.series)
    └── GenerationError    a seed, count or digit out of range (runtime.generate)
"""

from __future__ import annotations


class MaasError(Exception):
    """Something maas refuses or cannot do, said in words for the person who asked."""


class Refused(MaasError, ValueError):
    """An input a Python step refuses with INVALID_ARG; the message says why, in words for the
    caller, and `reason` says it in one word for the metrics (messages hold request data and
    would give Prometheus a new series per request)."""

    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason
