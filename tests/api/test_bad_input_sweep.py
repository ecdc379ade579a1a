"""Malformed input swept over every HTTP route (docs/protocol.md section 23).

Each route is listed once in ROUTES with a request that succeeds. From it the sweep derives malformed variants: of
the body as a whole, of each body field by the type of its valid value, of each path and query parameter, of the
Authorization header and of the method. Every answer must be the documented 4xx with a JSON error body (a documented
``code``, a string ``message``): never a 500, a dropped connection or a hang. Afterwards the node must still answer
``/healthz`` and carry a normal send. A route added to the server fails test_every_route_is_swept until it is listed.

Input a server may take or refuse (a NUL in a string, a repeated query parameter, an unknown Content-Encoding) only
has to get an answer that is not a 5xx.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import jwt
import pytest

from pica.api.http import build_app
from pica.app import token_secret
from pica.client import Login, PicaHttp
from pica.config import PushConfig
from pica.core.admin import CLI
from pica.core.tokens import TokenService
from pica.errors import PicaError
from tests.api.test_http import raw
from tests.conftest import PASSWORD, Node, api, make_config, new_user, running, started
from tests.push.services import Subscription, vapid_key

# ------------------------------------------------------------------------------------------------------ the world


@dataclass(frozen=True)
class World:
    """What every route's test starts from: alice and bob share a 1:1 conversation whose seq 1 is alice's "hello"
    (with a link: its preview can be removed); alice owns a group with bob and carol; bob has asked alice to be
    contacts; dave is in nothing yet, but alice invited him to the group (he asks for consent to group adds); erin is
    there to delete her account."""

    node: Node
    alice: Login
    alice_phone: Login
    """A second session of alice's (the one the session list's DELETE ends)."""
    bob: Login
    carol: Login
    dave: Login
    erin: Login
    alice_name: str
    bob_name: str
    conversation_id: str
    group_id: int
    file_id: str
    """A file alice uploaded."""
    upload_id: str
    """A resumable upload alice started."""
    device_id: str
    """Alice's Web Push device."""
    root: Login
    """An administrator (the admin API's caller)."""
    report_id: int
    """bob's report of alice's "hello"."""

    def path_params(self) -> dict[str, str]:
        return {"conversation_id": self.conversation_id, "seq": "1", "group_id": str(self.group_id),
                "user_id": str(self.bob.user_id), "name": "app.js", "file": "docs.js",
                "session_id": self.alice_phone.session_id, "file_id": self.file_id, "upload_id": self.upload_id,
                "device_id": self.device_id, "report_id": str(self.report_id)}


def push_subscription(n: int) -> dict[str, Any]:
    """A browser's Web Push subscription (without the optional expirationTime, which the server ignores)."""
    keys = Subscription(f"https://push.example.net/s/{n}").json()["keys"]
    return {"endpoint": f"https://push.example.net/s/{n}", "keys": keys}


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    """A node as tests/conftest.py's, with Web Push on: the push routes' valid requests need a platform."""
    push = PushConfig(vapid_private_key=vapid_key())
    async with running(replace(make_config(tmp_path), push=push)) as started_node:
        yield started_node


async def make_world(node: Node) -> World:
    alice, bob, carol, dave, erin = [await new_user(node.url, prefix)
                                     for prefix in ("alice", "bob", "carol", "dave", "erin")]
    ack = await api(node, alice, "POST", "/v1/messages",
                    json={"to": bob.user_id, "client_msg_id": "m1", "body": {"text": "hello https://pica.example"}})
    group = await api(node, alice, "POST", "/v1/groups", json={"name": "team", "members": [bob.user_id, carol.user_id]})
    await api(node, bob, "POST", "/v1/contacts/requests", json={"user_id": alice.user_id})
    await api(node, dave, "PATCH", "/v1/me", json={"group_add": "nobody"})
    await api(node, alice, "POST", f"/v1/groups/{group['group_id']}/members", json={"user_ids": [dave.user_id]})
    alice_name = (await api(node, alice, "GET", "/v1/me"))["username"]
    bob_name = (await api(node, bob, "GET", "/v1/me"))["username"]
    async with PicaHttp(node.url) as http:
        alice_phone = await http.login(alice_name, PASSWORD)
    async with PicaHttp(node.url, token=alice.token) as http:
        file_id = (await http.upload(b"hello, file\n", filename="hello.txt"))["file_id"]
    device = await api(node, alice, "POST", "/v1/devices", json={"platform": "webpush",
                                                                  "subscription": push_subscription(0)})
    root = await new_user(node.url, "root")
    assert node.server.services is not None and node.server.services.admin is not None
    await node.server.services.admin.set_admin(CLI, root.user_id, True)
    report = await api(node, bob, "POST", "/v1/reports",
                       json={"conversation_id": ack["conversation_id"], "seq": 1, "reason": "spam"})
    return World(node, alice, alice_phone, bob, carol, dave, erin, alice_name, bob_name, ack["conversation_id"],
                 group["group_id"], file_id, await start_upload(node, alice), device["device_id"], root,
                 report["report_id"])


async def start_upload(node: Node, who: Login) -> str:
    async with aiohttp.ClientSession() as session, session.post(
            node.url + "/v1/uploads", headers={"Authorization": f"Bearer {who.token}", "Tus-Resumable": "1.0.0",
                                               "Upload-Length": "10"}) as resp:
        return str((await resp.json())["upload_id"])


