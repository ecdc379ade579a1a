"""The cycle collector's settings for a server process (pica/heap.py), run in a fresh interpreter each time: the
settings are process-wide, and the test process must keep its own."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pica.config import ConfigError, load_config

PROBE = """
import gc, sys
from pica import heap
heap.tune(int(sys.argv[1]))
kept = [object() for _ in range(10)]
cycle = []; cycle.append(cycle)
heap.freeze_startup()
print(gc.get_threshold()[0], heap.young_threshold(), gc.get_freeze_count() > 0, gc.get_count()[0] < 700)
"""


def probe(threshold: int) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, str(threshold)], capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout.split()


def test_a_server_raises_the_young_threshold_and_freezes_what_start_up_left() -> None:
    assert probe(20_000) == ["20000", "20000", "True", "True"]


def test_zero_keeps_pythons_own_threshold() -> None:
    assert probe(0)[:2] == ["700", "700"]


def test_a_negative_threshold_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="gc_threshold"):
        load_config(overrides={"gc_threshold": -1})
