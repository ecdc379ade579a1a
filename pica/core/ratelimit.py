"""Rate limits as token buckets: pure arithmetic, time passed in.

A rule ``"30/min"`` is a bucket of 30 tokens that refills at 30 per minute: a client may spend the whole bucket at once
(a burst) and then one token every two seconds. A request takes a token (or ``cost`` tokens); when the bucket cannot
pay, the request is refused with the seconds until it could be paid (``retry_after``), and nothing is taken, so a
client that waits that long and retries succeeds.

Why not the ``limits`` library: it offers fixed and moving windows, not token buckets, keeps its memory storage
behind a lock and a timer thread, and answers through a storage object per check; here a check is two float
operations on an object the caller already holds (the per-connection bucket lives on the connection) or one dict
lookup, on the path of every frame. The arithmetic is small enough to own and test (tests/core/test_ratelimit.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from pica.config import RatesConfig, parse_rate
from pica.core.ports import SharedBuckets
from pica.errors import RateLimited

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rate:
    count: float
    """Tokens the bucket holds when full: the largest burst."""
    per: float
    """Seconds in which an empty bucket refills."""

    @classmethod
    def parse(cls, text: str) -> Rate:
        """A rule as the configuration writes it (:func:`pica.config.parse_rate`)."""
        return cls(*parse_rate(text))

    @property
    def per_second(self) -> float:
        return self.count / self.per


class Bucket:
    """One client's bucket of one rule."""

    __slots__ = ("stamp", "tokens")

    def __init__(self, rate: Rate, now: float) -> None:
        self.tokens = rate.count
        self.stamp = now

    def _refill(self, rate: Rate, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(rate.count, self.tokens + (now - self.stamp) * rate.per_second)
            self.stamp = now

    def take(self, rate: Rate, now: float, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens and return 0.0, or spend nothing and return the seconds until they are there. A cost
        above the bucket's size is charged as a full bucket (it can never be paid otherwise)."""
        self._refill(rate, now)
        cost = min(cost, rate.count)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / rate.per_second

    def spend(self, rate: Rate, now: float, cost: float = 1.0) -> float:
        """Like :meth:`take`, but a request the bucket cannot pay still costs: the bucket goes into debt (down to
        minus a full bucket) and the answer is the seconds until the debt is repaid and ``cost`` is there again. For a
        socket that keeps sending while refused: the caller stops reading it that long, so a flood is held back by
        TCP flow control instead of costing a refusal per frame (a shaper, as ejabberd's)."""
        if self.take(rate, now, cost) == 0.0:
            return 0.0
        cost = min(cost, rate.count)
        self.tokens = max(self.tokens - cost, -rate.count)
        return (cost - self.tokens) / rate.per_second

    def wait(self, rate: Rate, now: float) -> float:
        """Seconds until one token is there (0.0: now), spending nothing."""
        self._refill(rate, now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / rate.per_second

    def charge(self, rate: Rate, now: float, cost: float) -> None:
        """Spend ``cost`` tokens whatever is left (down to empty): a penalty, as for a failed login."""
        self._refill(rate, now)
        self.tokens = max(0.0, self.tokens - cost)


class Buckets:
    """The buckets of one rule (``name``), one per key (an address, a user, an account name), at most ``max_keys``:
    the key touched least recently is forgotten first, and a forgotten key starts again with a full bucket, an error
    only towards letting a request through. The bound keeps a spray of addresses from growing memory without end."""

    def __init__(self, name: str, rate: Rate, max_keys: int, limit: str = "") -> None:
        self.name = name
        self.rate = rate
        self.limit = limit
        """The rule's configuration key (``rates.sends_per_user``), which a refusal names."""
        self._max_keys = max_keys
        self._buckets: dict[Hashable, Bucket] = {}

    def _get(self, key: Hashable, now: float) -> Bucket:
        bucket = self._buckets.pop(key, None)  # popped and put back: the dict's order is the order of last use
        if bucket is None:
            bucket = Bucket(self.rate, now)
            if len(self._buckets) >= self._max_keys:
                del self._buckets[next(iter(self._buckets))]
        self._buckets[key] = bucket
        return bucket

    def take(self, key: Hashable, now: float, cost: float = 1.0) -> float:
        return self._get(key, now).take(self.rate, now, cost)

    def wait(self, key: Hashable, now: float) -> float:
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else bucket.wait(self.rate, now)

    def charge(self, key: Hashable, now: float, cost: float) -> None:
        self._get(key, now).charge(self.rate, now, cost)

    def __len__(self) -> int:
        return len(self._buckets)


def refused(wait: float, what: str, limit: str = "") -> RateLimited:
    """The error for a refused request: ``retry_after`` rounded up to a tenth of a second, so that a client that
    waits exactly that long finds the token there."""
    retry_after = math.ceil(wait * 10) / 10
    return RateLimited(f"too many {what}; retry after {retry_after:g} s", retry_after=retry_after, limit=limit)


class RateLimits:
    """Every rate limit of a node, from ``rates`` in the configuration; ``enabled`` False (``rate_limits = "off"``)
    makes every check pass.

    Counters are this node's, except, when ``shared`` is set (cluster mode), those of logins and registrations:
    they are kept in the cluster's Redis, so that spreading attempts over nodes gains nothing. A shared check that
    fails (Redis away) falls back to this node's buckets: logins go on during an outage, limited per node."""

    def __init__(self, config: RatesConfig, *, enabled: bool, clock: Callable[[], float],
                 shared: SharedBuckets | None = None, bot_multiplier: float = 1.0) -> None:
        self.enabled = enabled
        self.bot_multiplier = bot_multiplier
        """``bots.rate_multiplier``: a bot's per-user and per-connection buckets are this many times larger and
        refill this many times faster (each request costs 1/multiplier of a token)."""
        self._bots: set[int] = set()
        """Bots that authenticated on this node (only they get the multiplier; a user id is never an address)."""
        self.config = config
        self.shared = shared
        self._clock = clock
        keys = config.max_keys
        def rule(name: str, key: str) -> Buckets:
            return Buckets(name, Rate.parse(getattr(config, key)), keys, f"rates.{key}")

        self.login_address = rule("login_address", "login_per_address")
        self.login_account = rule("login_account", "login_failures_per_account")
        self.register_address = rule("register_address", "register_per_address")
        self.http_address = rule("http_address", "http_per_address")
        self.sends = rule("sends", "sends_per_user")
        self.presence = rule("presence", "presence_queries_per_user")
        self.lookups = rule("lookups", "user_lookups_per_user")
        self.exports = rule("exports", "exports_per_user")
        self.reports = rule("reports", "reports_per_user")
        self.connection_rate = Rate.parse(config.requests_per_connection)
        self.shared_failures = 0
        """Shared checks answered by this node's buckets because the shared store failed."""

    def mark_bot(self, user_id: int) -> None:
        if self.bot_multiplier != 1.0:
            self._bots.add(user_id)

    def cost_of(self, user_id: int) -> float:
        """What one request of this user costs in their buckets: 1, or less for a bot (``bots.rate_multiplier``)."""
        return 1.0 / self.bot_multiplier if self._bots and user_id in self._bots else 1.0

    def check(self, buckets: Buckets, key: Hashable, what: str, cost: float = 1.0) -> None:
        """Take ``cost`` from ``key``'s bucket or raise RateLimited."""
        if self._bots and key in self._bots:
            cost /= self.bot_multiplier
        if self.enabled:
            wait = buckets.take(key, self._clock(), cost)
            if wait > 0:
                raise refused(wait, what, buckets.limit)

    async def _take(self, buckets: Buckets, key: str, cost: float) -> float:
        if self.shared is not None:
            try:
                return await self.shared.take(f"{buckets.name}:{key}", buckets.rate.count, buckets.rate.per, cost)
            except Exception:
                self._shared_failed()
        return buckets.take(key, self._clock(), cost)

    async def _wait(self, buckets: Buckets, key: str) -> float:
        if self.shared is not None:
            try:
                return await self.shared.wait(f"{buckets.name}:{key}", buckets.rate.count, buckets.rate.per)
            except Exception:
                self._shared_failed()
        return buckets.wait(key, self._clock())

    async def _charge(self, buckets: Buckets, key: str, cost: float) -> None:
        if self.shared is not None:
            try:
                await self.shared.charge(f"{buckets.name}:{key}", buckets.rate.count, buckets.rate.per, cost)
                return
            except Exception:
                self._shared_failed()
        buckets.charge(key, self._clock(), cost)

    def _shared_failed(self) -> None:
        if self.shared_failures % 1000 == 0:
            log.warning("shared rate limits unavailable; this node's own buckets answer", exc_info=True,
                        extra={"failures": self.shared_failures + 1})
        self.shared_failures += 1

    async def check_register(self, address: str) -> None:
        if self.enabled:
            wait = await self._take(self.register_address, address, 1)
            if wait > 0:
                raise refused(wait, "registrations from this address", self.register_address.limit)

    async def check_login(self, address: str, account: str) -> None:
        """Before a password is checked: one attempt from ``address``, and the account must not be out of
        attempts (its bucket counts failures only, so that its owner's successful logins never lock it)."""
        if not self.enabled:
            return
        wait = await self._wait(self.login_account, account)
        if wait > 0:
            raise refused(wait, "failed logins for this account", self.login_account.limit)
        wait = await self._take(self.login_address, address, 1)
        if wait > 0:
            raise refused(wait, "login attempts", self.login_address.limit)

    async def login_failed(self, address: str, account: str) -> None:
        """A wrong password costs the account one attempt and the address ``login_failure_cost`` in all."""
        if self.enabled:
            await self._charge(self.login_account, account, 1)
            await self._charge(self.login_address, address, self.config.login_failure_cost - 1)

    def connection_bucket(self) -> Bucket | None:
        """A fresh bucket for a new connection's requests (None when limits are off)."""
        return Bucket(self.connection_rate, self._clock()) if self.enabled else None