# ------------------------------------------------------------------------------------------------------ the routes


@dataclass(frozen=True)
class Query:
    """A query parameter: its valid value (a format string of the world ``w``), its kind, and whether it is required.

    Kinds: ``limit`` (an integer >= 1), ``cursor`` (an integer >= 0), ``ids`` (comma-separated user ids),
    ``username``, ``text`` (free text the server checks as it likes)."""

    valid: str
    kind: str
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    """As registered; each ``{name}`` is filled from World.path_params."""
    body: Callable[[World], dict[str, Any]] | None = None
    """A valid body; None for a route that reads none."""
    query: dict[str, Query] = field(default_factory=dict)
    auth: str = "required"
    """``required``, ``none``, or ``optional`` (the WebSocket upgrade: a bad token is refused, none is fine)."""
    caller: str = "alice"
    status: int = 200
    """The status of the valid request."""
    invalid: int | frozenset[int] = 400
    """The status for a body field of a wrong type or value (login: 401 invalid_credentials), or the statuses."""
    json: bool = True
    """Whether the valid request's answer is JSON."""
    note: str = ""
    """Tells apart two entries of one route."""
    params: Callable[[World], dict[str, str]] | None = None
    """Path parameters of this route that differ from World.path_params."""

    def __str__(self) -> str:
        return f"{self.method} {self.path}" + (f" ({self.note})" if self.note else "")

    @property
    def refusals(self) -> frozenset[int]:
        return self.invalid if isinstance(self.invalid, frozenset) else frozenset({self.invalid})


CONVERSATION: Final = "/v1/conversations/{conversation_id}"
GROUP: Final = "/v1/groups/{group_id}"
ADMIN_USER: Final = "/v1/admin/users/{user_id}"

