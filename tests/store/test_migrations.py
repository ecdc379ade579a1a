"""The migration sequence (pica/store/schema.py) and its two drivers.

- The pure module: files paired by version and dialect, checksums, what is pending, what is refused.
- The drivers on real databases: checksums recorded, a changed file or a newer database refused, a new pair of files
  applied.
- Upgrades: a SQLite file and a PostgreSQL schema made by the previous release (``git archive`` of
  ``PREVIOUS_RELEASE``, run in a subprocess with ``PYTHONPATH`` at that tree) are opened by the current code: every
  message, cursor and membership survives, and the store goes on with gap-free seqs.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from pica.errors import MigrationError
from pica.store import postgres as pg
from pica.store import sqlite_writer as sq
from pica.store.base import DirectAppend, GroupAppend, ReadCursors, Store
from pica.store.postgres import PostgresStore
from pica.store.schema import (
    FOLDER,
    POSTGRES,
    SQLITE,
    Applied,
    Migration,
    Migrations,
    bundled,
    checksum,
    legacy_sqlite_rows,
    load,
    plan,
)
from pica.store.sqlite import SqliteStore
from tests.store import legacy_data
from tests.store.conftest import PG_DSN, connect_admin, pg_config, pg_store, temporary_schema

ROOT = Path(__file__).resolve().parents[2]
PREVIOUS_RELEASE = "2c7120d"
"""The last commit with separate SQLite and PostgreSQL migration trees and no checksums."""

RELEASED = {
    # sha256 of every released migration file. A database records these; a file that changes after release is
    # refused at open, so the change belongs in a new migration instead.
    "0001_init.sqlite.sql": "2eabd8f0dd8f52057083e9b0aa538d643273134bdb6e654868a73496741421d6",
    "0002_groups_contacts.sqlite.sql": "1c09cd4b5b9f3c27794660337d5145f5234454af5c6cd80600156d139b881861",
    "0003_bans.sqlite.sql": "9ed57ec743a897e3c2020a6e5dc950dfd992989cf6f5e9a28c4ee61dda3083b5",
    "0001_init.postgres.sql": "ce754ef4edaaf4a66f2cd0c049e94abfec17b688581caf68eacebc7997be0cf4",
    "0002_groups_contacts.postgres.sql": "daef1c3e447bc5628d91efd6ae16a8695ca48b7423f65f592523fa01206a2a12",
    "0003_bans.postgres.sql": "f11836bc6e6733138c7cf7c76c4ef965c15ac59a4f8e469675c7a471aee72355",
    "0004_invites.sqlite.sql": "a838093fa5c83dd2dd663ad085e41612af402fb79d9b5d6d8afcf51a8eecaa4d",
    "0004_invites.postgres.sql": "fabd06b9744a9f5e024ba47eae6acdb6fef580f92d3daac49b35a6f4b08b7fd0",
    "0005_sessions.sqlite.sql": "b16947753bd0d247e446ce8e3747a199ab7cb59b7a90c96d76efcec7e3b35da1",
    "0005_sessions.postgres.sql": "75adf06050bdde7832d77f24a32be396bbeb0d77285d9e4310a1758370adc526",
    "0006_privacy.sqlite.sql": "3d3ed92ddadd6108956925045838bde90089cdecfea63150b8ae720d50a3d41c",
    "0006_privacy.postgres.sql": "33702745fb3b9f7ea01b8bd68e8408eab1ceb25d20ddf2c9b1980f68e2cb73c3",
    "0008_jobs.sqlite.sql": "534be4a72cbf7d861bb293ec67c5f0f7f32eb1a9a1a242ef2ebf25fa00f33afe",
    "0008_jobs.postgres.sql": "b7cdf00617620e3064caa988e91580d29fc073ec781a99517218f0dc8521926a",
    "0009_media.sqlite.sql": "8622b84ae684a492e811c0508a2ff4704f6fa5b255e8547d227ba2d229309ce7",
    "0009_media.postgres.sql": "9b1f334fdc60c10c5af42283e8540361a2d3c618469f13f28540b6c300236e1f",
    "0010_bots.sqlite.sql": "cd78458b0777fd59acdf94838cbfd4ab880d9b7c53f646968d837f4703f56025",
    "0010_bots.postgres.sql": "3742b1bc931310a286ed0c4dd2b8cdadc7a88c7c33605a924c6b63e4a4a1cf3d",
    "0011_push.sqlite.sql": "0704a7e53431e7faa76ae5bae0cd454965e225a381b6a86a8d41d7f2f7852172",
    "0011_push.postgres.sql": "7b6c182890c3ac665171ba642456fa42d2b31b83c24a91f231edb142fa3fe14c",
    "0012_admin.sqlite.sql": "6fd430f7588971893f90ca3a78495856b19f8f30163f0fa4dded54429bc17f22",
    "0012_admin.postgres.sql": "b49e6bc71c599eab810a1867f0fb62709ffeb32b55bb46cb06061ed6a32b006a",
}
NEXT = bundled().latest + 1
"""The version a later release adds next."""
NOTES = {  # a migration as a later release adds it: one file per dialect
    f"{NEXT:04d}_notes.sqlite.sql":
        b"-- notes\nCREATE TABLE notes (note_id INTEGER PRIMARY KEY, text TEXT NOT NULL);\n",
    f"{NEXT:04d}_notes.postgres.sql":
        b"-- notes\nCREATE TABLE notes (note_id BIGINT PRIMARY KEY, text TEXT NOT NULL);\n",
}


def package_files() -> list[tuple[str, bytes]]:
    folder = resources.files("pica.store").joinpath("migrations")
    return [(entry.name, entry.read_bytes()) for entry in folder.iterdir() if entry.is_file()]


def files(*names: str, sql: bytes = b"SELECT 1;\n") -> list[tuple[str, bytes]]:
    return [(name, sql) for name in names]


def pair(version: int, name: str) -> list[tuple[str, bytes]]:
    return files(f"{version:04d}_{name}.sqlite.sql", f"{version:04d}_{name}.postgres.sql")


def three() -> Migrations:
    return load(pair(1, "init") + pair(2, "more") + pair(3, "bans"))


# ------------------------------------------------------------------------------------------------ the sequence


def test_the_bundled_sequence_pairs_every_version_and_keeps_released_files_unchanged() -> None:
    sequence = bundled()
    assert sequence.latest >= 3
    for version in range(1, sequence.latest + 1):
        sqlite_step, postgres_step = sequence.of(SQLITE)[version - 1], sequence.of(POSTGRES)[version - 1]
        assert (sqlite_step.version, postgres_step.version) == (version, version)
        assert sqlite_step.name == postgres_step.name
    by_file = {m.filename: m.checksum for d in (SQLITE, POSTGRES) for m in sequence.of(d)}
    assert {name: by_file[name] for name in RELEASED} == RELEASED
    assert [m.name for m in sequence.of(SQLITE)[:3]] == ["init", "groups_contacts", "bans"]


def test_the_released_files_are_those_of_the_previous_release(old_release: Path) -> None:
    """Legacy databases are adopted with these checksums: they must be the bytes those releases applied."""
    old = old_release / "pica" / "store" / "migrations"
    assert checksum((old / "sqlite" / "0001_init.sql").read_bytes()) == RELEASED["0001_init.sqlite.sql"]
    assert checksum((old / "sqlite" / "0002_groups_contacts.sql").read_bytes()) == RELEASED[
        "0002_groups_contacts.sqlite.sql"]
    assert checksum((old / "sqlite" / "0003_bans.sql").read_bytes()) == RELEASED["0003_bans.sqlite.sql"]
    assert checksum((old / "postgresql" / "0001_init.sql").read_bytes()) == RELEASED["0001_init.postgres.sql"]


def test_postgres_0002_and_0003_are_commented_no_ops() -> None:
    for step in bundled().of(POSTGRES)[1:3]:
        assert "No-op for PostgreSQL" in step.sql and "whole model" in step.sql
        code = [line for line in step.sql.splitlines() if line.strip() and not line.startswith("--")]
        assert code == ["SELECT 1;"]


def test_load_pairs_files_and_records_their_checksums() -> None:
    sequence = load([*pair(1, "init"), ("README", b"ignored"), ("0002_x.sqlite.sql", b"A;"),
                     ("0002_x.postgres.sql", b"B;")])
    assert sequence.latest == 2
    step = sequence.of(POSTGRES)[1]
    assert step == Migration(2, "x", POSTGRES, "0002_x.postgres.sql", "B;", checksum(b"B;"))
    assert step.path == f"{FOLDER}/0002_x.postgres.sql" and step.label == "0002_x"
    assert sequence.of(SQLITE)[1].checksum != step.checksum


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_a_migration_for_one_dialect_only_is_refused_at_load(dialect: str) -> None:
    with pytest.raises(MigrationError) as caught:
        load([*pair(1, "init"), (f"0002_notes.{dialect}.sql", b"SELECT 1;")])
    other = "postgres" if dialect == "sqlite" else "sqlite"
    assert f"migration 0002 exists for {dialect} only" in str(caught.value)
    assert f"pica/store/migrations/0002_notes.{other}.sql" in str(caught.value)


@pytest.mark.parametrize("name", ["0004_notes.postgresql.sql", "4_notes.sqlite.sql", "0004-notes.sqlite.sql",
                                  "0004_Notes.sqlite.sql", "0004_notes.sql"])
def test_a_misnamed_sql_file_is_refused_not_ignored(name: str) -> None:
    with pytest.raises(MigrationError, match="is misnamed"):
        load([*pair(1, "init"), (name, b"SELECT 1;")])


def test_load_refuses_gaps_two_names_and_duplicates() -> None:
    with pytest.raises(MigrationError, match="0003 found, 0002 missing"):
        load(pair(1, "init") + pair(3, "bans"))
    with pytest.raises(MigrationError, match="different names"):
        load([*pair(1, "init"), ("0002_a.sqlite.sql", b""), ("0002_b.postgres.sql", b"")])
    with pytest.raises(MigrationError, match="two sqlite files"):
        load([*pair(1, "init"), ("0001_other.sqlite.sql", b"")])
    with pytest.raises(MigrationError, match="no migration files"):
        load([("README", b"")])
    with pytest.raises(MigrationError, match="not UTF-8"):
        load(files("0001_init.sqlite.sql", "0001_init.postgres.sql", sql=b"\xff"))


def test_plan_for_a_new_database_applies_everything() -> None:
    todo = plan(three(), SQLITE, [])
    assert (todo.version, todo.adopt, [m.version for m in todo.pending]) == (0, (), [1, 2, 3])


def test_plan_with_matching_checksums_has_nothing_to_do() -> None:
    sequence = three()
    applied = [Applied(m.version, m.checksum) for m in sequence.of(POSTGRES)[:2]]
    todo = plan(sequence, POSTGRES, applied)
    assert (todo.version, todo.adopt, [m.version for m in todo.pending]) == (2, (), [3])


def test_a_changed_applied_migration_is_refused_naming_version_and_file() -> None:
    sequence = three()
    applied = [Applied(m.version, m.checksum) for m in sequence.of(SQLITE)]
    applied[1] = Applied(2, "0" * 64)
    with pytest.raises(MigrationError) as caught:
        plan(sequence, SQLITE, applied)
    message = str(caught.value)
    assert "migration 0002_more (pica/store/migrations/0002_more.sqlite.sql) differs" in message
    assert "0" * 64 in message and sequence.of(SQLITE)[1].checksum in message


def test_checksums_are_per_dialect() -> None:
    sequence = load([("0001_init.sqlite.sql", b"A;"), ("0001_init.postgres.sql", b"B;")])
    with pytest.raises(MigrationError, match=r"0001_init\.postgres\.sql"):
        plan(sequence, POSTGRES, [Applied(1, checksum(b"A;"))])
    assert plan(sequence, SQLITE, [Applied(1, checksum(b"A;"))]).pending == ()


def test_a_database_newer_than_the_code_is_refused() -> None:
    sequence = three()
    applied = [Applied(m.version, m.checksum) for m in sequence.of(SQLITE)] + [Applied(4, "f" * 64)]
    with pytest.raises(MigrationError, match=r"at schema version 4, newer than this Pica knows .*0003_bans"):
        plan(sequence, SQLITE, applied)


def test_a_gap_in_the_recorded_versions_is_refused() -> None:
    sequence = three()
    with pytest.raises(MigrationError, match=r"versions \[1, 3\]"):
        plan(sequence, SQLITE, [Applied(1, sequence.of(SQLITE)[0].checksum), Applied(3, None)])


def test_legacy_versions_are_adopted_and_only_they() -> None:
    sequence = load(pair(1, "init") + pair(2, "more") + pair(3, "bans") + pair(4, "notes"))
    todo = plan(sequence, SQLITE, legacy_sqlite_rows(2))
    assert ([m.version for m in todo.adopt], [m.version for m in todo.pending]) == ([1, 2], [3, 4])
    todo = plan(sequence, POSTGRES, [Applied(1, None)])
    assert ([m.version for m in todo.adopt], [m.version for m in todo.pending]) == ([1], [2, 3, 4])
    with pytest.raises(MigrationError, match=r"0002_more .*without a checksum.*up to 1"):
        plan(sequence, POSTGRES, [Applied(1, None), Applied(2, None)])
    with pytest.raises(MigrationError, match=r"0004_notes .*without a checksum.*up to 3"):
        plan(sequence, SQLITE, legacy_sqlite_rows(4))
    assert legacy_sqlite_rows(0) == []


# ------------------------------------------------------------------------------------------------ SQLite driver


def sqlite_rows(path: Path, query: str) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def sqlite_migrate(path: Path, migrations: Migrations | None = None) -> tuple[int, list[tuple[int, str]]]:
    applied: list[tuple[int, str]] = []
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        version = sq.migrate(conn, lambda step, seconds: applied.append((step.version, step.filename)), migrations)
    finally:
        conn.close()
    return version, applied


def recorded(sequence: Migrations, dialect: str) -> list[tuple[int, str, str]]:
    return [(m.version, m.name, m.checksum) for m in sequence.of(dialect)]


def test_sqlite_records_each_migration_with_its_checksum(tmp_path: Path) -> None:
    db = tmp_path / "pica.db"
    version, applied = sqlite_migrate(db)
    assert version == bundled().latest
    assert applied == [(m.version, m.filename) for m in bundled().of(SQLITE)]
    assert sqlite_rows(db, "SELECT version, name, checksum FROM schema_migrations ORDER BY version") == recorded(
        bundled(), SQLITE)
    assert sqlite_rows(db, "PRAGMA user_version") == [(version,)]
    assert sqlite_migrate(db) == (version, [])


async def test_sqlite_store_refuses_a_changed_migration(tmp_path: Path) -> None:
    db = tmp_path / "pica.db"
    sqlite_migrate(db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = ? WHERE version = 2", ("0" * 64,))
    with pytest.raises(MigrationError, match=r"0002_groups_contacts\.sqlite\.sql"):
        sqlite_migrate(db)
    store = SqliteStore(db)  # the writer thread hands the refusal to open() as it is
    with pytest.raises(MigrationError, match=r"migration 0002_groups_contacts \(pica/store/migrations/"):
        await store.open()
    await store.close()


def test_sqlite_applies_a_new_pair_of_files_and_refuses_to_go_back(tmp_path: Path) -> None:
    db = tmp_path / "pica.db"
    sqlite_migrate(db)
    later = load(package_files() + list(NOTES.items()))
    version, applied = sqlite_migrate(db, later)
    assert (version, applied) == (later.latest, [(NEXT, f"{NEXT:04d}_notes.sqlite.sql")])
    assert sqlite_rows(db, "SELECT count(*) FROM notes") == [(0,)]
    assert sqlite_rows(db, f"SELECT checksum FROM schema_migrations WHERE version = {NEXT}") == [
        (checksum(NOTES[f"{NEXT:04d}_notes.sqlite.sql"]),)]
    with pytest.raises(MigrationError, match=f"at schema version {NEXT}, newer than this Pica knows"):
        sqlite_migrate(db)


def test_a_failing_sqlite_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    db = tmp_path / "pica.db"
    sqlite_migrate(db)
    broken = load([*package_files(), (f"{NEXT:04d}_bad.sqlite.sql", b"CREATE TABLE ok (x INTEGER);\nNOT SQL;\n"),
                   (f"{NEXT:04d}_bad.postgres.sql", b"SELECT 1;\n")])
    with pytest.raises(sqlite3.OperationalError):
        sqlite_migrate(db, broken)
    assert sqlite_rows(db, "SELECT max(version) FROM schema_migrations") == [(NEXT - 1,)]
    assert sqlite_rows(db, "SELECT count(*) FROM sqlite_master WHERE name = 'ok'") == [(0,)]


@pytest.mark.parametrize("legacy_version", [1, 2])
def test_sqlite_files_of_earlier_releases_are_adopted_and_completed(
    tmp_path: Path, old_release: Path, legacy_version: int
) -> None:
    """Releases before 0003 left files at user_version 1 or 2: built here from the previous release's own files."""
    db = tmp_path / "pica.db"
    old = sorted((old_release / "pica" / "store" / "migrations" / "sqlite").glob("*.sql"))[:legacy_version]
    conn = sqlite3.connect(db, isolation_level=None)
    for file in old:
        for statement in file.read_text().split(";\n"):
            if statement.strip():
                conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {legacy_version}")
    conn.execute("INSERT INTO users (username, password_hash, created_at) VALUES ('old', 'h', 1)")
    conn.close()
    version, applied = sqlite_migrate(db)
    assert version == bundled().latest
    assert [v for v, _ in applied] == list(range(legacy_version + 1, version + 1))
    assert sqlite_rows(db, "SELECT version, name, checksum FROM schema_migrations ORDER BY version") == recorded(
        bundled(), SQLITE)
    assert sqlite_rows(db, "SELECT user_id, username, banned FROM users") == [(1, "old", 0)]


