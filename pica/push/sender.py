"""The handler of ``push`` jobs: a message's pushes, ``push.delay`` after its commit.

One job per message (written in the message's own transaction, pica/store/job_rules.py). When it runs, it reads the
message and the conversation's members that have devices (:meth:`Store.push_candidates`, on a reader), lets
:func:`pica.push.rules.recipients` choose, reads the chosen users' devices and unread totals, and sends every device
its notification concurrently, each through the provider of its platform. Devices a service reports gone, and
devices of ended sessions, are deleted. The job is retried while a service asks for it (429, 5xx, a timeout); the
retry sends every device again with the same push id, which receivers de-duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from pica.config import PushConfig
from pica.errors import PicaError
from pica.jobs.policy import DONE, Verdict
from pica.push import rules
from pica.push.rules import Notification, Sent
from pica.store.base import DeviceRecord, JobRecord, Store

log = logging.getLogger(__name__)


class Provider(Protocol):
    async def send(self, device: DeviceRecord, note: Notification) -> Sent: ...

    async def close(self) -> None: ...


def build_providers(config: PushConfig) -> dict[str, Provider]:
    """One provider per platform whose credentials are set (imported only then)."""
    providers: dict[str, Provider] = {}
    if config.apns_key_file:
        from pica.push.apns import ApnsProvider

        providers["apns"] = ApnsProvider(config)
    if config.fcm_service_account_file:
        from pica.push.fcm import FcmProvider

        providers["fcm"] = FcmProvider(config)
    if config.vapid_private_key:
        from pica.push.webpush import WebPushProvider

        providers["webpush"] = WebPushProvider(config)
    return providers


def _wall_ms() -> int:
    return int(time.time() * 1000)


class PushSender:
    def __init__(self, store: Store, providers: Mapping[str, Provider], *,
                 now_ms: Callable[[], int] = _wall_ms) -> None:
        self._store = store
        self._providers = dict(providers)
        self._now_ms = now_ms

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()

    async def __call__(self, job: JobRecord) -> Verdict:
        conversation_id, _, seq = job.key.rpartition("/")
        now = self._now_ms()
        try:
            message, candidates = await self._store.push_candidates(conversation_id, int(seq))
            chosen = [] if message is None else rules.recipients(message, candidates, now)
            if message is None or not chosen:
                return DONE
            audience = await self._store.push_audience(chosen, now)
            if audience.ended:
                await self._store.drop_devices(audience.ended)
        except PicaError as exc:
            return Verdict("retry", f"store: {exc}")
        privacy = {c.user_id: c.privacy for c in candidates}
        devices = [d for d in audience.devices if d.platform in self._providers]
        results = await asyncio.gather(*(
            self._providers[d.platform].send(d, rules.notification(message, d, privacy[d.user_id],
                                                                   audience.badges.get(d.user_id, 0)))
            for d in devices))
        gone = [d.device_id for d, r in zip(devices, results, strict=True) if r.outcome == "gone"]
        for d, r in zip(devices, results, strict=True):
            if r.outcome != "sent":
                log.info("push not delivered", extra={"job_id": job.job_id, "device_id": d.device_id,
                                                      "platform": d.platform, "outcome": r.outcome,
                                                      "error": r.detail})
        if gone:
            try:
                await self._store.drop_devices(gone)
            except PicaError as exc:
                log.warning("cannot delete gone push devices: %s", exc)
        return rules.verdict(results)
