"""PostgreSQL helpers for the store tests: the server comes from ``PICA_TEST_POSTGRES`` (default: the local test
server); every test gets its own schema ``t_<random hex>``, dropped afterwards, so that tests (and engineers) sharing
one server never see each other's rows."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from pica.config import PostgresConfig
from pica.store.postgres import PostgresStore, quote_ident

PG_DSN = os.environ.get("PICA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


async def connect_admin() -> asyncpg.Connection:
    """A plain connection to the test server, skipping the test (loudly) when there is none."""
    try:
        return await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_DSN}: {type(exc).__name__}: {exc}")


@contextlib.asynccontextmanager
async def temporary_schema() -> AsyncIterator[str]:
    """A fresh schema name (created by the store's migrations), dropped with everything in it afterwards."""
    admin = await connect_admin()
    schema = f"t_{uuid.uuid4().hex}"
    try:
        yield schema
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
        await admin.close()


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    async with temporary_schema() as schema:
        yield schema


def pg_config(schema: str, **changes: object) -> PostgresConfig:
    """Small pools: many tests (and other engineers' runs) share the server's 100 connections."""
    settings: dict[str, object] = {"pool_size": 3, "write_lanes": 2, "max_batch": 64, "command_timeout": 30.0}
    settings.update(changes)
    return PostgresConfig(schema=schema, **settings)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def pg_store(schema: str, **changes: object) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(PG_DSN, pg_config(schema, **changes))
    await store.open()
    try:
        yield store
    finally:
        await store.close()