# ------------------------------------------------------------------------------------------------ PostgreSQL driver


async def pg_rows(schema: str, query: str, *args: Any) -> list[Any]:
    admin = await connect_admin()
    try:
        await admin.execute(f'SET search_path = "{schema}"')
        return [tuple(row) for row in await admin.fetch(query, *args)]
    finally:
        await admin.close()


async def pg_migrate(schema: str, migrations: Migrations | None = None) -> tuple[int, list[tuple[int, str]]]:
    applied: list[tuple[int, str]] = []
    version = await pg.migrate(PG_DSN, pg_config(schema),
                               lambda step, seconds: applied.append((step.version, step.filename)), migrations)
    return version, applied


async def test_postgres_records_each_migration_with_its_checksum(pg_schema: str) -> None:
    version, applied = await pg_migrate(pg_schema)
    assert version == bundled().latest
    assert applied == [(m.version, m.filename) for m in bundled().of(POSTGRES)]
    assert await pg_rows(pg_schema, "SELECT version, name, checksum FROM schema_migrations ORDER BY version") == (
        recorded(bundled(), POSTGRES))
    assert await pg_migrate(pg_schema) == (version, [])


async def test_postgres_store_refuses_a_changed_migration(pg_schema: str) -> None:
    await pg_migrate(pg_schema)
    await pg_rows(pg_schema, "UPDATE schema_migrations SET checksum = $1 WHERE version = 1", "0" * 64)
    store = PostgresStore(PG_DSN, pg_config(pg_schema))
    with pytest.raises(MigrationError, match=r"migration 0001_init \(pica/store/migrations/0001_init.postgres.sql\)"):
        await store.open()
    await store.close()


