"""The handler of ``preview`` jobs: make the preview of a message's link and attach it to the message for everyone.

The store wrote the job in the message's own transaction (pica/store/job_rules.py, ``preview_rows``), so the send
path never waits for a page. The handler takes the URL's preview from the cache (``previews.cache_ttl``), or fetches
it (:mod:`.fetch`, :mod:`.extract`) and caches what it got, a failure included (``{}``: nothing to show, so a dead or
refused link costs one fetch per TTL, not one per message). A preview with something to show becomes an event of
the message's author, ``{"preview": {"seq": N, ...}}``, and the message's body gets ``link_preview`` in the same
transaction (pica/store/event_rules.py), like an edit: devices learn it live (``deliver``) or by sync.

The image is never handed to clients as the page's URL (loading it would tell a third party who reads the
conversation, and the web page's Content-Security-Policy loads images from its own origin only): it is fetched
through the same SSRF rules, shrunk to ``previews.image_size`` pixels and kept in the preview as a ``data:`` URI of a
few kilobytes.

Delivery is at least once: the event's ``client_msg_id`` is ``~p:<conversation_id>:<seq>``, so a job run twice
attaches one preview. A job whose message is gone, recalled or whose preview was removed ends without an event.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import msgspec

from pica.config import PreviewsConfig
from pica.errors import BadRequest, ConversationNotFound, Forbidden, MessageNotFound, PicaError
from pica.jobs.policy import DONE, Verdict
from pica.jobs.worker import wall_ms
from pica.media.images import dimensions, thumbnails
from pica.previews.extract import extract
from pica.previews.fetch import Fetcher, FetchError
from pica.store.base import AppendResult, EventAppend, JobRecord, MessageRecord, Store

log = logging.getLogger(__name__)

Deliver = Callable[[MessageRecord, AppendResult], None]
"""Hands a committed event to this node's delivery (the chat service's ``deliver_event``)."""

_MAX_IMAGE_PIXELS: Final = 40_000_000
"""A preview image decoding to more pixels is dropped (a decompression bomb)."""


class _Payload(msgspec.Struct):
    conversation_id: str
    seq: int
    sender: int
    url: str


_decode: Final = msgspec.json.Decoder(_Payload).decode


class PreviewJob:
    def __init__(self, store: Store, config: PreviewsConfig, deliver: Deliver | None = None, *,
                 fetcher: Fetcher | None = None, now_ms: Callable[[], int] = wall_ms) -> None:
        """``deliver`` None: a ``pica worker`` process, which has no connections; members learn the preview by
        sync (or from the next event delivered live in the conversation)."""
        self._store = store
        self._config = config
        self.deliver = deliver
        self._fetcher = fetcher or Fetcher(config)
        self._now_ms = now_ms

    async def __call__(self, job: JobRecord) -> Verdict:
        try:
            payload = _decode(job.payload)
        except msgspec.DecodeError:
            return Verdict("dead", "not a preview job's payload")
        now = self._now_ms()
        expired_before = now - int(self._config.cache_ttl * 1000)
        try:
            preview = await self._store.cached_preview(payload.url, expired_before)
            if preview is None:
                preview = await self.make(payload.url)
                await self._store.cache_preview(payload.url, preview, now, expired_before)
        except PicaError as exc:
            return Verdict("retry", f"store: {exc}")
        if not preview:
            return DONE
        conversation_id, seq = payload.conversation_id, payload.seq
        request = EventAppend("preview", conversation_id, payload.sender, seq, f"~p:{conversation_id}:{seq}",
                              self._now_ms(), preview=preview)
        try:
            result, record = await self._store.append_event(request)
        except (MessageNotFound, ConversationNotFound, Forbidden, BadRequest) as exc:
            # Recalled, preview removed, author gone from the conversation ...: nothing to attach any more.
            log.debug("preview not attached: %s", exc, extra={"conversation_id": conversation_id, "seq": seq})
            return DONE
        except PicaError as exc:
            return Verdict("retry", f"store: {exc}")
        if not result.duplicate and self.deliver is not None:
            self.deliver(record, result)
        return DONE

    async def make(self, url: str) -> dict[str, Any]:
        """The preview of ``url``: ``{"url", "title"?, "description"?, "site_name"?, "image"?}``, or ``{}`` when the
        page gives nothing to show (refused, failed, not HTML, no title, description or image)."""
        config = self._config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.timeout
        try:
            async with asyncio.timeout_at(deadline):
                page = await self._fetcher.page(url)
        except (FetchError, TimeoutError) as exc:
            # The reason names the link's host, part of what a user wrote: DEBUG only.
            refused = isinstance(exc, FetchError) and exc.refused
            log.info("no link preview", extra={"refused": refused, "timed_out": isinstance(exc, TimeoutError)})
            log.debug("no link preview: %s", exc or "timed out")
            return {}
        meta = extract(page.body, page.content_type_header, page.url, max_title=config.max_title_chars,
                       max_description=config.max_description_chars)
        if meta.empty:
            return {}
        preview: dict[str, Any] = {"url": url}
        for key in ("title", "description", "site_name"):
            if getattr(meta, key):
                preview[key] = getattr(meta, key)
        if meta.image_url and config.image_size > 0:
            try:
                async with asyncio.timeout_at(deadline):
                    image = await self._fetcher.image(meta.image_url)
                thumbnail = await asyncio.to_thread(data_uri_thumbnail, image.body, config.image_size)
            except (FetchError, TimeoutError) as exc:
                log.debug("link preview without its image: %s", exc or "timed out")
                thumbnail = None
            if thumbnail is not None:
                preview["image"] = thumbnail
        return preview


def data_uri_thumbnail(data: bytes, size: int) -> str | None:
    """A JPEG (WebP when transparent) thumbnail of an image's bytes as a ``data:`` URI; None when it does not
    decode or has too many pixels. Blocking: run it in a thread."""
    with tempfile.TemporaryDirectory(prefix="pica-preview-") as folder:
        path = Path(folder) / "image"
        path.write_bytes(data)
        found = dimensions(path)
        if found is None or found[0] * found[1] > _MAX_IMAGE_PIXELS:
            return None
        try:
            made = thumbnails(path, [size], _MAX_IMAGE_PIXELS)[size]
        except (OSError, ValueError, SyntaxError):
            return None
    media_type = "image/webp" if made[:4] == b"RIFF" else "image/jpeg"
    return f"data:{media_type};base64,{base64.b64encode(made).decode('ascii')}"
