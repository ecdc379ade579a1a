"""Token buckets: the arithmetic behind every rate limit, with time passed in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pica.config import RatesConfig
from pica.core.ratelimit import Bucket, Buckets, Rate, RateLimits
from pica.errors import RateLimited


@pytest.mark.parametrize(("text", "count", "per"), [
    ("30/min", 30, 60), ("5/s", 5, 1), ("10/15min", 10, 900), ("100/h", 100, 3600), ("2/d", 2, 86400),
    (" 3 / 10 s ", 3, 10), ("0.5/s", 0.5, 1),
])
def test_rates_are_written_as_count_over_period(text: str, count: float, per: float) -> None:
    assert Rate.parse(text) == Rate(count, per)


@pytest.mark.parametrize("text", ["", "30", "30/", "/min", "30/fortnight", "0/min", "30/0min", "-1/s", "1e3/s"])
def test_a_rate_that_does_not_parse_says_what_was_expected(text: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        Rate.parse(text)


def test_a_full_bucket_allows_a_burst_then_one_request_per_refill_interval() -> None:
    rate = Rate(3, 3)  # 3 at once, then 1 a second
    bucket = Bucket(rate, now=100.0)
    assert [bucket.take(rate, 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(rate, 100.0) == pytest.approx(1.0)  # refused: one token is a second away
    assert bucket.take(rate, 100.5) == pytest.approx(0.5)  # nothing was taken by the refusal
    assert bucket.take(rate, 101.0) == 0.0
    assert bucket.take(rate, 110.0) == 0.0  # refilled, but never above the burst
    assert [bucket.take(rate, 110.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]


def test_a_penalty_empties_the_bucket_but_never_below_empty() -> None:
    rate = Rate(10, 10)
    bucket = Bucket(rate, now=0.0)
    bucket.charge(rate, 0.0, 4)
    assert bucket.wait(rate, 0.0) == 0.0
    bucket.charge(rate, 0.0, 100)
    assert bucket.wait(rate, 0.0) == pytest.approx(1.0)  # empty, not -94


@given(st.lists(st.tuples(st.floats(0, 5), st.floats(0.1, 4)), max_size=60),
       st.floats(1, 50), st.floats(0.5, 100))
def test_a_bucket_never_allows_more_than_its_burst_plus_what_refilled(
    steps: list[tuple[float, float]], count: float, per: float
) -> None:
    """Whatever the timing and costs, what was taken over any run is at most the burst plus rate * elapsed, and a
    refusal's wait is exactly what makes the same request pass."""
    rate = Rate(count, per)
    bucket = Bucket(rate, now=0.0)
    now, taken = 0.0, 0.0
    for gap, cost in steps:
        now += gap
        wait = bucket.take(rate, now, cost)
        if wait == 0.0:
            taken += min(cost, count)
        else:
            assert wait > 0
            assert Bucket.take(_copy(bucket), rate, now + wait + 1e-9, cost) == 0.0
        assert taken <= count + now * rate.per_second + 1e-6


def _copy(bucket: Bucket) -> Bucket:
    twin = Bucket(Rate(1, 1), 0.0)
    twin.tokens, twin.stamp = bucket.tokens, bucket.stamp
    return twin


def test_keyed_buckets_are_independent_and_bounded_forgetting_the_least_recent() -> None:
    buckets = Buckets("test", Rate(1, 60), max_keys=2)
    assert buckets.take("a", 0.0) == 0.0
    assert buckets.take("b", 0.0) == 0.0
    assert buckets.take("a", 1.0) > 0  # a is spent (and now the most recently used)
    assert buckets.take("c", 1.0) == 0.0  # a third key: b, the least recently used, is forgotten
    assert len(buckets) == 2
    assert buckets.take("b", 1.0) == 0.0  # forgotten means a full bucket again
    assert buckets.take("c", 2.0) > 0


def test_limits_refuse_with_retry_after_and_off_means_off() -> None:
    now = [0.0]
    config = RatesConfig(sends_per_user="2/s")
    on = RateLimits(config, enabled=True, clock=lambda: now[0])
    on.check(on.sends, 7, "messages")
    on.check(on.sends, 7, "messages")
    with pytest.raises(RateLimited) as refused:
        on.check(on.sends, 7, "messages")
    assert refused.value.retry_after == pytest.approx(0.5)
    assert refused.value.to_dict()["retry_after"] == refused.value.retry_after
    on.check(on.sends, 8, "messages")  # another user has a bucket of their own
    now[0] = 0.5
    on.check(on.sends, 7, "messages")
    off = RateLimits(config, enabled=False, clock=lambda: now[0])
    for _ in range(100):
        off.check(off.sends, 7, "messages")
    assert off.connection_bucket() is None


async def test_failed_logins_cost_the_address_more_and_lock_only_the_failing_account() -> None:
    now = [0.0]
    rates = RateLimits(RatesConfig(login_per_address="10/min", login_failure_cost=5,
                                   login_failures_per_account="3/15min"), enabled=True, clock=lambda: now[0])
    await rates.check_login("10.0.0.1", "alice")
    await rates.login_failed("10.0.0.1", "alice")  # 1 + 4 more from the address's 10
    await rates.check_login("10.0.0.1", "alice")
    await rates.login_failed("10.0.0.1", "alice")  # the address's bucket is empty now
    with pytest.raises(RateLimited):
        await rates.check_login("10.0.0.1", "bob")
    await rates.check_login("10.0.0.2", "alice")  # another address: alice has one failure left
    await rates.login_failed("10.0.0.2", "alice")
    with pytest.raises(RateLimited) as locked:
        await rates.check_login("10.0.0.3", "alice")  # three failures: alice waits, from anywhere
    assert locked.value.retry_after == pytest.approx(300.0)
    await rates.check_login("10.0.0.3", "bob")  # bob is not locked by alice's failures


def test_a_socket_that_keeps_sending_while_refused_runs_into_debt_capped_at_one_bucket() -> None:
    """``spend`` (the per-connection shaper): refused requests still cost, so the wait grows with the flood, but
    never beyond two periods; a client that then waits that long is served."""
    rate = Rate(10, 1)  # 10 at once, then 10 a second
    bucket = Bucket(rate, now=0.0)
    assert [bucket.spend(rate, 0.0) for _ in range(10)] == [0.0] * 10
    waits = [bucket.spend(rate, 0.0) for _ in range(50)]
    assert waits[0] == pytest.approx(0.2)  # one token of debt, and one to pay for the next request
    assert waits == sorted(waits) and waits[-1] == pytest.approx(1.1)  # capped: 10 tokens of debt at most
    assert bucket.spend(rate, 1.1) == 0.0
