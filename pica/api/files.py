"""HTTP: files (docs/protocol.md, "Files"): upload, resumable upload (tus 1.0.0), download with ranges, thumbnails."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import AsyncIterator
from typing import Annotated, Final

import msgspec
from aiohttp import web

from pica.api.common import caller, json_response
from pica.api.spec import route, struct_query
from pica.errors import BadRequest, PicaError, Unavailable
from pica.gateway.http_headers import EVERYWHERE
from pica.media.ranges import Unsatisfiable, byte_range
from pica.media.service import MediaService
from pica.media.sniff import INLINE
from pica.store.base import FileRecord

TUS_VERSION: Final = "1.0.0"
READ_CHUNK: Final = 64 * 1024

DOWNLOAD_HEADERS: Final = {
    **EVERYWHERE,
    # The bytes behind an id never change: a browser may keep them; a shared cache may not (they are private).
    "Cache-Control": "private, max-age=31536000, immutable",
    # Shown in place or not, a file is never a page of this origin: no script runs in it.
    "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'",
}


class FileInfo(msgspec.Struct):
    file_id: str
    size: int
    content_type: str
    sha256: str
    name: str
    width: int | None = None
    height: int | None = None


class UploadInfo(msgspec.Struct):
    upload_id: str
    location: str
    length: int
    received: int


class DownloadQuery(msgspec.Struct):
    thumbnail: Annotated[int, msgspec.Meta(ge=1, le=2**53 - 1)] | None = None
    """The longest side of one of the image's thumbnails (its body's ``thumbnails``)."""


class UploadQuery(msgspec.Struct):
    filename: str | None = None
    """The file's name, as people will see it (directories and control characters are dropped)."""


def file_info(record: FileRecord) -> FileInfo:
    return FileInfo(record.file_id, record.size, record.content_type, record.sha256, record.name,
                    record.meta.get("width"), record.meta.get("height"))


MEDIA_KEY: Final = web.AppKey("pica_media", MediaService)
"""Set by the composition root on a node that serves files."""


def media(request: web.Request) -> MediaService:
    found = request.app.get(MEDIA_KEY)
    if found is None:
        raise Unavailable("files are not served by this node")
    return found


