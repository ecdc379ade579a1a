"""What reaches logs and the console: store and Redis URLs never show their password."""

from __future__ import annotations

import pytest

from pica.logs import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://pica:s3cret@db.internal:5432/pica", "postgresql://pica:***@db.internal:5432/pica"),
        ("redis://:s3cret@redis.internal:6379/0", "redis://:***@redis.internal:6379/0"),
        ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://postgres@127.0.0.1:5432/test"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_passwords_are_masked(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url)
