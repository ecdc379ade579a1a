"""Store append throughput and CPU: appends submitted concurrently to a store, measured to the last commit.

``--backend sqlite`` (the embedded default, a fresh file in a temporary directory) or ``postgres``. Every append is
a searchable 1:1 message (about 60 bytes of JSON) in one of ``--conversations`` conversations, sent round-robin so
that every lane and every batch mixes conversations; all are submitted at once (the hot path's worst case: a full
queue), then the run waits for every future. The loop is uvloop, as in ``pica serve``. The figure counts
messages acknowledged after COMMIT, with ``synchronous_commit`` as the server has it. Each run uses a schema of its
own, dropped afterwards (PostgreSQL), or a file of its own (SQLite). ``cpu_us_per_msg`` is this process's CPU (the
event loop and, for SQLite, the writer thread) per message; PostgreSQL's own CPU is not in it.

    .venv/bin/python bench/store.py --backend sqlite                       # 20,000 appends, 200 conversations
    .venv/bin/python bench/store.py --backend postgres                     # 4 lanes, batch 256
    .venv/bin/python bench/store.py --backend postgres --lanes 8 --max-batch 512
    .venv/bin/python bench/store.py --quick                                # smoke run of both
    .venv/bin/python bench/store.py --backend sqlite --procs 2             # two writer processes, one file
    .venv/bin/python bench/store.py --backend sqlite --webhooks 1          # a job row per message too

``--procs N`` (SQLite): N processes, each with its own store on the same file, append to the same conversations at
once (as SO_REUSEPORT workers writing one database would); the row gives their total rate and CPU, after checking
that every conversation's seqs are gap-free and every message is stored once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from bench.benchutil import markdown_table
from pica.config import PostgresConfig, SqliteConfig
from pica.store.base import DirectAppend, JobRules, Store, Subscription
from pica.store.postgres import PostgresStore, quote_ident
from pica.store.sqlite import SqliteStore

DEFAULT_DSN = os.environ.get("PICA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


async def run(store: Store, messages: int, conversations: int, webhooks: int = 0) -> dict[str, Any]:
    await store.open()
    if webhooks:  # every message also writes a job row per endpoint, in its transaction (pica/store/jobs.py)
        store.set_job_rules(JobRules(tuple(Subscription(f"e{i}", ("message.created",)) for i in range(webhooks))))
    try:
        users = [await store.create_user(f"u{i}", "x", 0) for i in range(conversations + 1)]
        hub, peers = users[0], users[1:]
        body = json.dumps({"text": "the quick brown fox jumps over the lazy dog"}).encode()
        requests = [
            DirectAppend(f"d:{hub}:{peers[i % conversations]}", hub, peers[i % conversations], f"m{i}", body, i,
                         "the quick brown fox jumps over the lazy dog")
            for i in range(messages)
        ]
        started, cpu = time.perf_counter(), time.process_time()
        results = await asyncio.gather(*(store.append_direct(r) for r in requests))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await store.close()
    assert len({(r.conversation_id, r.seq) for r in results}) == messages
    return {"messages": messages, "conversations": conversations, "seconds": round(elapsed, 3),
            "msgs_per_s": round(messages / elapsed), "cpu_us_per_msg": round(cpu / messages * 1e6, 1)}


def _writer_process(path: str, index: int, messages: int, conversations: int, users: list[int],
                    start: Any, results: Any) -> None:
    async def main() -> None:
        store = SqliteStore(Path(path))
        await store.open()
        hub, peers = users[0], users[1:]
        body = json.dumps({"text": "the quick brown fox jumps over the lazy dog"}).encode()
        requests = [
            DirectAppend(f"d:{hub}:{peers[i % conversations]}", hub, peers[i % conversations], f"p{index}-m{i}", body,
                         i, "the quick brown fox jumps over the lazy dog")
            for i in range(messages)
        ]
        start.wait()
        began, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(store.append_direct(r) for r in requests))
        results.put((time.perf_counter() - began, time.process_time() - cpu))
        await store.close()

    asyncio.run(main())


async def run_processes(procs: int, messages: int, conversations: int) -> dict[str, Any]:
    """``procs`` writer processes appending to one SQLite file at once."""
    with tempfile.TemporaryDirectory(prefix="pica-bench-") as folder:
        path = Path(folder) / "pica.db"
        seed = SqliteStore(path)
        await seed.open()
        users = [await seed.create_user(f"u{i}", "x", 0) for i in range(conversations + 1)]
        await seed.close()
        context = multiprocessing.get_context("spawn")
        start, results = context.Event(), context.Queue()
        workers = [context.Process(target=_writer_process,
                                   args=(str(path), i, messages, conversations, users, start, results))
                   for i in range(procs)]
        for worker in workers:
            worker.start()
        await asyncio.sleep(2)  # every process opened its store
        began = time.perf_counter()
        start.set()
        outcomes = [await asyncio.to_thread(results.get, True, 120) for _ in workers]
        elapsed = time.perf_counter() - began
        for worker in workers:
            worker.join()
        with sqlite3.connect(path) as conn:
            stored = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
            gaps = conn.execute("SELECT count(*) FROM (SELECT conversation_id, count(*) AS n, max(seq) AS top"
                                " FROM messages GROUP BY conversation_id) WHERE n != top").fetchone()[0]
    total = procs * messages
    assert stored == total and gaps == 0, (stored, total, gaps)
    return {"messages": total, "conversations": conversations, "seconds": round(elapsed, 3),
            "msgs_per_s": round(total / elapsed), "cpu_us_per_msg": round(sum(c for _, c in outcomes) / total * 1e6, 1)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], action="append",
                        help="sqlite or postgres (repeat for both; default both)")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--lanes", type=int, default=PostgresConfig().write_lanes)
    parser.add_argument("--max-batch", type=int, help="default: the backend's own default")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--procs", type=int, default=1, help="SQLite: writer processes sharing one file")
    parser.add_argument("--webhooks", type=int, default=0,
                        help="webhook endpoints subscribed to message.created: job rows per message (default 0)")
    parser.add_argument("--quick", action="store_true", help="a small run (CI smoke test)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.conversations, args.runs = 500, 20, 1

    rows = []
    for backend in args.backend or ["sqlite", "postgres"]:
        for _ in range(args.runs):
            if backend == "sqlite" and args.procs > 1:
                row = await run_processes(args.procs, args.messages, args.conversations)
                rows.append({"backend": f"sqlite x{args.procs} processes", "webhooks": 0, "lanes": args.procs,
                             "max_batch": SqliteConfig().max_batch, **row})
                continue
            if backend == "sqlite":
                config = SqliteConfig(**({"max_batch": args.max_batch} if args.max_batch else {}))
                with tempfile.TemporaryDirectory(prefix="pica-bench-") as folder:
                    row = await run(SqliteStore(Path(folder) / "pica.db", config), args.messages, args.conversations,
                                    args.webhooks)
                rows.append({"backend": backend, "webhooks": args.webhooks, "lanes": 1,
                             "max_batch": config.max_batch, **row})
                continue
            schema = f"bench_{uuid.uuid4().hex}"
            pg = PostgresConfig(schema=schema, write_lanes=args.lanes,
                                **({"max_batch": args.max_batch} if args.max_batch else {}))
            admin = await asyncpg.connect(args.dsn)
            try:
                row = await run(PostgresStore(args.dsn, pg), args.messages, args.conversations, args.webhooks)
            finally:
                await admin.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
                await admin.close()
            rows.append({"backend": backend, "webhooks": args.webhooks, "lanes": pg.write_lanes,
                         "max_batch": pg.max_batch, **row})
    columns = ["backend", "webhooks", "messages", "conversations", "lanes", "max_batch", "seconds", "msgs_per_s",
               "cpu_us_per_msg"]
    print(markdown_table(columns, [[r[c] for c in columns] for r in rows]))
    if args.json:
        args.json.write_text(json.dumps({"runs": rows}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    try:
        import uvloop  # the loop `pica serve` runs on
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