ROUTES: Final = [
    # health, metrics, accounts, dispatch, the socket, the page
    Route("GET", "/healthz", auth="none"),
    Route("GET", "/metrics", auth="none", json=False),
    Route("POST", "/v1/auth/register", auth="none", status=201,
          body=lambda w: {"username": "newcomer", "password": PASSWORD}),
    Route("POST", "/v1/auth/login", auth="none", invalid=401,
          body=lambda w: {"username": w.alice_name, "password": PASSWORD}),
    # The valid request spends the refresh token: later ones with it are reuses (401 session_ended).
    Route("POST", "/v1/auth/refresh", auth="none", invalid=401,
          body=lambda w: {"refresh_token": w.alice.refresh_token}),
    Route("POST", "/v1/auth/logout", status=204),
    Route("GET", "/v1/sessions"),
    Route("DELETE", "/v1/sessions/{session_id}", status=204),
    # Refusals: a wrong old password (401), a weak new one (400), and, as the wrong old passwords add up, the
    # failed-login limit of the account (429).
    Route("PUT", "/v1/me/password", invalid=frozenset({400, 401, 429}),
          body=lambda w: {"old_password": PASSWORD, "new_password": PASSWORD}),
    Route("GET", "/v1/gateway"),
    Route("GET", "/v1/ws", auth="optional", status=400),  # a plain GET is not an upgrade
    Route("GET", "/", auth="none", json=False),
    Route("GET", "/static/{name}", auth="none", json=False),
    Route("GET", "/openapi.json", auth="none"),
    Route("GET", "/docs", auth="none", json=False),
    Route("GET", "/docs/{file}", auth="none", json=False),
    # messages and conversations
    Route("POST", "/v1/messages", body=lambda w: {"to": w.bob.user_id, "client_msg_id": "s1",
                                                  "body": {"text": "hi", "mentions": [w.bob.user_id]}}),
    Route("POST", "/v1/messages", note="to a group",
          body=lambda w: {"group_id": w.group_id, "client_msg_id": "s2", "body": {"text": "hi all"}}),
    Route("GET", "/v1/conversations", query={"limit": Query("10", "limit"),
                                             "before_ts": Query("99999999999999", "cursor"),
                                             "before_id": Query("{w.conversation_id}", "text")}),
    Route("GET", CONVERSATION + "/messages", query={"before_seq": Query("9", "cursor"),
                                                    "after_seq": Query("0", "cursor"),
                                                    "limit": Query("10", "limit")}),
    Route("GET", CONVERSATION + "/receipts"),
    Route("POST", CONVERSATION + "/read", body=lambda w: {"seq": 1}),
    Route("POST", CONVERSATION + "/messages/{seq}/recall", body=lambda w: {"client_msg_id": "r1"}),
    Route("POST", CONVERSATION + "/messages/{seq}/unpreview", body=lambda w: {"client_msg_id": "u1"}),
    Route("POST", CONVERSATION + "/messages/{seq}/edit", body=lambda w: {"client_msg_id": "e1", "text": "edited"}),
    Route("DELETE", CONVERSATION + "/messages/{seq}"),
    Route("POST", CONVERSATION + "/messages/{seq}/reactions", body=lambda w: {"client_msg_id": "x1", "emoji": "👍"}),
    Route("GET", CONVERSATION + "/threads"),
    Route("GET", CONVERSATION + "/threads/{seq}", query={"after_seq": Query("0", "cursor"),
                                                         "limit": Query("10", "limit")}),
    Route("POST", CONVERSATION + "/threads/{seq}/read", body=lambda w: {"seq": 1}),
    Route("GET", "/v1/search", query={"q": Query("hello", "text", required=True),
                                      "conversation_id": Query("{w.conversation_id}", "text"),
                                      "limit": Query("10", "limit"), "offset": Query("0", "cursor"),
                                      "sender": Query("{w.bob.user_id}", "limit"),
                                      "since": Query("0", "cursor"), "until": Query("99999999999999", "cursor"),
                                      "kind": Query("file", "text")}),
    # forwarding, pins, drafts, settings (protocol section 29)
    Route("POST", "/v1/forward", body=lambda w: {"conversation_id": w.conversation_id, "seqs": [1],
                                                 "to": [w.carol.user_id], "group_ids": [w.group_id],
                                                 "client_msg_id": "f1"}),
    Route("GET", CONVERSATION + "/pins"),
    Route("PUT", CONVERSATION + "/pins/{seq}"),
    Route("DELETE", CONVERSATION + "/pins/{seq}"),
    Route("PUT", CONVERSATION + "/draft", body=lambda w: {"text": "half a thought"}),
    Route("DELETE", CONVERSATION + "/draft"),
    Route("PATCH", CONVERSATION + "/settings", body=lambda w: {"pinned": True, "archived": False,
                                                                "marked_unread": True, "muted_until": 1}),
    # groups
    Route("POST", "/v1/groups", status=201, body=lambda w: {"name": "g2", "members": [w.bob.user_id]}),
    Route("GET", "/v1/groups"),
    Route("GET", GROUP),
    Route("PATCH", GROUP, body=lambda w: {"name": "renamed", "muted_all": True}),
    Route("DELETE", GROUP),
    Route("GET", GROUP + "/members"),
    Route("POST", GROUP + "/members", body=lambda w: {"user_ids": [w.dave.user_id]}),
    Route("DELETE", GROUP + "/members/{user_id}"),
    Route("POST", GROUP + "/members/{user_id}/role", body=lambda w: {"role": "admin"}),
    Route("POST", GROUP + "/members/{user_id}/mute", body=lambda w: {"muted": True}),
    Route("POST", GROUP + "/leave", caller="bob"),
    Route("POST", GROUP + "/transfer", body=lambda w: {"user_id": w.bob.user_id}),
    # users, contacts, blocks, presence
    Route("GET", "/v1/users", query={"username": Query("{w.bob_name}", "username", required=True)}),
    Route("GET", "/v1/users/{user_id}"),
    Route("GET", "/v1/me"),
    Route("PATCH", "/v1/me", body=lambda w: {"only_contacts": True}),
    Route("GET", "/v1/contacts"),
    Route("POST", "/v1/contacts/requests", body=lambda w: {"user_id": w.carol.user_id}),
    Route("POST", "/v1/contacts/requests/{user_id}/accept"),
    Route("POST", "/v1/contacts/requests/{user_id}/decline"),
    Route("DELETE", "/v1/contacts/{user_id}"),
    Route("GET", "/v1/blocks"),
    Route("PUT", "/v1/blocks/{user_id}"),
    Route("DELETE", "/v1/blocks/{user_id}"),
    Route("GET", "/v1/presence", query={"user_ids": Query("{w.bob.user_id}", "ids", required=True)}),
    Route("PATCH", "/v1/me", note="privacy", body=lambda w: {"group_add": "contacts", "presence": "nobody"}),
    Route("GET", "/v1/me/export"),
    Route("GET", "/v1/invitations"),
    Route("GET", "/v1/turn", status=501, note="no [turn] on this node: not_configured"),  # credentials: tests/calls
    Route("POST", "/v1/invitations/{group_id}/accept", caller="dave"),
    Route("POST", "/v1/invitations/{group_id}/decline", caller="dave"),
    # files (the body of an upload is the file: any bytes are valid, so no body variants)
    Route("POST", "/v1/files", status=201, query={"filename": Query("notes.txt", "text")}),
    Route("GET", "/v1/files/{file_id}", json=False),
    Route("OPTIONS", "/v1/uploads", auth="none", status=204, json=False),
    # The sweep sends no Tus-Resumable header: the tus routes refuse it (412) before anything else.
    Route("POST", "/v1/uploads", status=412),
    Route("PATCH", "/v1/uploads/{upload_id}", status=412),
    Route("DELETE", "/v1/uploads/{upload_id}", status=204),
    # push notifications
    Route("GET", "/v1/push/config", auth="none"),
    Route("POST", "/v1/devices", status=201, body=lambda w: {"platform": "webpush",
                                                             "subscription": push_subscription(1)}),
    Route("GET", "/v1/devices"),
    Route("DELETE", "/v1/devices/{device_id}", status=204),
    Route("PUT", CONVERSATION + "/notifications", body=lambda w: {"level": "mentions"}),
    Route("GET", CONVERSATION + "/notifications"),
    Route("PUT", "/v1/me/push", body=lambda w: {"privacy": True}),
    Route("GET", "/v1/me/push"),
    # The valid request deletes erin: her token is refused (401) in every variant that passes the body's parsing.
    Route("DELETE", "/v1/me", caller="erin", status=204, invalid=401, body=lambda w: {"password": PASSWORD}),
    # reports, and the admin API (docs/admin.md), called by an administrator
    Route("POST", "/v1/reports", caller="bob", status=201,
          body=lambda w: {"conversation_id": w.conversation_id, "seq": 1, "reason": "spam"}),
    Route("GET", "/v1/admin/users", caller="root", query={"limit": Query("10", "limit"), "after": Query("0", "cursor"),
                                                          "q": Query("a", "text"), "banned": Query("false", "text")}),
    Route("POST", "/v1/admin/users", caller="root", status=201,
          body=lambda w: {"username": "newcomer", "password": PASSWORD, "admin": False}),
    Route("DELETE", ADMIN_USER, caller="root", status=204),
    Route("POST", ADMIN_USER + "/ban", caller="root", status=204),
    Route("DELETE", ADMIN_USER + "/ban", caller="root", status=204),
    Route("POST", ADMIN_USER + "/admin", caller="root", status=204),
    Route("DELETE", ADMIN_USER + "/admin", caller="root", status=204),
    Route("POST", ADMIN_USER + "/reset-password", caller="root", body=lambda w: {"password": PASSWORD}),
    Route("GET", ADMIN_USER + "/sessions", caller="root"),
    Route("DELETE", ADMIN_USER + "/sessions", caller="root"),
    Route("DELETE", "/v1/admin/users/{user_id}/sessions/{session_id}", caller="root",
          params=lambda w: {"user_id": str(w.alice.user_id)}),  # the session is alice's phone
    Route("GET", "/v1/admin/groups", caller="root", query={"limit": Query("10", "limit"),
                                                           "after": Query("0", "cursor")}),
    Route("GET", "/v1/admin/groups/{group_id}", caller="root"),
    Route("GET", "/v1/admin/groups/{group_id}/members", caller="root"),
    Route("POST", "/v1/admin/groups/{group_id}/dissolve", caller="root"),
    Route("DELETE", "/v1/admin/messages/{conversation_id}/{seq}", caller="root"),
    Route("GET", "/v1/admin/reports", caller="root", query={"limit": Query("10", "limit"),
                                                            "after": Query("0", "cursor"),
                                                            "state": Query("open", "text")}),
    Route("POST", "/v1/admin/reports/{report_id}/resolve", caller="root", body=lambda w: {"action": "dismiss"}),
    Route("GET", "/v1/admin/audit", caller="root", query={"limit": Query("10", "limit"),
                                                          "before": Query("99999", "limit")}),
    Route("GET", "/v1/admin/stats", caller="root"),
]


