"""PostgreSQL store append throughput: appends submitted concurrently to PostgresStore, measured to the last commit.

Every append is a searchable 1:1 message (about 60 bytes of JSON) in one of ``--conversations`` conversations, sent
round-robin so that every lane and every batch mixes conversations; all are submitted at once (the hot path's worst
case: a full queue), then the run waits for every future. The loop is uvloop, as in ``pica serve``. The figure counts
messages acknowledged after COMMIT, with ``synchronous_commit`` as the server has it. Each run uses a schema of its
own, dropped afterwards.

    .venv/bin/python bench/store_pg.py                            # 20,000 appends, 200 conversations
    .venv/bin/python bench/store_pg.py --lanes 8 --max-batch 512  # other settings
    .venv/bin/python bench/store_pg.py --quick                    # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from bench.benchutil import markdown_table
from pica.config import PostgresConfig
from pica.store.base import DirectAppend
from pica.store.postgres import PostgresStore, quote_ident

DEFAULT_DSN = os.environ.get("PICA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


async def run(dsn: str, config: PostgresConfig, messages: int, conversations: int) -> dict[str, Any]:
    store = PostgresStore(dsn, config)
    await store.open()
    try:
        users = [await store.create_user(f"u{i}", "x", 0) for i in range(conversations + 1)]
        hub, peers = users[0], users[1:]
        body = json.dumps({"text": "the quick brown fox jumps over the lazy dog"}).encode()
        requests = [
            DirectAppend(f"d:{hub}:{peers[i % conversations]}", hub, peers[i % conversations], f"m{i}", body, i,
                         "the quick brown fox jumps over the lazy dog")
            for i in range(messages)
        ]
        started = time.perf_counter()
        results = await asyncio.gather(*(store.append_direct(r) for r in requests))
        elapsed = time.perf_counter() - started
    finally:
        await store.close()
    assert len({(r.conversation_id, r.seq) for r in results}) == messages
    return {"messages": messages, "conversations": conversations, "write_lanes": config.write_lanes,
            "max_batch": config.max_batch, "seconds": round(elapsed, 3), "msgs_per_s": round(messages / elapsed)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--lanes", type=int, default=PostgresConfig().write_lanes)
    parser.add_argument("--max-batch", type=int, default=PostgresConfig().max_batch)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a small run (CI smoke test)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.conversations, args.runs = 500, 20, 1

    rows = []
    admin = await asyncpg.connect(args.dsn)
    try:
        for _ in range(args.runs):
            schema = f"bench_{uuid.uuid4().hex}"
            config = PostgresConfig(schema=schema, write_lanes=args.lanes, max_batch=args.max_batch)
            try:
                rows.append(await run(args.dsn, config, args.messages, args.conversations))
            finally:
                await admin.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
    finally:
        await admin.close()
    columns = ["messages", "conversations", "write_lanes", "max_batch", "seconds", "msgs_per_s"]
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
