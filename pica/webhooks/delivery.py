"""The handler of ``webhook`` jobs: one signed POST of one event to one endpoint.

The answer decides (:func:`verdict_for`): 2xx delivered; 429, 408 and 5xx, a timeout or a failed connection retried
with backoff; 410 Gone dead, and a registered endpoint disabled; any other status dead (redirects included: they
are not followed). ``jobs.webhook_timeout`` bounds the whole attempt, connection included; at most
``_MAX_RESPONSE_BYTES`` of the answer are read (only its status matters). Endpoints of the TOML file go through a
plain connector; registered ones through one whose resolver refuses non-public addresses (:mod:`.ssrf`).
"""

from __future__ import annotations

import logging
import time
from typing import Final

import aiohttp

from pica.config import JobsConfig
from pica.errors import PicaError
from pica.jobs.policy import DONE, Verdict
from pica.store.base import JobRecord
from pica.webhooks import signing
from pica.webhooks.endpoints import Endpoints
from pica.webhooks.ssrf import PublicResolver, RefusedAddress, literal_refused

log = logging.getLogger(__name__)

_MAX_RESPONSE_BYTES: Final = 4096


def verdict_for(status: int) -> Verdict:
    if 200 <= status < 300:
        return DONE
    if status in (408, 429) or status >= 500:
        return Verdict("retry", f"HTTP {status}")
    if status == 410:
        return Verdict("dead", "HTTP 410: the endpoint is gone")
    if 300 <= status < 400:
        return Verdict("dead", f"HTTP {status}: redirects are not followed")
    return Verdict("dead", f"HTTP {status}")


class WebhookSender:
    def __init__(self, endpoints: Endpoints, config: JobsConfig) -> None:
        self._endpoints = endpoints
        self._config = config
        self._trusted: aiohttp.ClientSession | None = None
        self._checked: aiohttp.ClientSession | None = None

    def _session(self, trusted: bool) -> aiohttp.ClientSession:
        # Built on first use, inside the running loop; ``trust_env`` stays off: no proxy from the environment.
        timeout = aiohttp.ClientTimeout(total=self._config.webhook_timeout)
        limit = self._config.concurrency
        if trusted:
            if self._trusted is None:
                self._trusted = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=limit))
            return self._trusted
        if self._checked is None:
            resolver = None if self._config.webhook_allow_private else PublicResolver()
            self._checked = aiohttp.ClientSession(
                timeout=timeout, connector=aiohttp.TCPConnector(limit=limit, resolver=resolver))
        return self._checked

    async def close(self) -> None:
        for session in (self._trusted, self._checked):
            if session is not None:
                await session.close()

    async def __call__(self, job: JobRecord) -> Verdict:
        endpoint = self._endpoints.get(job.target)
        if endpoint is None or endpoint.disabled:
            log.info("webhook dropped: its endpoint was removed or disabled",
                     extra={"job_id": job.job_id, "endpoint_id": job.target})
            return DONE
        checked = not endpoint.trusted and not self._config.webhook_allow_private
        if checked and literal_refused(endpoint.url):
            return Verdict("dead", "SSRF check: the endpoint's address may not be reached")
        headers = signing.headers(endpoint.secret, signing.webhook_id(endpoint.endpoint_id, job.key), int(time.time()),
                                  job.payload)
        started = time.monotonic()
        try:
            async with self._session(endpoint.trusted).post(endpoint.url, data=job.payload, headers=headers,
                                                            allow_redirects=False) as response:
                await response.content.read(_MAX_RESPONSE_BYTES)
                status = response.status
        except TimeoutError:
            return Verdict("retry", f"timed out after {self._config.webhook_timeout:g} s")
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedAddress):  # not an outage: the name leads somewhere it may not go
                return Verdict("dead", f"SSRF check: {exc.os_error}")
            return Verdict("retry", f"{type(exc).__name__}: {exc}"[:300])
        except (aiohttp.ClientError, OSError) as exc:
            return Verdict("retry", f"{type(exc).__name__}: {exc}"[:300])
        verdict = verdict_for(status)
        log.debug("webhook attempt", extra={"job_id": job.job_id, "endpoint_id": endpoint.endpoint_id,
                                            "status": status, "ms": round((time.monotonic() - started) * 1000, 1)})
        if status == 410:
            try:
                await self._endpoints.disable(endpoint.endpoint_id)
            except PicaError as exc:
                log.warning("cannot disable a gone webhook endpoint: %s", exc)
        return verdict

