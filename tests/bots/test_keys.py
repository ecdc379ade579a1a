"""Bot keys and the bots' rate multiplier, as values: the key's shape and hash, and a bot's requests costing
1/multiplier of a user's in the same buckets."""

from __future__ import annotations

import hashlib

from pica.config import RatesConfig
from pica.core.bots import KEY_PREFIX, MAX_KEY_LENGTH, is_bot_key, key_hash, new_key
from pica.core.ratelimit import RateLimits
from pica.errors import RateLimited


def test_a_key_is_prefixed_random_and_stored_as_its_sha256() -> None:
    keys = {new_key() for _ in range(1000)}
    assert len(keys) == 1000
    for key in keys:
        assert key.startswith(KEY_PREFIX) and len(key) == len(KEY_PREFIX) + 43 <= MAX_KEY_LENGTH
        assert key.isascii() and is_bot_key(key)
        assert key_hash(key) == hashlib.sha256(key.encode()).hexdigest()
    assert not is_bot_key("eyJhbGciOiJIUzI1NiJ9.e30.sig")


def sends_allowed(rates: RateLimits, user_id: int) -> int:
    allowed = 0
    try:
        while allowed < 100:
            rates.check(rates.sends, user_id, "messages")
            allowed += 1
    except RateLimited:
        pass
    return allowed


def test_a_bot_gets_its_multiplier_once_it_authenticated() -> None:
    now = [0.0]
    rates = RateLimits(RatesConfig(sends_per_user="4/min"), enabled=True, clock=lambda: now[0], bot_multiplier=2.5)
    rates.mark_bot(7)
    assert sends_allowed(rates, 7) == 10
    assert sends_allowed(rates, 8) == 4  # a user
    assert rates.cost_of(7) == 0.4 and rates.cost_of(8) == 1.0
    now[0] += 15.0  # a user's bucket refills 1 in 15 s; a bot's 2.5
    assert (sends_allowed(rates, 7), sends_allowed(rates, 8)) == (2, 1)


def test_a_multiplier_of_one_marks_nobody() -> None:
    rates = RateLimits(RatesConfig(sends_per_user="4/min"), enabled=True, clock=lambda: 0.0)
    rates.mark_bot(7)
    assert rates.cost_of(7) == 1.0 and sends_allowed(rates, 7) == 4