async def _chunks(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(READ_CHUNK):
        yield chunk


async def upload(request: web.Request) -> web.Response:
    """POST /v1/files?filename= with the bytes as the body -> 201 FileInfo."""
    owner = await caller(request)
    service = media(request)
    try:
        async with asyncio.timeout(service.config.upload_timeout):
            record = await service.upload(owner, _chunks(request), request.content_length,
                                          struct_query(request, UploadQuery).filename)
    except (ConnectionResetError, web.RequestPayloadError):
        raise BadRequest("the request body broke off") from None
    except TimeoutError:
        raise BadRequest(f"the file did not arrive within {service.config.upload_timeout:g} s "
                         "(media.upload_timeout)") from None
    return json_response(file_info(record), status=201)


async def download(request: web.Request) -> web.StreamResponse:
    """GET /v1/files/{file_id}[?thumbnail=N]: the bytes (or a thumbnail's), with ranges; 404 ``file_not_found`` for
    everyone who may not read it, whether or not it exists."""
    user_id = await caller(request)
    service = media(request)
    record = await service.readable(user_id, request.match_info["file_id"])
    size = struct_query(request, DownloadQuery).thumbnail
    if size is None:
        key, length, content_type = record.sha256, record.size, record.content_type
    else:
        key, length = await service.thumbnail(record, size)
        content_type = "image/webp" if record.content_type == "image/png" else "image/jpeg"
    try:
        span = byte_range(request.headers.get("Range"), length)
    except Unsatisfiable:
        return web.Response(status=416, headers={**DOWNLOAD_HEADERS, "Content-Range": f"bytes */{length}"})
    start, end = span if span is not None else (0, length)
    disposition = "inline" if content_type in INLINE else "attachment"
    headers = {
        **DOWNLOAD_HEADERS,
        "Content-Type": content_type if disposition == "inline" else "application/octet-stream",
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{_quoted(record.name)}",
        "Content-Length": str(end - start),
        "Accept-Ranges": "bytes",
        "ETag": f'"{key}"',
    }
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{length}"
    if request.headers.get("If-None-Match") == headers["ETag"]:
        return web.Response(status=304, headers={k: v for k, v in headers.items() if k != "Content-Length"})
    response = web.StreamResponse(status=206 if span is not None else 200, headers=headers)
    await response.prepare(request)
    async for chunk in service.blobs.read(key, start, end):
        await response.write(chunk)
    await response.write_eof()
    return response


def _quoted(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


# ------------------------------------------------------------------------------------------ tus


def _tus_headers(**extra: str) -> dict[str, str]:
    return {"Tus-Resumable": TUS_VERSION, **extra}


def _check_tus(request: web.Request) -> None:
    if request.headers.get("Tus-Resumable") != TUS_VERSION:
        raise _TusVersion()


class _TusVersion(PicaError):
    code = "bad_request"
    http_status = 412

    def __init__(self) -> None:
        super().__init__("this server speaks tus 1.0.0: send 'Tus-Resumable: 1.0.0'")


def _filename(metadata: str) -> str | None:
    """The ``filename`` of a tus ``Upload-Metadata`` header (comma-separated ``key base64value`` pairs)."""
    for pair in metadata.split(","):
        key, _, value = pair.strip().partition(" ")
        if key == "filename" and value:
            try:
                return base64.b64decode(value, validate=True).decode("utf-8", "replace")
            except (binascii.Error, ValueError):
                raise BadRequest("Upload-Metadata: filename is not base64") from None
    return None


def _header_int(request: web.Request, name: str) -> int:
    raw = request.headers.get(name, "")
    if not raw.isascii() or not raw.isdigit():
        raise BadRequest(f"send {name} as a non-negative integer")
    return int(raw)


async def tus_options(request: web.Request) -> web.Response:
    """OPTIONS /v1/uploads: what the server supports (tus discovery)."""
    service = media(request)
    return web.Response(status=204, headers=_tus_headers(**{
        "Tus-Version": TUS_VERSION, "Tus-Extension": "creation,termination",
        "Tus-Max-Size": str(service.config.max_file_bytes)}))


async def tus_create(request: web.Request) -> web.Response:
    """POST /v1/uploads (Upload-Length, Upload-Metadata) -> 201 with Location and UploadInfo."""
    owner = await caller(request)
    _check_tus(request)
    length = _header_int(request, "Upload-Length")
    record = await media(request).open_resumable(owner, length, _filename(request.headers.get("Upload-Metadata", "")))
    location = f"/v1/uploads/{record.upload_id}"
    response = json_response(UploadInfo(record.upload_id, location, record.length, 0), status=201)
    response.headers.update(_tus_headers(Location=location, **{"Upload-Offset": "0"}))
    return response


async def tus_head(request: web.Request) -> web.Response:
    """HEAD /v1/uploads/{upload_id}: Upload-Offset, the bytes held so far."""
    owner = await caller(request)
    record = await media(request).resumable(owner, request.match_info["upload_id"])
    return web.Response(status=200, headers=_tus_headers(**{
        "Upload-Offset": str(record.received), "Upload-Length": str(record.length)}))


async def tus_patch(request: web.Request) -> web.Response:
    """PATCH /v1/uploads/{upload_id} (Upload-Offset, application/offset+octet-stream) -> 204 with the new
    Upload-Offset, or 200 with FileInfo when this was the last byte."""
    owner = await caller(request)
    service = media(request)
    await service.resumable(owner, request.match_info["upload_id"])  # 404 first: the id is the resource
    _check_tus(request)
    if request.headers.get("Content-Type") != "application/offset+octet-stream":
        raise _UnsupportedMedia()
    offset = _header_int(request, "Upload-Offset")
    try:
        async with asyncio.timeout(service.config.upload_timeout):
            received, record = await service.append(owner, request.match_info["upload_id"], offset,
                                                    _chunks(request))
    except (ConnectionResetError, web.RequestPayloadError):
        # The client went away mid-way: what arrived is kept (HEAD tells it where to resume); nobody hears this.
        raise BadRequest("the request body broke off") from None
    except TimeoutError:
        raise BadRequest(f"the bytes did not arrive within {service.config.upload_timeout:g} s "
                         "(media.upload_timeout)") from None
    headers = _tus_headers(**{"Upload-Offset": str(received)})
    if record is None:
        return web.Response(status=204, headers=headers)
    response = json_response(file_info(record))
    response.headers.update(headers)
    return response


class _UnsupportedMedia(PicaError):
    code = "bad_request"
    http_status = 415

    def __init__(self) -> None:
        super().__init__("send the bytes as Content-Type: application/offset+octet-stream")


async def tus_delete(request: web.Request) -> web.Response:
    """DELETE /v1/uploads/{upload_id} -> 204: the upload is cancelled and its bytes deleted."""
    owner = await caller(request)
    await media(request).cancel(owner, request.match_info["upload_id"])
    return web.Response(status=204, headers=_tus_headers())


def add_routes(app: web.Application) -> None:
    route(app, "POST", "/v1/files", upload, summary="Upload a file (the raw bytes as the body)", query=UploadQuery,
          response=FileInfo, status=201, tag="files")
    route(app, "GET", "/v1/files/{file_id}", download, summary="Download a file or one of its thumbnails",
          query=DownloadQuery, content_type="application/octet-stream", responses={304: None, 416: None},
          tag="files")
    route(app, "OPTIONS", "/v1/uploads", tus_options, summary="Resumable uploads: what the server supports (tus)",
          status=204, auth="none", tag="files")
    route(app, "POST", "/v1/uploads", tus_create, summary="Start a resumable upload (tus creation)",
          response=UploadInfo, status=201, tag="files")
    route(app, "HEAD", "/v1/uploads/{upload_id}", tus_head, summary="How much of a resumable upload arrived",
          tag="files")
    route(app, "PATCH", "/v1/uploads/{upload_id}", tus_patch, summary="Send more of a resumable upload",
          status=204, responses={200: FileInfo}, tag="files")
    route(app, "DELETE", "/v1/uploads/{upload_id}", tus_delete, summary="Cancel a resumable upload", status=204,
          tag="files")

