"""The store's SCRAM credentials (pica/store/scram.py), on every backend: stored per user and mechanism, replaced
when derived again, and judged stale by the core once the password changed."""

from __future__ import annotations

from pica.core.scram import password_tag
from pica.store.base import ScramKeyRecord, Store
from tests.store.test_contract import store, users

__all__ = ["store"]  # the fixture, run for every backend


def key(user_id: int, mechanism: str, salt: str, tag: str = "t1") -> ScramKeyRecord:
    return ScramKeyRecord(user_id, mechanism, salt, 4096, "c3RvcmVk", "c2VydmVy", tag)


async def test_keys_per_user_and_mechanism_replaced_when_derived_again(store: Store) -> None:
    alice, bob = await users(store, "alice", "bob")
    assert await store.scram_key(alice, "SCRAM-SHA-256") is None
    await store.set_scram_keys([key(alice, "SCRAM-SHA-256", "c2FsdDE="), key(alice, "SCRAM-SHA-1", "c2FsdDE=")])
    await store.set_scram_keys([key(bob, "SCRAM-SHA-256", "Ym9i")])
    assert await store.scram_key(alice, "SCRAM-SHA-256") == key(alice, "SCRAM-SHA-256", "c2FsdDE=")
    assert await store.scram_key(bob, "SCRAM-SHA-1") is None

    await store.set_scram_keys([key(alice, "SCRAM-SHA-256", "c2FsdDI=", "t2")])  # the password changed
    assert await store.scram_key(alice, "SCRAM-SHA-256") == key(alice, "SCRAM-SHA-256", "c2FsdDI=", "t2")
    assert await store.scram_key(alice, "SCRAM-SHA-1") == key(alice, "SCRAM-SHA-1", "c2FsdDE=")


async def test_keys_name_the_password_hash_they_were_derived_under(store: Store) -> None:
    [alice] = await users(store, "alice")
    user = await store.get_user(alice)
    assert user is not None
    await store.set_scram_keys([key(alice, "SCRAM-SHA-256", "c2FsdA==", password_tag(user.password_hash))])
    stored = await store.scram_key(alice, "SCRAM-SHA-256")
    assert stored is not None and stored.password_tag == password_tag(user.password_hash)
    assert stored.password_tag != password_tag(user.password_hash + "changed")
