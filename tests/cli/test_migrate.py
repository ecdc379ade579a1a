"""``pica migrate``: bring a store's schema up to date and exit (the PostgreSQL variant runs in tests/store)."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from pica.store.schema import SQLITE, bundled


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


def test_migrate_prints_one_line_per_migration_then_the_version(tmp_path: Path) -> None:
    first = pica("migrate", "--data-dir", str(tmp_path / "data"))
    assert first.returncode == 0, first.stderr
    steps = bundled().of(SQLITE)
    lines = first.stderr.splitlines()
    for step, line in zip(steps, lines, strict=False):
        assert re.fullmatch(rf"pica: applied migration {step.version:04d} {step.name} in \d+ ms", line), line
    assert lines[len(steps):] == [f"pica: store schema at version {len(steps)} ({tmp_path / 'data'})"]
    again = pica("migrate", "--data-dir", str(tmp_path / "data"))
    assert again.stderr.splitlines() == [
        f"pica: store schema at version {len(steps)}, no migration pending ({tmp_path / 'data'})"]


def test_a_changed_migration_stops_migrate_and_serve_with_a_message(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert pica("migrate", "--data-dir", str(data)).returncode == 0
    with sqlite3.connect(data / "pica.db") as conn:
        conn.execute("UPDATE schema_migrations SET checksum = ? WHERE version = 2", ("0" * 64,))
    migrate = pica("migrate", "--data-dir", str(data))
    serve = pica("serve", "--data-dir", str(data), "--port", "0", "--tcp-port", "-1")
    for result, prefix in ((migrate, "pica: migration failed: "), (serve, "pica: cannot start: ")):
        assert result.returncode == 1, result.stderr
        assert prefix in result.stderr
        assert "migration 0002_groups_contacts (pica/store/migrations/0002_groups_contacts.sqlite.sql)" in (
            result.stderr)
        assert "Traceback" not in result.stderr


def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert pica("migrate", "--data-dir", str(data)).returncode == 0
    with sqlite3.connect(data / "pica.db") as conn:
        conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (99, 'future', ?)", ("f" * 64,))
    result = pica("migrate", "--data-dir", str(data))
    assert result.returncode == 1
    assert "at schema version 99, newer than this Pica knows" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_refuses_an_unknown_store() -> None:
    result = pica("migrate", "--store", "mysql://somewhere/db")
    assert result.returncode == 2
    assert "store: expected sqlite:///path or postgresql://" in result.stderr