async def test_postgres_applies_a_new_pair_of_files_and_refuses_to_go_back(pg_schema: str) -> None:
    await pg_migrate(pg_schema)
    later = load(package_files() + list(NOTES.items()))
    assert await pg_migrate(pg_schema, later) == (later.latest, [(NEXT, f"{NEXT:04d}_notes.postgres.sql")])
    assert await pg_rows(pg_schema, "SELECT count(*) FROM notes") == [(0,)]
    with pytest.raises(MigrationError, match=f"at schema version {NEXT}, newer than this Pica knows"):
        await pg_migrate(pg_schema)
    store = PostgresStore(PG_DSN, pg_config(pg_schema))
    with pytest.raises(MigrationError, match="newer than this Pica knows"):
        await store.open()
    await store.close()


# ------------------------------------------------------------------------------------------------ upgrades


@pytest.fixture(scope="module")
def old_release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The previous release's ``pica`` package, unpacked from git."""
    folder = tmp_path_factory.mktemp("previous-release")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", PREVIOUS_RELEASE, "pica"], capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"git archive {PREVIOUS_RELEASE} failed: {archive.stderr.decode(errors='replace')[-500:]}")
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    yield folder


def run_previous_release(old_release: Path, *args: str) -> dict[str, Any]:
    """Create a database with the previous release's code; returns what that code reads back from it."""
    env = {**os.environ, "PYTHONPATH": str(old_release)}
    result = subprocess.run([sys.executable, str(Path(legacy_data.__file__)), *args], env=env, capture_output=True,
                            text=True, timeout=120, cwd=old_release)
    assert result.returncode == 0, result.stderr[-3000:]
    out: dict[str, Any] = json.loads(result.stdout)
    assert out["pica"] == str(old_release / "pica" / "__init__.py")  # really the old code
    return dict(out["snapshot"])