# ------------------------------------------------------------------------------------------------------ the values


@dataclass(frozen=True)
class RawJson:
    """JSON text put into a body as it is, for what no Python value encodes to: 1e999, an escaped lone surrogate."""

    text: str


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


ARABIC_ONE: Final = "\u0661"  # str.isdigit() and int() take it
SUPERSCRIPT_TWO: Final = "\u00b2"  # str.isdigit() takes it, int() does not

# Malformed values of a body field, by the type of its valid value: (label, value, refused). A refused value must get
# the route's `invalid` status; None marks JSON that msgspec refuses (400 on every route); the others, which a server
# may well take, need any answer but a 5xx.
INT_VALUES: Final[list[tuple[str, Any, bool | None]]] = [
    ("2**70", 2**70, True), ("2**53", 2**53, True), ("-1", -1, True), ("0", 0, True), ("1.5", 1.5, True),
    ('"12"', "12", True), ("true", True, True), ("null", None, True), ("[]", [], True),
    ("1e999", RawJson("1e999"), None), ("5,000 digits", RawJson("9" * 5000), None),
]
STR_VALUES: Final[list[tuple[str, Any, bool | None]]] = [
    ('""', "", True), ("100,000 chars", "x" * 100_000, True), ("12", 12, True), ("null", None, True),
    ("true", True, True), ("[]", [], True), ("{}", {}, True),
    ("NUL", "\u0000", False), ("a NUL inside", "ab\u0000cd", False), ("an RTL override", "ab\u202e", False),
    ("non-Latin and an emoji", "é中😀", False),
    ("an escaped lone surrogate", RawJson('"\\ud800"'), None),
    ("an escaped lone low surrogate", RawJson('"\\udc00x"'), None),
]
BOOL_VALUES: Final[list[tuple[str, Any, bool | None]]] = [
    ("1", 1, True), ("0", 0, True), ('"true"', "true", True), ("null", None, True), ("[]", [], True),
]
LIST_VALUES: Final[list[tuple[str, Any, bool | None]]] = [
    ("100,000 ids", list(range(1, 100_001)), True), ('["1"]', ["1"], True), ("[1.5]", [1.5], True),
    ("[true]", [True], True), ("[null]", [None], True), ("[2**70]", [2**70], True), ("[-1]", [-1], True),
    ("[0]", [0], True), ("[[1]]", [[1]], True), ("[{}]", [{}], True), ('"1"', "1", True), ("1", 1, True),
    ("null", None, True), ("{}", {}, True), ("[]", [], False),
]
OBJECT_VALUES: Final[list[tuple[str, Any, bool | None]]] = [
    ("[]", [], True), ('"text"', "text", True), ("1", 1, True), ("null", None, True), ("{}", {}, True),
    ("nested 40 deep", {"custom": nested(40)}, True), ("holding 2**70", {"text": "hi", "n": 2**70}, True),
    ("holding 1e999", {"custom": RawJson("1e999")}, None),
    ("a server-only key", {"text": "hi", "system": {"event": "x"}}, True),
    ("text and custom", {"text": "hi", "custom": 1}, True),
]

