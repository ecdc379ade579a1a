"""The local web site the link preview tests fetch from (tests/previews/pages.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.previews.pages import Site


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    served = Site()
    await served.start()
    yield served
    await served.stop()
