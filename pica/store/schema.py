"""The migration sequence: one numbered list of schema steps for both SQL dialects, and the rules for applying it.

Every version N exists once per dialect, as two files in ``pica/store/migrations``: ``NNNN_name.sqlite.sql`` and
``NNNN_name.postgres.sql`` (same name; when a step changes nothing for one dialect, its file is an explicit no-op
whose comment says why). Versions run 1, 2, 3, … without gaps. Adding a migration is dropping the next pair of files
in the folder.

A database records each version applied, with the sha256 of the file's bytes, in its ``schema_migrations`` table.
At every open the records are checked against the files: a changed file, a version newer than this code knows, or
a gap in the records is refused (:class:`~pica.errors.MigrationError`, naming the version and the file). Versions
applied by releases that kept no checksums (SQLite 1-3, kept in ``PRAGMA user_version``; PostgreSQL 1, a row without
a checksum) are *adopted*: their checksums are recorded from the files, whose bytes those releases shipped
unchanged. PostgreSQL's 0002 and 0003 are no-ops, because PostgreSQL support came later and its 0001 created the
whole model as of SQLite 0003: a legacy PostgreSQL schema at version 1 applies them (doing nothing) on its next
open and is then at 3, like a SQLite file.

Sans-I/O: everything here is a pure function of file names and bytes and of the rows a database holds, except
:func:`bundled`, which reads the package's own folder. The backends (:func:`pica.store.sqlite_writer.migrate`,
:func:`pica.store.postgres.migrate`) keep only the driver calls: transactions, the advisory lock, executing SQL.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Final

from pica.errors import MigrationError

log = logging.getLogger(__name__)

SQLITE: Final = "sqlite"
POSTGRES: Final = "postgres"
DIALECTS: Final = (SQLITE, POSTGRES)
FOLDER: Final = "pica/store/migrations"

LEGACY_VERSIONS: Final[Mapping[str, int]] = {SQLITE: 3, POSTGRES: 1}
"""Per dialect, the highest version a release without checksums could have applied (those versions are adopted)."""

_FILE_NAME: Final = re.compile(r"(\d{4})_([a-z0-9]+(?:_[a-z0-9]+)*)\.([a-z]+)\.sql")


def checksum(data: bytes) -> str:
    """What schema_migrations records for a file: the sha256 of its bytes, in hex."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Migration:
    """One file: version ``version`` of the sequence for one dialect."""

    version: int
    name: str
    dialect: str
    filename: str
    sql: str
    checksum: str

    @property
    def path(self) -> str:
        return f"{FOLDER}/{self.filename}"

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@dataclass(frozen=True, slots=True)
class Migrations:
    """The whole sequence, checked: every version 1..latest present for every dialect, under one name."""

    by_dialect: Mapping[str, tuple[Migration, ...]]

    @property
    def latest(self) -> int:
        return len(self.by_dialect[SQLITE])

    def of(self, dialect: str) -> tuple[Migration, ...]:
        return self.by_dialect[dialect]


