"""Security events reach the ``pica.audit`` logger as one structured record each, with who and from where, and
never the password that was tried."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from tests.api.test_rate_limits import node_with, raw_post
from tests.conftest import PASSWORD


def events(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [{k: v for k, v in vars(r).items() if k in {"event", "account", "address", "reason", "user_id",
                                                          "username"}}
            for r in caplog.records if r.name == "pica.audit"]


async def test_registrations_failed_logins_and_lockouts_are_audited(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with node_with(tmp_path, login_failures_per_account="2/min") as (_, url):
        name = f"audited{uuid.uuid4().hex[:8]}"
        with caplog.at_level(logging.INFO, logger="pica.audit"):
            await raw_post(url, "/v1/auth/register", {"username": name, "password": PASSWORD})
            for _ in range(3):
                await raw_post(url, "/v1/auth/login", {"username": name, "password": "secret guess 123"})
            await raw_post(url, "/v1/auth/login", {"username": "no-such-user", "password": "another guess"})
    seen = events(caplog)
    assert [e["event"] for e in seen] == ["account_created", "login_failed", "login_failed", "login_refused",
                                          "login_failed"]
    assert seen[0]["username"] == name and seen[0]["address"] == "127.0.0.1"
    assert seen[1] == {"event": "login_failed", "account": name, "address": "127.0.0.1", "reason": "wrong_password"}
    assert seen[3]["reason"] == "rate_limited"
    assert seen[4]["reason"] == "unknown_user"
    text = caplog.text + "".join(str(vars(r)) for r in caplog.records)
    assert "secret guess" not in text and "another guess" not in text and PASSWORD not in text
