"""``pica migrate``: bring a store's schema up to date and exit (the PostgreSQL variant runs in tests/store)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path


def pica(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pica", *args], capture_output=True, text=True, timeout=60)


def test_migrate_creates_the_embedded_schema_once(tmp_path: Path) -> None:
    first = pica("migrate", "--data-dir", str(tmp_path / "data"))
    assert first.returncode == 0, first.stderr
    db = tmp_path / "data" / "pica.db"
    with sqlite3.connect(db) as conn:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert version >= 3 and {"users", "messages", "groups"} <= tables
    again = pica("migrate", "--store", f"sqlite://{db}")
    assert again.returncode == 0, again.stderr
    assert f"version {version}" in again.stderr


def test_migrate_refuses_an_unknown_store() -> None:
    result = pica("migrate", "--store", "mysql://somewhere/db")
    assert result.returncode == 2
    assert "store: expected sqlite:///path or postgresql://" in result.stderr
