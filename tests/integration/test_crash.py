"""kill -9 of the server while 20 clients send: after a restart every acked message is stored exactly once, and
each conversation's seqs run 1..n with no gap. Retrying the unacknowledged sends with their ids then stores each
of them once too."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from pica.client import Login, PicaConnection, ServerClosed
from pica.client.connection import RequestFailed
from tests.conftest import ServerProcess, new_user, start_server_process

CLIENTS = 20
WINDOW = 8


async def send_until_cut(conn: PicaConnection, to: int, prefix: str, acked: dict[str, tuple[str, int]],
                         attempted: list[str]) -> None:
    counter = 0

    async def one(cmid: str) -> None:
        ack = await conn.send(to, {"text": cmid}, client_msg_id=cmid)
        acked[cmid] = (ack.conversation_id, ack.seq)

    with contextlib.suppress(ServerClosed, RequestFailed, ConnectionError, asyncio.TimeoutError, OSError):
        while True:
            batch = []
            for _ in range(WINDOW):
                cmid = f"{prefix}-{counter}"
                counter += 1
                attempted.append(cmid)
                batch.append(one(cmid))
            results = await asyncio.gather(*batch, return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r


def stored(db: Path) -> list[tuple[str, int, str]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT conversation_id, seq, client_msg_id FROM messages ORDER BY 1, 2").fetchall()
    finally:
        conn.close()


def check_log(rows: list[tuple[str, int, str]]) -> None:
    by_conversation: dict[str, list[int]] = defaultdict(list)
    for conversation_id, seq, _ in rows:
        by_conversation[conversation_id].append(seq)
    for conversation_id, seqs in by_conversation.items():
        assert seqs == list(range(1, len(seqs) + 1)), f"gap or duplicate seq in {conversation_id}"
    duplicates = [cmid for cmid, n in Counter(r[2] for r in rows).items() if n > 1]
    assert not duplicates, f"client ids stored twice: {duplicates[:5]}"


@pytest.mark.slow
async def test_kill_9_loses_no_acked_message(tmp_path: Path, server_process_factory: list[ServerProcess]) -> None:
    data = tmp_path / "data"
    server = start_server_process(data)
    server_process_factory.append(server)
    users: list[Login] = list(await asyncio.gather(*(new_user(server.url, f"c{i}_") for i in range(CLIENTS))))

    conns = [
        await PicaConnection.open(server.url, u.token, transport="tcp" if i % 2 else "ws", tcp_port=server.tcp_port)
        for i, u in enumerate(users)
    ]
    acked: dict[str, tuple[str, int]] = {}
    attempted: list[str] = []
    senders = [
        asyncio.create_task(send_until_cut(c, users[(i + 1) % CLIENTS].user_id, f"u{i}", acked, attempted))
        for i, c in enumerate(conns)
    ]
    deadline = time.monotonic() + 20
    while len(acked) < 2_000 and time.monotonic() < deadline:  # let a real load build up first
        await asyncio.sleep(0.05)
    server.kill9()
    await asyncio.wait_for(asyncio.gather(*senders), 30)
    for c in conns:
        await c.close()
    assert len(acked) >= 500, "too little load before the kill to prove anything"

    rows = stored(data / "pica.db")
    check_log(rows)
    where = {cmid: (conversation_id, seq) for conversation_id, seq, cmid in rows}
    lost = [cmid for cmid in acked if cmid not in where]
    assert not lost, f"{len(lost)} acked messages lost, e.g. {lost[:5]}"
    moved = [cmid for cmid, position in acked.items() if where[cmid] != position]
    assert not moved, f"acked messages stored at another seq: {moved[:5]}"

    # Restart and retry every attempted id, as a client does after reconnecting: nothing doubles.
    restarted = start_server_process(data)
    server_process_factory.append(restarted)
    retried = 0
    for i, u in enumerate(users):
        conn = await PicaConnection.open(restarted.url, u.token, transport="tcp", tcp_port=restarted.tcp_port)
        async with conn:
            mine = [cmid for cmid in attempted if cmid.startswith(f"u{i}-")]
            acks = await asyncio.gather(
                *(conn.send(users[(i + 1) % CLIENTS].user_id, {"text": cmid}, client_msg_id=cmid) for cmid in mine)
            )
            for cmid, ack in zip(mine, acks, strict=True):
                if cmid in where:
                    assert ack.duplicate and (ack.conversation_id, ack.seq) == where[cmid]
                else:
                    retried += 1
    assert restarted.terminate() == 0
    final = stored(data / "pica.db")
    check_log(final)
    assert {r[2] for r in final} == set(attempted)
    assert len(final) == len(attempted)
