"""The ``stream`` job handler: one JetStream publication per event, acknowledged by the server (stored in the
stream) before the job is done.

Subject ``<event_stream.subject_prefix>.<event type>``; header ``Nats-Msg-Id: <conversation_id>:<seq>`` (the job's
key); body: the event's JSON, the same as a webhook's. With ``event_stream.stream`` set, the stream is created over
``<prefix>.>`` if it does not exist yet. A failure (no connection, no stream for the subject, no acknowledgement in
``event_stream.publish_timeout``) is retried with the queue's backoff; the conversation's later events wait behind it.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.js.api import StreamConfig

from pica.config import EventStreamConfig
from pica.jobs.policy import DONE, Verdict
from pica.store.base import JobRecord

log = logging.getLogger(__name__)


class _Head(msgspec.Struct):
    type: str


_head: Final = msgspec.json.Decoder(_Head).decode


class NatsPublisher:
    def __init__(self, config: EventStreamConfig) -> None:
        self._config = config
        self._client: Any = None
        self._js: Any = None

    async def _jetstream(self) -> Any:
        if self._js is not None and self._client is not None and self._client.is_connected:
            return self._js
        if self._client is None:
            self._client = await nats.connect(self._config.url, connect_timeout=self._config.publish_timeout,
                                              max_reconnect_attempts=-1, name="pica")
            log.info("event stream connected", extra={"url": self._config.url})
        self._js = self._client.jetstream(timeout=self._config.publish_timeout)
        if self._config.stream:
            await self._ensure_stream(self._js)
        return self._js

    async def _ensure_stream(self, js: Any) -> None:
        name = self._config.stream
        try:
            await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            await js.add_stream(StreamConfig(name=name, subjects=[f"{self._config.subject_prefix}.>"],
                                             duplicate_window=self._config.duplicate_window))
            log.info("event stream created", extra={"stream": name})

    async def __call__(self, job: JobRecord) -> Verdict:
        subject = f"{self._config.subject_prefix}.{_head(job.payload).type}"
        try:
            js = await self._jetstream()
            await js.publish(subject, job.payload, timeout=self._config.publish_timeout,
                             headers={"Nats-Msg-Id": job.key})
        except (nats.errors.Error, OSError) as exc:  # nats' TimeoutError is an OSError too
            return Verdict("retry", f"{type(exc).__name__}: {exc}"[:300])
        return DONE

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