def same(old: Any, new: Any, where: str = "") -> None:
    """``new`` holds everything ``old`` does (records may have gained fields since)."""
    if isinstance(old, dict):
        assert isinstance(new, dict), where
        for key, value in old.items():
            assert key in new, f"{where}.{key} missing"
            same(value, new[key], f"{where}.{key}")
    elif isinstance(old, list):
        assert isinstance(new, list) and len(new) == len(old), f"{where}: {old} != {new}"
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            same(a, b, f"{where}[{i}]")
    else:
        assert old == new, f"{where}: {old!r} != {new!r}"


async def check_upgraded(store: Store, before: dict[str, Any]) -> None:
    """Everything the old code read is read alike; the store goes on: seqs continue gap-free."""
    same(before, await legacy_data.snapshot(store))
    alice, bob = before["users"]["alice"]["user_id"], before["users"]["bob"]["user_id"]
    direct = legacy_data.direct(alice, bob)
    last = before["alice"]["history"][direct]["messages"][-1]["seq"]
    body = legacy_data.body("back")
    result = await store.append_direct(DirectAppend(direct, bob, alice, "after-upgrade", body, 9_000))
    assert (result.seq, result.duplicate) == (last + 1, False)
    again = await store.append_direct(DirectAppend(direct, bob, alice, "after-upgrade", body, 9_001))
    assert (again.seq, again.duplicate) == (last + 1, True)
    page = await store.history(alice, direct, after=None, before=None, limit=1_000)
    assert [m.seq for m in page.messages] == list(range(1, last + 2))
    (group,) = before["bob"]["groups"]
    group_last = before["bob"]["history"][group["conversation_id"]]["messages"][-1]["seq"]
    posted = await store.append_group(GroupAppend(group["conversation_id"], bob, "g-after", legacy_data.body("hi"),
                                                  9_002))
    assert posted.seq == group_last + 1
    assert await store.mark_read(alice, direct, last + 1) == ReadCursors(delivered=last + 1, read=last + 1)