@dataclass(frozen=True, slots=True)
class Applied:
    """One row of a database's schema_migrations. ``checksum`` is None for a row a release without checksums wrote."""

    version: int
    checksum: str | None


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do to a database: record the checksums of ``adopt`` (legacy versions, already applied), then apply
    ``pending`` in order. ``version``: the version the database is at now."""

    version: int
    adopt: tuple[Migration, ...]
    pending: tuple[Migration, ...]


Progress = Callable[[Migration, float], None]
"""Called after each migration a backend applied and committed, with the seconds it took; without one, the backend
logs the migration instead."""


def announce(report: Progress | None, step: Migration, seconds: float, **context: object) -> None:
    """Tell ``report`` (``pica migrate``'s progress lines) that ``step`` was applied, or log it."""
    if report is not None:
        report(step, seconds)
    else:
        log.info("applied migration", extra={"dialect": step.dialect, "version": step.version,
                                             "migration": step.filename, "seconds": round(seconds, 3), **context})


def load(files: Iterable[tuple[str, bytes]]) -> Migrations:
    """The sequence from (file name, bytes) pairs; names not ending in ``.sql`` are ignored. Raises MigrationError for a
    misnamed ``.sql`` file, a version present for one dialect only, a version under two names, or a gap."""
    found: dict[int, dict[str, Migration]] = {}
    for filename, data in sorted(files):
        if not filename.endswith(".sql"):
            continue
        match = _FILE_NAME.fullmatch(filename)
        if match is None or match[3] not in DIALECTS:
            raise MigrationError(
                f"migration file {FOLDER}/{filename} is misnamed: expected NNNN_name.sqlite.sql or "
                "NNNN_name.postgres.sql (lower-case name, words joined by _)"
            )
        version, name, dialect = int(match[1]), match[2], match[3]
        try:
            sql = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MigrationError(f"migration file {FOLDER}/{filename} is not UTF-8: {exc}") from exc
        pair = found.setdefault(version, {})
        if dialect in pair:
            raise MigrationError(
                f"migration {version:04d} has two {dialect} files: {pair[dialect].path} and {FOLDER}/{filename}"
            )
        pair[dialect] = Migration(version, name, dialect, filename, sql, checksum(data))
    if not found:
        raise MigrationError(f"no migration files in {FOLDER}")
    for expected, version in enumerate(sorted(found), start=1):
        if version != expected:
            raise MigrationError(
                f"migration versions must run 1, 2, 3, ... without gaps: {version:04d} found, {expected:04d} missing"
            )
        pair = found[version]
        missing = [d for d in DIALECTS if d not in pair]
        if missing:
            (present,) = pair.values()
            raise MigrationError(
                f"migration {version:04d} exists for {present.dialect} only ({present.path}): add "
                f"{FOLDER}/{present.label}.{missing[0]}.sql, an explicit no-op with a comment if nothing changes there"
            )
        names = {m.name for m in pair.values()}
        if len(names) > 1:
            raise MigrationError(
                f"migration {version:04d} has different names per dialect: "
                + ", ".join(m.path for m in pair.values())
            )
    return Migrations({d: tuple(found[v][d] for v in sorted(found)) for d in DIALECTS})


@functools.cache
def bundled() -> Migrations:
    """The sequence shipped in this package (read once per process)."""
    folder = resources.files("pica.store").joinpath("migrations")
    return load((entry.name, entry.read_bytes()) for entry in folder.iterdir() if entry.is_file())


def legacy_sqlite_rows(user_version: int) -> list[Applied]:
    """A SQLite file without schema_migrations rows: the versions its ``PRAGMA user_version`` says were applied."""
    return [Applied(version, None) for version in range(1, user_version + 1)]


def plan(migrations: Migrations, dialect: str, applied: Iterable[Applied]) -> Plan:
    """Check what a database has applied against the files and say what to do. Raises MigrationError when the
    database is newer than this code, its records have a gap, a recorded checksum differs from its file's, or a
    version past the legacy ones has no checksum."""
    steps = migrations.of(dialect)
    rows = sorted(applied, key=lambda row: row.version)
    versions = [row.version for row in rows]
    if versions and versions[-1] > len(steps):
        raise MigrationError(
            f"the {dialect} database is at schema version {versions[-1]}, newer than this Pica knows (its "
            f"migrations end at {len(steps):04d}, {steps[-1].path}): run the release that migrated it, or a later one"
        )
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(
            f"the {dialect} database records schema versions {versions} in schema_migrations: they must run "
            "1, 2, 3, ... without gaps (was the table edited by hand?)"
        )
    adopt: list[Migration] = []
    for row in rows:
        step = steps[row.version - 1]
        if row.checksum is None:
            if row.version > LEGACY_VERSIONS[dialect]:
                raise MigrationError(
                    f"migration {step.label} ({step.path}) is recorded without a checksum in the {dialect} database; "
                    f"only versions up to {LEGACY_VERSIONS[dialect]} can be, from releases before checksums"
                )
            adopt.append(step)
        elif row.checksum != step.checksum:
            raise MigrationError(
                f"migration {step.label} ({step.path}) differs from the one applied to this {dialect} database "
                f"(recorded sha256 {row.checksum}, file {step.checksum}): an applied migration must never change; "
                "restore the file as released and put the change in a new migration"
            )
    return Plan(len(rows), tuple(adopt), steps[len(rows):])