# Path parameters: every value here is refused, as documented for each kind.
INT_PATH: Final = [str(2**70), str(2**53), "-5", "--5", "0", "abc", "1.5", "%00", quote("é"), quote(ARABIC_ONE * 2),
                   quote(SUPERSCRIPT_TWO), "1" * 4000, "%201", "0x10", "1e3", "+1", "%FF"]
CONVERSATION_PATH: Final = [str(2**70), "-5", "abc", "%00", quote("é中"), "x" * 4000, "%FF", f"g:{2**70}", "g:-1",
                            "g:abc", "g:", "g:%00", "d:1", "d:%00:1", "d:--1:1"]
SESSION_PATH: Final = ["%00", "x" * 4000, quote("é"), "abc", "-1", "%FF", "a" * 65, "..", "%2F"]
STATIC_PATH: Final = ["%00", "x" * 4000, quote("é"), "index.html%00.js", ".hidden", "app.py", "%FF", "APP.JS"]


def query_values(query: Query) -> list[tuple[str, bool]]:
    """(raw value, refused) for one query parameter; a value not refused must only not get a 5xx."""
    if query.kind in ("limit", "cursor"):
        return [("-1", True), ("--1", True), ("0", query.kind == "limit"), ("1e999", True), (str(2**70), True),
                (str(2**53), True), ("abc", True), ("1.5", True), ("%00", True), ("9" * 5000, True),
                (quote(ARABIC_ONE), True), (quote(SUPERSCRIPT_TWO), True), ("0x1", True), ("%zz", True), ("", False)]
    if query.kind == "ids":
        return [("", True), ("-1", True), ("--1", True), ("0", True), (str(2**70), True), (str(2**53), True),
                ("abc", True), ("1.5", True), ("%00", True), ("1_0", True), (quote(ARABIC_ONE), True),
                (",".join(["1"] * 501), True), (",".join(["1"] * 2000), True), ("1,,2", False), ("%201%20,%202", False)]
    if query.kind == "username":
        return [("", True), ("x" * 5000, True), ("%00", True), (quote("é" * 10), True), ("%FF", True), ("ab", True),
                (quote("bob name"), True)]
    assert query.kind == "text", query
    return [("", query.required), ("x" * 5000, query.required), (quote(" ".join(["w"] * 13)), query.required),
            ("%00", False), ("%FF%FE", False), (quote('"a" OR b* NEAR(c'), False), (quote("é中😀"), False)]


# ------------------------------------------------------------------------------------------------------ the cases

ANSWER: Final = frozenset(range(200, 500))
"""Any answer but a 5xx."""
BAD: Final = frozenset({400})


@dataclass(frozen=True)
class Case:
    label: str
    expect: frozenset[int]
    method: str
    path: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    wire: bytes = b""
    """Bytes no HTTP client sends (a header that is not UTF-8), sent as they are instead of the above."""


def encode_json(value: Any) -> bytes:
    raws: list[str] = []

    def swap(v: Any) -> Any:
        if isinstance(v, RawJson):
            raws.append(v.text)
            return f"\x01raw{len(raws) - 1}\x01"
        if isinstance(v, dict):
            return {k: swap(x) for k, x in v.items()}
        if isinstance(v, list):
            return [swap(x) for x in v]
        return v

    text = json.dumps(swap(value))
    for i, raw_text in enumerate(raws):
        text = text.replace(json.dumps(f"\x01raw{i}\x01"), raw_text)
    return text.encode()


def field_variants(body: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any], bool | None]]:
    """(label, body, refused) for each malformed value of each field, nested objects' fields included."""
    for key, value in body.items():
        name = prefix + key
        values: list[tuple[str, Any, bool | None]]
        if isinstance(value, bool):
            values = BOOL_VALUES
        elif isinstance(value, int):
            values = INT_VALUES
        elif isinstance(value, str):
            values = STR_VALUES
        elif isinstance(value, list):
            values = LIST_VALUES
        else:
            values = OBJECT_VALUES
        for label, bad, refused in values:
            yield f"{name}={label}", {**body, key: bad}, refused
        if isinstance(value, dict):
            for label, inner, refused in field_variants(value, name + "."):
                yield label, {**body, key: inner}, refused


