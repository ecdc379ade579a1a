"""The webhook endpoints in force: those of the TOML file (``[[webhooks]]``, the operator's, trusted), those
registered with ``pica webhook add`` (rows of the store, SSRF-checked) and those of bots (``pica bot create
--webhook``, the operator's), and the job rules they make.

The store's rows are read at start and every ``jobs.endpoint_refresh`` seconds, so an endpoint added, removed or
disabled from any host reaches every node and worker within that time. Each change hands the new
:class:`~pica.store.base.JobRules` to ``on_rules`` (the node gives them to its store, whose write transactions then
queue jobs for them).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from pica.config import WebhookConfig
from pica.errors import PicaError
from pica.store.base import JobRules, Store, Subscription, bot_endpoint_id

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Endpoint:
    endpoint_id: str
    url: str
    secret: str
    events: tuple[str, ...]
    trusted: bool
    """From the TOML file: may reach any address. Registered endpoints are SSRF-checked."""
    disabled: bool = False


def configured_id(url: str) -> str:
    """A TOML endpoint's id, stable across restarts and reorderings of the file (its URL is unique there)."""
    return "cfg_" + hashlib.sha256(url.encode()).hexdigest()[:16]


class Endpoints:
    def __init__(self, configured: tuple[WebhookConfig, ...], store: Store,
                 on_rules: Callable[[JobRules | None], None] = lambda rules: None,
                 stream: tuple[str, ...] = (), push_delay_ms: int | None = None, previews: bool = False) -> None:
        """``stream``: the event patterns of the event stream, part of the rules the store applies; so are
        ``push_delay_ms`` (push on: a push job per message, due that long after its commit) and ``previews`` (a
        link preview job per message with a link)."""
        self._stream = stream
        self._push_delay_ms = push_delay_ms
        self._previews = previews
        self._configured = {
            configured_id(w.url): Endpoint(configured_id(w.url), w.url, w.secret, w.events, trusted=True)
            for w in configured
        }
        self._store = store
        self._on_rules = on_rules
        self._all: dict[str, Endpoint] = dict(self._configured)
        self._rules: JobRules | None = None
        self._task: asyncio.Task[None] | None = None

    def get(self, endpoint_id: str) -> Endpoint | None:
        return self._all.get(endpoint_id)

    @property
    def rules(self) -> JobRules | None:
        return self._rules

    async def refresh(self) -> None:
        """Read the registered endpoints; tell ``on_rules`` when the subscriptions changed."""
        registered = await self._store.list_webhooks()
        bots = await self._store.bot_webhooks()
        endpoints = dict(self._configured)
        for w in registered:
            endpoints[w.endpoint_id] = Endpoint(w.endpoint_id, w.url, w.secret, w.events, trusted=False,
                                                disabled=w.disabled)
        subscriptions = tuple(Subscription(e.endpoint_id, e.events) for e in endpoints.values() if not e.disabled)
        # A bot's webhook was set by the operator (pica bot create), so it is trusted like the TOML file's; it is
        # subscribed through JobRules.bots, to its own conversations' messages only (pica/store/bots.py).
        for b in bots:
            endpoints[bot_endpoint_id(b.user_id)] = Endpoint(bot_endpoint_id(b.user_id), b.url, b.secret,
                                                         ("message.created",), trusted=True)
        self._all = endpoints
        bot_ids = frozenset(b.user_id for b in bots)
        made = JobRules(subscriptions, self._stream, bots=bot_ids, push_delay_ms=self._push_delay_ms,
                        previews=self._previews)
        rules = None if made.empty else made
        if rules != self._rules:
            self._rules = rules
            log.info("webhook endpoints changed", extra={"endpoints": len(subscriptions)})
            self._on_rules(rules)

    def start(self, interval: float) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll(interval), name="pica-webhook-endpoints")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except PicaError as exc:
                log.warning("cannot read the webhook endpoints: %s", exc)

    async def disable(self, endpoint_id: str) -> None:
        """An endpoint answered 410 Gone: a registered one is disabled in the store (its jobs are dropped from
        then on); one of the TOML file stays, as the operator wrote it, and its jobs die."""
        endpoint = self._all.get(endpoint_id)
        if endpoint is None or endpoint.trusted:
            return
        await self._store.disable_webhook(endpoint_id)
        log.warning("webhook endpoint disabled: it answered 410 Gone", extra={"endpoint_id": endpoint_id})
        await self.refresh()
