"""``pica backup`` while messages are being sent, ``pica restore`` into another data directory: the restored node
serves every message that was acknowledged before the backup began, in gap-free seq order. One server per database:
a second ``pica serve``, or a restore under a running one, is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pica.client import PicaConnection, PicaHttp
from tests.cli.conftest import pica
from tests.conftest import PASSWORD, ServerProcess, start_server_process


async def test_a_backup_taken_during_a_burst_restores_every_message_acked_before_it(
    tmp_path: Path, server_process_factory: list[ServerProcess]
) -> None:
    server = await asyncio.to_thread(start_server_process, tmp_path / "data")
    server_process_factory.append(server)
    async with PicaHttp(server.url) as http:
        await http.register("alice", PASSWORD)
        bob_id = await http.register("bob", PASSWORD)
        alice = await http.login("alice", PASSWORD)

    acked: list[int] = []  # seqs, in the order their acks arrived
    stop = asyncio.Event()

    async def sender(conn: PicaConnection, lane: int) -> None:
        i = 0
        while not stop.is_set():
            sent = await conn.send(bob_id, {"text": f"lane {lane} #{i}"})
            acked.append(sent.seq)
            i += 1

    backup_file = tmp_path / "pica-backup.db"
    conns = [await PicaConnection.open(server.url, alice.token) for _ in range(4)]
    senders = [asyncio.create_task(sender(conn, lane)) for lane, conn in enumerate(conns)]
    try:
        while len(acked) < 200:
            await asyncio.sleep(0.01)
        before = set(acked)  # acknowledged before the backup began: the backup must hold them all
        done = await asyncio.to_thread(pica, "backup", str(backup_file), data_dir=server.data_dir)
        at_least = len(acked)
        while len(acked) < at_least + 100:  # the burst goes on after the backup, too
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.gather(*senders, return_exceptions=True)
        for conn in conns:
            await conn.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"backed up {server.data_dir / 'pica.db'} to {backup_file}: ")
    assert server.terminate() == 0

    restored_dir = tmp_path / "restored"
    done = await asyncio.to_thread(pica, "restore", str(backup_file), data_dir=restored_dir)
    assert done.returncode == 0, done.stderr
    restored = await asyncio.to_thread(start_server_process, restored_dir)
    server_process_factory.append(restored)
    async with PicaHttp(restored.url) as http:
        await http.login("alice", PASSWORD)  # the accounts came back too
        seqs: list[int] = []
        after = 0
        while page := (await http.history(f"d:{min(alice.user_id, bob_id)}:{max(alice.user_id, bob_id)}",
                                          after_seq=after, limit=100))["messages"]:
            seqs += [m["seq"] for m in page]
            after = seqs[-1]
    assert seqs == list(range(1, len(seqs) + 1))  # a prefix of the conversation, no gap
    assert before <= set(seqs), sorted(before - set(seqs))[:5]
    assert len(seqs) < max(acked)  # and it is a snapshot: what came after it is not there


async def test_one_server_per_database(tmp_path: Path, server_process_factory: list[ServerProcess]) -> None:
    server = await asyncio.to_thread(start_server_process, tmp_path / "data")
    server_process_factory.append(server)
    second = await asyncio.to_thread(pica, "serve", "--port", "0", "--tcp-port", "0", data_dir=server.data_dir)
    database = server.data_dir / "pica.db"
    assert second.returncode == 2
    assert second.stderr == (f"pica: cannot start: database {database} is in use by pica serve (pid "
                             f"{server.proc.pid}): stop it first\n")
    backup_file = tmp_path / "b.db"
    assert (await asyncio.to_thread(pica, "backup", str(backup_file), data_dir=server.data_dir)).returncode == 0
    under_it = await asyncio.to_thread(pica, "restore", str(backup_file), data_dir=server.data_dir)
    assert (under_it.returncode, under_it.stderr) == (
        1, f"pica: database {database} is in use by pica serve (pid {server.proc.pid}): stop it first\n")
    again = await asyncio.to_thread(pica, "backup", str(backup_file), data_dir=server.data_dir)
    assert (again.returncode, again.stderr) == (1, f"pica: {backup_file} exists already: choose a new file\n")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    refused = await asyncio.to_thread(pica, "restore", str(garbage), data_dir=tmp_path / "elsewhere")
    assert refused.returncode == 1 and refused.stderr.startswith(f"pica: {garbage} is not a Pica database")
    # Once the server is stopped, its lock is free: the restore goes through, and the server starts on it again.
    assert server.terminate() == 0
    assert (await asyncio.to_thread(pica, "restore", str(backup_file), data_dir=server.data_dir)).returncode == 0
    server_process_factory.append(await asyncio.to_thread(start_server_process, server.data_dir))