async def test_a_sqlite_file_of_the_previous_release_is_upgraded_in_place(tmp_path: Path, old_release: Path) -> None:
    db = tmp_path / "pica.db"
    before = run_previous_release(old_release, "sqlite", str(db))
    assert sqlite_rows(db, "PRAGMA user_version") == [(3,)]
    assert sqlite_rows(db, "SELECT name FROM sqlite_master WHERE name = 'schema_migrations'") == []
    store = SqliteStore(db)
    await store.open()
    try:
        await check_upgraded(store, before)
    finally:
        await store.close()
    assert sqlite_rows(db, "SELECT version, name, checksum FROM schema_migrations ORDER BY version") == recorded(
        bundled(), SQLITE)
    assert sqlite_migrate(db) == (bundled().latest, [])


async def test_a_postgres_schema_of_the_previous_release_is_upgraded_in_place(old_release: Path) -> None:
    async with temporary_schema() as schema:
        before = run_previous_release(old_release, "postgres", PG_DSN, schema)
        assert await pg_rows(schema, "SELECT version FROM schema_migrations") == [(1,)]
        async with pg_store(schema) as store:
            await check_upgraded(store, before)
        assert await pg_rows(schema, "SELECT version, name, checksum FROM schema_migrations ORDER BY version") == (
            recorded(bundled(), POSTGRES))
        assert await pg_migrate(schema) == (bundled().latest, [])
