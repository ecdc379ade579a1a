"""Search latency over many stored messages, and the index's size per message.

Seeds a fresh store (SQLite in a temporary directory, or a schema of its own on PostgreSQL) through the store's own
batch appends, with the document the server computes (``pica.protocol.tokens.document``): a mix of Latin-script
text (English, German, French, Russian words and a long tail of rare words, Zipf-distributed) and Chinese text, a
few messages with files or links, in ``--conversations`` 1:1 conversations between ``--users`` users. Seeding stops
at ``--messages`` or after ``--seed-seconds``, whichever comes first (the figures say how many were stored).

Then, for each query of a fixed set, as the server answers ``GET /v1/search`` minus HTTP: ``Store.search`` for the
200 newest matches the searcher may see, then ``pica.core.search.rank_page`` (ranking and highlights) -- p50, p99
and max over ``--reps`` runs, after one warm-up. The searcher is a member of ``--searcher-share`` of the
conversations. Index size: SQLite's FTS5 tables (``dbstat``), PostgreSQL's ``search`` column plus its GIN index.
Last, the rate of a full rebuild (``Store.reindex_search``, what ``pica search reindex`` and the first open after
migration 0007 do).

    .venv/bin/python bench/search.py                                  # SQLite, up to 1,000,000 messages
    .venv/bin/python bench/search.py --backend postgres --messages 200000
    .venv/bin/python bench/search.py --quick                          # smoke run (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from bench.benchutil import latency_summary_ms, machine_info, markdown_table, run_on_uvloop
from pica.config import PostgresConfig
from pica.core.search import WINDOW, rank_page
from pica.protocol.tokens import document, query_phrases, query_words
from pica.store.base import DirectAppend, Store
from pica.store.postgres import PostgresStore, quote_ident
from pica.store.sqlite import SqliteStore

DEFAULT_DSN = os.environ.get("PICA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

COMMON = [
    "the", "meeting", "report", "is", "ready", "for", "review", "tomorrow", "morning", "please", "check", "numbers",
    "project", "plan", "budget", "die", "Größe", "der", "Bücher", "überrascht", "Straße", "crème", "brûlée", "déjà",
    "français", "встреча", "завтра", "Москва", "отчёт",
]
HAN = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 2500, 3))
"""About 830 Han characters."""
_vocabulary = random.Random(3)
CJK_WORDS = ["".join(_vocabulary.choice(HAN) for _ in range(2 + i % 3)) for i in range(5_000)]
"""Chinese-like words of 2-4 characters; messages pick them Zipf-distributed, so their bigrams recur."""
CHUNK = 5_000


def _texts(rng: random.Random) -> tuple[dict[str, Any], str]:
    """A body and its kind label."""
    roll = rng.random()
    if roll < 0.3:
        text = "".join(CJK_WORDS[int(rng.paretovariate(0.8)) % len(CJK_WORDS)] for _ in range(rng.randint(3, 10)))
    else:
        words = [rng.choice(COMMON) if rng.random() < 0.6 else f"w{int(rng.paretovariate(0.7)) % 200_000}"
                 for _ in range(rng.randint(5, 15))]
        text = " ".join(words)
    if roll > 0.97:
        return {"file": {"id": "f", "name": f"{rng.choice(COMMON)}.pdf", "mime": "application/pdf", "size": 1},
                "text": text}, "file"
    if roll > 0.94:
        return {"text": f"{text} https://example.org/{rng.randint(0, 999)}"}, "link"
    return {"text": text}, "text"


async def seed(store: Store, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(7)
    users = [await store.create_user(f"u{i}", "x", 0) for i in range(args.users)]
    searcher = users[0]
    pairs: list[tuple[int, int]] = []
    mine = max(1, int(args.conversations * args.searcher_share))
    for i in range(args.conversations):
        a = searcher if i < mine else rng.choice(users[1:])
        b = rng.choice([u for u in users[1:4] if u != a] if i < mine else users[1:])
        if a == b:
            b = users[1] if a != users[1] else users[2]
        pairs.append((a, b))
    started, stored, cpu = time.perf_counter(), 0, time.process_time()
    while stored < args.messages and time.perf_counter() - started < args.seed_seconds:
        batch = []
        for i in range(stored, min(stored + CHUNK, args.messages)):
            a, b = pairs[rng.randrange(len(pairs))]
            sender, recipient = (a, b) if rng.random() < 0.5 else (b, a)
            body, _ = _texts(rng)
            low, high = sorted((a, b))
            batch.append(DirectAppend(f"d:{low}:{high}", sender, recipient, f"m{i}", json.dumps(body).encode(),
                                      1_700_000_000_000 + i * 1000, document(body)))
        await asyncio.gather(*(store.append_direct(r) for r in batch))
        stored += len(batch)
    seconds = time.perf_counter() - started
    return {"messages": stored, "seed_seconds": round(seconds, 1), "seed_msgs_per_s": round(stored / seconds),
            "seed_cpu_us_per_msg": round((time.process_time() - cpu) / stored * 1e6, 1), "searcher": searcher,
            "peer": pairs[0][1], "searcher_conversations": mine}


QUERIES: list[tuple[str, str, dict[str, Any]]] = [
    ("rare word", "w1234", {}),
    ("common word", "meeting", {}),
    ("two common words", "report ready", {}),
    ("prefix", "meet", {}),
    ("accented", "grosse bucher", {}),
    ("Cyrillic", "встреча", {}),
    ("CJK bigram", CJK_WORDS[3], {}),
    ("CJK 4 characters", CJK_WORDS[2] + CJK_WORDS[3][:1], {}),
    ("CJK rare bigram", CJK_WORDS[4_000][:2], {}),
    ("CJK 1 character", CJK_WORDS[1][0], {}),
    ("common word, kind=file", "plan", {"kind": "file"}),
    ("common word, one sender", "meeting", {"sender": "peer"}),
]


async def measure(store: Store, seeded: dict[str, Any], reps: int) -> list[dict[str, Any]]:
    rows = []
    for label, query, options in QUERIES:
        kwargs = {k: seeded["peer"] if v == "peer" else v for k, v in options.items()}
        phrases = query_phrases(query_words(query))
        samples, found = [], 0
        for rep in range(reps + 1):
            started = time.perf_counter_ns()
            hits = await store.search(seeded["searcher"], query, conversation_id=None, limit=WINDOW, **kwargs)
            page = rank_page(hits, phrases, 0, 100)
            if rep:  # the first run warms the caches
                samples.append(time.perf_counter_ns() - started)
            found = len(hits)
            assert len(page.hits) == min(100, found)
        rows.append({"query": label, "q": query, "matches (of 200)": found, **latency_summary_ms(samples)})
    return rows


async def index_size(store: Store, backend: str, path: Path | None, schema: str, dsn: str) -> int | None:
    if backend == "sqlite":
        import sqlite3

        assert path is not None
        conn = sqlite3.connect(path)
        try:
            return int(conn.execute("SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'messages_fts%'").fetchone()[0])
        except sqlite3.Error:
            return None
        finally:
            conn.close()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"SET search_path = {quote_ident(schema)}")
        return int(await conn.fetchval("SELECT pg_relation_size('messages_search')"
                                       " + (SELECT coalesce(sum(pg_column_size(search)), 0) FROM messages)"))
    finally:
        await conn.close()


async def run(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pica-bench-search-") as folder:
        path = Path(folder) / "pica.db" if backend == "sqlite" else None
        schema = f"bench_{uuid.uuid4().hex}"
        store: Store = (SqliteStore(path) if path is not None
                        else PostgresStore(args.dsn, PostgresConfig(schema=schema)))
        await store.open()
        try:
            seeded = await seed(store, args)
            rows = await measure(store, seeded, args.reps)
            size = await index_size(store, backend, path, schema, args.dsn)
            started = time.perf_counter()
            assert await store.reindex_search() == seeded["messages"]
            seeded["reindex_msgs_per_s"] = round(seeded["messages"] / (time.perf_counter() - started))
        finally:
            await store.close()
            if path is None:
                admin = await asyncpg.connect(args.dsn)
                await admin.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
                await admin.close()
    per_message = None if size is None else round(size / seeded["messages"], 1)
    return {"backend": backend, **seeded, "index_bytes": size, "index_bytes_per_message": per_message,
            "queries": rows}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--seed-seconds", type=float, default=240.0, help="stop seeding after this long")
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--conversations", type=int, default=5_000)
    parser.add_argument("--searcher-share", type=float, default=0.01,
                        help="the share of conversations the searching user is in")
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="a small run (CI smoke test)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.users, args.conversations, args.reps, args.searcher_share = 3_000, 50, 100, 3, 0.2
    result = await run(args.backend, args)
    print(markdown_table(["backend", "messages", "seed msg/s", "reindex msg/s", "index bytes/message",
                          "searcher conversations"],
                         [[result["backend"], result["messages"], result["seed_msgs_per_s"],
                           result["reindex_msgs_per_s"], result["index_bytes_per_message"],
                           result["searcher_conversations"]]]))
    print()
    columns = ["query", "matches (of 200)", "p50", "p99", "max"]
    print(markdown_table(columns, [[row.get(c) for c in columns] for row in result["queries"]]))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_info(), **result}, indent=2, ensure_ascii=False),
                             encoding="utf-8")


if __name__ == "__main__":
    run_on_uvloop(main())
