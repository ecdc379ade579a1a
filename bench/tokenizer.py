"""The per-message cost of search indexing on the send path: ``tokens.document(body)``, in µs of CPU per message.

A send computes its message's search document on the event loop when it is validated (pica/core/chat.py), so this
cost is paid per message by the process that serves connections. Texts are drawn at random, so that caches only
help as much as real chat (words recur; sentences do not).

    .venv/bin/python bench/tokenizer.py            # 20,000 messages per kind of text
    .venv/bin/python bench/tokenizer.py --quick    # smoke run (CI)
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

from pica.protocol.tokens import document

HAN = [chr(code) for code in range(0x4E00, 0x4E00 + 3000)]
WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "while", "zoë", "écrit", "déjà", "une",
         "réponse", "à", "côté", "du", "café", "ok", "meeting", "tomorrow", "Straße", "Ёлка")
FULLWIDTH_COMMA = "\uff0c"


def kinds(rng: random.Random) -> dict[str, Callable[[], str]]:
    return {
        "ASCII, 13 characters (the chat bench's text)": lambda: "bench message",
        "Latin with accents, 100 bytes": lambda: " ".join(rng.choice(WORDS) for _ in range(20))[:100],
        "Chinese, 14 characters": lambda: "".join(rng.choice(HAN) for _ in range(14)),
        "Chinese, 40 characters with commas": lambda: FULLWIDTH_COMMA.join(
            "".join(rng.choice(HAN) for _ in range(9)) for _ in range(4)),
    }


def measure(make: Callable[[], str], count: int) -> float:
    bodies = [{"text": make()} for _ in range(count)]
    start = time.process_time()
    for body in bodies:
        document(body)
    return (time.process_time() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=20_000, help="messages per kind of text")
    parser.add_argument("--quick", action="store_true", help="a small run (CI smoke test)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    count = 500 if args.quick else args.count
    rows = [{"text": name, "us_per_message": round(measure(make, count), 1)}
            for name, make in kinds(random.Random(1)).items()]
    print(f"| text ({count:,} messages each) | document() µs of CPU per message |")
    print("|---|---|")
    for row in rows:
        print(f"| {row['text']} | {row['us_per_message']} |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}), encoding="utf-8")


if __name__ == "__main__":
    main()
