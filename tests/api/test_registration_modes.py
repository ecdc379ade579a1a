"""Registration modes (``auth.registration``): open, by invite code, closed; and the password policy's refusals."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path
from typing import Literal

from pica.app import PicaServer
from pica.core.accounts import AccountService
from tests.api.test_rate_limits import raw_post
from tests.conftest import PASSWORD, make_config


def name() -> str:
    return f"r{uuid.uuid4().hex[:10]}"


async def start(tmp_path: Path, registration: Literal["open", "invite", "closed"]) -> PicaServer:
    config = make_config(tmp_path)
    server = PicaServer(dataclasses.replace(config, auth=dataclasses.replace(config.auth,
                                                                            registration=registration)))
    await server.start()
    return server


async def test_a_closed_server_refuses_every_registration(tmp_path: Path) -> None:
    server = await start(tmp_path, "closed")
    try:
        url = f"http://127.0.0.1:{server.http_port}"
        status, _, body = await raw_post(url, "/v1/auth/register", {"username": name(), "password": PASSWORD})
        assert (status, body["code"]) == (403, "forbidden") and "closed" in body["message"]
    finally:
        await server.stop()


async def test_an_invite_lets_in_as_many_people_as_it_has_uses(tmp_path: Path) -> None:
    server = await start(tmp_path, "invite")
    try:
        url = f"http://127.0.0.1:{server.http_port}"
        assert server.services is not None
        accounts: AccountService = server.services.accounts
        code = await accounts.create_invite(uses=2, valid_for_s=3600)

        async def register(username: str, invite: str | None) -> tuple[int, str]:
            body = {"username": username, "password": PASSWORD}
            if invite is not None:
                body["invite"] = invite
            status, _, answer = await raw_post(url, "/v1/auth/register", body)
            return status, str(answer.get("code", ""))

        assert await register(name(), None) == (403, "forbidden")
        assert await register(name(), "not-a-code") == (403, "forbidden")
        taken = name()
        assert await register(taken, code) == (201, "")
        assert await register(taken, code) == (409, "username_taken")  # refused: the invite keeps its use
        assert await register(name(), code) == (201, "")
        assert await register(name(), code) == (403, "forbidden")  # both uses spent
        # Two strangers racing for the last use of a fresh code: exactly one gets in.
        last = await accounts.create_invite(uses=1, valid_for_s=3600)
        raced = await asyncio.gather(register(name(), last), register(name(), last))
        assert sorted(raced) == [(201, ""), (403, "forbidden")]
    finally:
        await server.stop()