async def chunks(data: bytes, size: int = 65_536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


GZIP_BOMB: Final = gzip.compress(b" " * 8_000_000, compresslevel=9)


class Sweep:
    """The valid request of one route, and its malformed variants."""

    def __init__(self, route: Route, world: World, methods: set[str]) -> None:
        self.route = route
        self.world = world
        self.methods = methods
        self.login: Login = getattr(world, route.caller)
        self.params = {**world.path_params(), **(route.params(world) if route.params else {})}
        self.query = {name: q.valid.format(w=world) for name, q in route.query.items()}

    def target(self, query: dict[str, str | None] | None = None, params: dict[str, str] | None = None) -> str:
        path = self.route.path.format_map({**self.params, **(params or {})})
        pairs = [f"{k}={v}" for k, v in {**self.query, **(query or {})}.items() if v is not None]
        return path + ("?" + "&".join(pairs) if pairs else "")

    def body(self) -> bytes | None:
        return None if self.route.body is None else encode_json(self.route.body(self.world))

    def case(self, label: str, expect: frozenset[int], *, target: str | None = None, body: Any = None,
             **headers: str) -> Case:
        """The valid request with one thing changed: the target, the body (bytes, a file or an async iterator), or
        headers (named with '_' for '-'; one given as '' is left out)."""
        sent = {"Authorization": f"Bearer {self.login.token}", "Content-Type": "application/json"}
        sent.update({name.replace("_", "-"): value for name, value in headers.items()})
        kwargs: dict[str, Any] = {"headers": {k: v for k, v in sent.items() if v != ""}}
        data = self.body() if body is None else body
        if data is not None:
            kwargs["data"] = data
        return Case(label, expect, self.route.method, target or self.target(), kwargs)

    def valid(self) -> Case:
        """Sent with a Content-Type that is not JSON, which the server does not check (section 23.1)."""
        return self.case("the valid request", frozenset({self.route.status}), Content_Type="text/plain")

    def variants(self) -> Iterator[Case]:
        yield self.other_method()
        if self.route.body is not None:
            yield from self.bodies()
            yield from self.fields()
        yield from self.paths()
        yield from self.queries()
        if self.route.auth != "none":
            yield from self.authorizations()

    def other_method(self) -> Case:
        method = next(m for m in ("PUT", "PATCH", "DELETE", "POST", "GET") if m not in self.methods)
        return replace(self.case(f"method {method}", frozenset({405})), method=method)

    def bodies(self) -> Iterator[Case]:
        valid = self.body()
        assert valid is not None
        huge = b"{" + b" " * (self.world.node.server.config.limits.max_http_body_bytes + 10) + b"}"
        for label, data in [
            ("not UTF-8", b'{"username": "\xff\xfe", "client_msg_id": "\xc3"}'),
            ("nested 50,000 deep", b"[" * 50_000 + b"]" * 50_000),
            ("objects nested 50,000 deep", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
            ("not JSON", b"{not json"),
            ("NaN", b'{"a": NaN}'),
            ("a trailing comma", valid[:-1] + b",}"),
            ("single quotes", b"{'a': 1}"),
            ("a list", b"[]"),
            ("a string", b'"text"'),
            ("a number", b"1"),
            ("null", b"null"),
            ("true", b"true"),
        ]:
            yield self.case(f"body {label}", BAD, body=data)
        yield self.case("body empty", self.route.refusals, body=b"")
        yield self.case("body over max_http_body_bytes", frozenset({413}), body=io.BytesIO(huge))
        yield self.case("body over max_http_body_bytes, chunked", frozenset({413}), body=chunks(huge))
        yield self.case("body gzip that is not gzip", BAD, body=b"not gzip at all", Content_Encoding="gzip")
        yield self.case("body deflate that is not deflate", BAD, body=b"not deflate", Content_Encoding="deflate")
        yield self.case("body gzip of 8 MB of spaces", frozenset({413}), body=GZIP_BOMB, Content_Encoding="gzip")
        yield self.case("body gzip of a good body", ANSWER, body=gzip.compress(valid), Content_Encoding="gzip")
        yield self.case("body in an unknown Content-Encoding", ANSWER, Content_Encoding="x-unknown")
        yield self.case("Content-Type multipart/form-data", ANSWER, Content_Type="multipart/form-data; boundary=x")
        yield self.case("Content-Type form-urlencoded", ANSWER, Content_Type="application/x-www-form-urlencoded")
        yield self.case("no Content-Type", ANSWER, Content_Type="")

    def fields(self) -> Iterator[Case]:
        assert self.route.body is not None
        for label, body, refused in field_variants(self.route.body(self.world)):
            expect = BAD if refused is None else self.route.refusals if refused else ANSWER
            yield self.case(f"body.{label}", expect, body=encode_json(body))

    def paths(self) -> Iterator[Case]:
        for name in self.params:
            if "{" + name + "}" not in self.route.path:
                continue
            if name == "conversation_id":
                alice, bob = self.world.alice.user_id, self.world.bob.user_id
                values = [*CONVERSATION_PATH, f"d:{alice}:{2**70}", f"d:-5:{alice}", f"d:{alice}:{bob}:x",
                          f"d:{bob}:{alice}", f"u:{bob}"]
                expect = frozenset({400, 404})
            elif name in ("name", "file"):
                values, expect = STATIC_PATH, frozenset({404})
            elif name in ("session_id", "file_id", "upload_id", "device_id"):
                values, expect = SESSION_PATH, frozenset({400, 404})
            else:
                values, expect = INT_PATH, BAD
            for value in values:
                yield self.case(f"path {name}={value[:40]}", expect, target=self.target(params={name: value}))

    def queries(self) -> Iterator[Case]:
        for name, query in self.route.query.items():
            for value, refused in query_values(query):
                yield self.case(f"query {name}={value[:40]}", BAD if refused else ANSWER,
                                target=self.target({name: value}))
            yield self.case(f"query {name} absent", BAD if query.required else ANSWER, target=self.target({name: None}))
            valid = self.query[name]
            yield self.case(f"query {name} repeated", ANSWER, target=self.target() + f"&{name}=abc&{name}={valid}")
            yield self.case(f"query {name} repeated, a bad one first", ANSWER,
                            target=self.target({name: "abc"}) + f"&{name}={valid}")

    def authorizations(self) -> Iterator[Case]:
        refused = frozenset({401}) if self.route.auth == "required" else frozenset({400, 401})
        token, user, session, now = self.login.token, self.login.user_id, self.login.session_id, int(time.time())
        secret = token_secret(self.world.node.server.config)

        def signed(key: str = secret, algorithm: str = "HS256", **claims: Any) -> str:
            base = {"sub": str(user), "sid": session, "iss": "pica", "iat": now, "exp": now + 3600, "jti": "x"}
            return jwt.encode({k: v for k, v in {**base, **claims}.items() if v is not None}, key, algorithm=algorithm)

        headers = {
            "absent": "",
            "Bearer": "Bearer",
            "Bearer and blanks": "Bearer   ",
            "Basic": "Basic dXNlcjpwYXNz",
            "the token without a scheme": token,
            "Token <token>": f"Token {token}",
            "Bearer a.b.c": "Bearer a.b.c",
            "a tampered signature": f"Bearer {token[:-2]}{'AA' if not token.endswith('AA') else 'BB'}",
            "two tokens": f"Bearer {token} {token}",
            "a 7 KB token": "Bearer " + "a" * 7000,
            "non-ASCII (UTF-8)": "Bearer é中",
            "a token signed with another key": f"Bearer {TokenService('k' * 40, 3600).issue(user, session, now)[0]}",
            "an unsigned token (alg none)": f"Bearer {jwt.encode({'sub': str(user)}, '', algorithm='none')}",
            "a token signed with HS512": f"Bearer {signed(algorithm='HS512')}",
            "an expired token": f"Bearer {signed(exp=now - 10)}",
            "a token without exp": f"Bearer {signed(exp=None)}",
            "a token without a session": f"Bearer {signed(sid=None)}",
            "a token of no session": f"Bearer {signed(sid='nosuchsession')}",
            "a token whose session is a number": f"Bearer {signed(sid=5)}",
            "a token of no user": f"Bearer {signed(sub='999999')}",
            "a token whose sub is not a number": f"Bearer {signed(sub='abc')}",
            "a token whose sub is a list": f"Bearer {signed(sub=[1])}",
            "a token whose sub is past 2^53": f"Bearer {signed(sub=str(2**70))}",
        }
        for label, header in headers.items():
            expect = frozenset({400}) if label == "absent" and self.route.auth == "optional" else refused
            yield self.case(f"Authorization {label}", expect, Authorization=header)
        body = self.body() or b""
        for label, value in [("not UTF-8", b"Bearer \xff\xfe"), ("Latin-1", "Bearer café".encode("latin-1"))]:
            request = b"\r\n".join([
                f"{self.route.method} {self.target()} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close",
                b"Authorization: " + value, f"Content-Length: {len(body)}".encode(), b"", body])
            yield Case(f"Authorization {label}", refused, self.route.method, self.target(), wire=request)


# ------------------------------------------------------------------------------------------------------ checking

def _error_codes() -> frozenset[str]:
    found, todo = set(), [PicaError]
    while todo:
        cls = todo.pop()
        found.add(cls.code)
        todo += cls.__subclasses__()
    return frozenset(found)


ERROR_CODES: Final = _error_codes()


async def raw_wire(node: Node, *pieces: bytes) -> tuple[int, bytes]:
    """Send bytes as they are on a connection of their own, piece by piece a moment apart; the answer's status and
    body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", node.server.http_port)
    try:
        for i, piece in enumerate(pieces):
            if i:
                await asyncio.sleep(0.05)
            writer.write(piece)
        # The head, then Content-Length bytes (or up to EOF without one): after answering early, aiohttp keeps the
        # connection a while to drain the body it did not read, so EOF may come seconds after the answer.
        head = await reader.readuntil(b"\r\n\r\n")
        lengths = [line.split(b":", 1)[1] for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")]
        body = await (reader.readexactly(int(lengths[0])) if lengths else reader.read())
    finally:
        writer.close()
    return int(head.split(b" ", 2)[1]), body


async def send(node: Node, case: Case) -> tuple[int, object]:
    if case.wire:
        status, body = await raw_wire(node, case.wire)
        return status, json.loads(body)
    return await raw(node, case.method, case.path, **case.kwargs)


async def problem(node: Node, case: Case) -> str | None:
    """What is wrong with the answer to a case, if anything."""
    try:
        status, body = await asyncio.wait_for(send(node, case), 10)
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:  # JSONDecodeError is a ValueError
        return f"no JSON answer: {type(exc).__name__}: {str(exc)[:300]}"
    if status not in case.expect:
        wanted = "not a 5xx" if case.expect == ANSWER else " or ".join(map(str, sorted(case.expect)))
        return f"status {status} (wanted {wanted}): {str(body)[:300]}"
    if status >= 400 and not (isinstance(body, dict) and body.get("code") in ERROR_CODES
                              and isinstance(body.get("message"), str) and body.get("retryable", True) is True):
        return f"status {status} without a documented error body: {str(body)[:300]}"
    return None


async def still_serving(world: World) -> str | None:
    node = world.node
    try:
        health = await raw(node, "GET", "/healthz")
        if health != (200, {"status": "ok"}):
            return f"/healthz answered {health}"
        ack = await api(node, world.carol, "POST", "/v1/messages",
                        json={"to": world.dave.user_id, "client_msg_id": "after", "body": {"text": "still here"}})
        page = await api(node, world.dave, "GET", f"/v1/conversations/{ack['conversation_id']}/messages")
    except Exception as exc:
        return f"a normal send failed: {type(exc).__name__}: {exc}"
    if page["messages"][-1]["body"] != {"text": "still here"}:
        return f"the message sent did not come back: {page}"
    return None


def registered_methods(node: Node) -> dict[str, set[str]]:
    assert node.server.services is not None
    methods: dict[str, set[str]] = {}
    for route in build_app(node.server.services).router.routes():
        if route.method != "HEAD" and route.resource is not None:
            methods.setdefault(route.resource.canonical, set()).add(route.method)
    return methods


# ------------------------------------------------------------------------------------------------------ tests


async def test_every_route_is_swept(node: Node) -> None:
    registered = {(method, path) for path, methods in registered_methods(node).items() for method in methods}
    assert registered == {(r.method, r.path) for r in ROUTES}


@pytest.mark.parametrize("route", ROUTES, ids=str)
async def test_malformed_input_gets_a_json_4xx(node: Node, route: Route) -> None:
    world = await make_world(node)
    sweep = Sweep(route, world, registered_methods(node)[route.path])
    valid = sweep.valid()
    if route.json:
        failed = await problem(node, valid)
        assert failed is None, f"{route}: the valid request failed: {failed}"
    else:
        async with aiohttp.ClientSession() as session, session.request(valid.method, node.url + valid.path,
                                                                       **valid.kwargs) as resp:
            assert resp.status == route.status
    problems = []
    for case in sweep.variants():
        found = await problem(node, case)
        if found is not None:
            problems.append(f"{route} [{case.label}]: {found}")
    found = await still_serving(world)
    if found is not None:
        problems.append(f"{route}, afterwards: {found}")
    if problems:
        pytest.fail(f"{len(problems)} problem(s):\n" + "\n".join(problems), pytrace=False)


async def test_a_refused_group_patch_changes_nothing(node: Node) -> None:
    """A bad 'muted_all' once got its 400 after the rename in the same PATCH had been made (and announced)."""
    world = await make_world(node)
    headers = {"Authorization": f"Bearer {world.alice.token}"}
    for body in [{"name": "renamed", "muted_all": "yes"}, {"name": 5, "muted_all": True}, {"name": "", "muted_all": 1}]:
        status, answer = await raw(node, "PATCH", f"/v1/groups/{world.group_id}", headers=headers, json=body)
        assert (status, answer["code"]) == (400, "bad_request"), body
    group = await api(node, world.alice, "GET", f"/v1/groups/{world.group_id}")
    assert (group["name"], group["muted_all"]) == ("team", False)
    page = await api(node, world.alice, "GET", f"/v1/conversations/g:{world.group_id}/messages")
    assert [m["body"]["system"]["event"] for m in page["messages"]] == ["created"]


BROKEN_FRAMING: Final = {
    "a request line over 8 KB": b"GET /v1/users/" + b"1" * 9000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "a header over 8 KB (a 10 KB token)": (b"GET /v1/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                           b"Authorization: Bearer " + b"a" * 10_000 + b"\r\n\r\n"),
    "a control character in a header": (b"GET /v1/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                        b"Authorization: Bearer a\x01b\r\n\r\n"),
    "a byte that is not ASCII in the path": b"GET /v1/users/\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "a chunk size that is not hex": (b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                     b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"),
    "both Content-Length and Transfer-Encoding": (b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                                  b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "a method that is not a token": b"G(T /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
}


async def test_broken_framing_is_refused_and_the_node_goes_on(node: Node) -> None:
    """aiohttp's parser refuses these itself, before any handler or middleware runs."""
    world = await make_world(node)
    for label, request in BROKEN_FRAMING.items():
        status, _ = await asyncio.wait_for(raw_wire(node, request), 10)
        assert status == 400, label
    assert await still_serving(world) is None


@pytest.fixture
async def impatient_node(tmp_path: Path) -> AsyncIterator[Node]:
    """A node that waits half a second for a request body."""
    async with started(tmp_path, http_body_timeout=0.5) as node:
        yield node


async def test_a_body_that_stalls_or_breaks_mid_way_is_answered_when_its_time_is_up(impatient_node: Node) -> None:
    """A chunk that breaks after the handler started reading leaves aiohttp's read waiting forever, like a client
    that stops sending: limits.http_body_timeout answers both."""
    login = b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    broken = (login + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n", b"zz\r\n0\r\n\r\n")
    stalled = (login + b"Content-Length: 100\r\n\r\n", b'{"username": ')
    for label, pieces in (("broken chunk", broken), ("stalled body", stalled)):
        started = time.monotonic()
        status, body = await asyncio.wait_for(raw_wire(impatient_node, *pieces), 5)
        assert (status, json.loads(body)["code"]) == (400, "bad_request"), label
        assert time.monotonic() - started >= 0.45, label
