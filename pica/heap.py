"""The garbage collector, tuned for a long-running server process.

CPython's cycle collector runs a young collection every 700 net allocations of container objects, and a full one
once enough survivors have piled up. A busy node holds thousands of sends in flight (each a few dicts, a future,
callbacks) across a store round trip, so they outlive young collections, are promoted, and die in the old
generation: measured at saturation (``bench/chat.py``), full collections found nothing to free yet took about 45 ms
each and, with the young ones, a fifth of the event loop's CPU, and their pauses stood in the ack latency's tail.

Two changes, the ones Instagram's engineering blog ("Dismissing Python Garbage Collection at Instagram", 2017) and
the :func:`gc.freeze` documentation describe: everything alive once the process has started (modules, the
configuration, caches) is moved out of the collector's sight, and the young threshold is raised so that a
collection runs about once per batch of sends instead of several times within one; reference counting still frees
almost everything, and cycles are still collected, only less often.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_startup", "tune", "young_threshold"]


def tune(young_threshold: int) -> None:
    """Set the young generation's threshold; 0 leaves Python's default (700)."""
    if young_threshold > 0:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)


def young_threshold() -> int:
    """The current young threshold, for a child process that should run with the same setting."""
    return gc.get_threshold()[0]


def freeze_startup() -> None:
    """Collect once, then keep what survived start-up out of every later collection (:func:`gc.freeze`)."""
    gc.collect()
    gc.freeze()
