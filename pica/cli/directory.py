"""What ``pica chat`` knows by name: users (id -> username) and conversations (id -> display name, kind, peer).

Names are learnt where the server hands them out (the conversation list, contacts, the usernames the user types) and
otherwise asked for once per id (GET /v1/users/{id}); until the answer comes a sender shows as ``user#ID``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from pica.client import PicaClient, PicaHttpError


@dataclass
class Conv:
    """A conversation as the chat shows it. ``name``: the peer's username, or ``#ID name`` for a group."""

    conversation_id: str
    name: str
    kind: str
    peer_id: int = 0
    group_id: int = 0
    peer_delivered: int = 0
    peer_read: int = 0


@dataclass
class Opened:
    """The open conversation and what this screen knows of it."""

    conv: Conv
    oldest: int = 0
    """Lowest seq shown so far (/more pages before it); 0 when nothing was loaded."""
    more: bool = False
    last_seq: int = 0
    mine: set[int] = field(default_factory=set)
    """Seqs of my messages: receipts are shown only when they cover one of them."""
    delivered: int = 0
    read: int = 0


class UnknownUser(Exception):
    """A command named a user who does not exist."""


def direct_id(a: int, b: int) -> str:
    low, high = sorted((a, b))
    return f"d:{low}:{high}"


class Directory:
    def __init__(self, client: PicaClient) -> None:
        self.client = client
        self.me = 0
        self.names: dict[int, str] = {}
        self.convs: dict[str, Conv] = {}
        self._asked: set[int] = set()

    async def all_conversations(self) -> list[dict[str, Any]]:
        """Every conversation (the list is paged by last activity, ties by id), and learn the names it carries."""
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 100}
        while True:
            data = await self.client.http.request("GET", "/v1/conversations", params=params)
            page: list[dict[str, Any]] = data["conversations"]
            found.extend(page)
            if not page:  # (the server may cap pages below 100: only an empty one says the end)
                break
            params.update(before_ts=page[-1]["last_ts"], before_id=page[-1]["conversation_id"])
        self.learn(found)
        return found

    def learn(self, conversations: list[dict[str, Any]]) -> None:
        for c in conversations:
            cid, kind = str(c["conversation_id"]), str(c["kind"])
            if kind == "group":
                fresh = Conv(cid, f"#{c['group_id']} {c['name']}", kind, group_id=int(c["group_id"]))
            else:
                peer = int(c.get("peer_id") or 0)
                if peer and c.get("name"):
                    self.names[peer] = str(c["name"])
                fresh = Conv(cid, self.name_of(peer), kind, peer_id=peer,
                             peer_delivered=int(c.get("peer_delivered_seq") or 0),
                             peer_read=int(c.get("peer_read_seq") or 0))
            known = self.convs.get(cid)
            if known is None:
                self.convs[cid] = fresh
            else:  # updated in place: the open conversation and queued sends hold this object
                known.__dict__.update(fresh.__dict__)

    def name_of(self, user_id: int) -> str:
        return self.names.get(user_id) or f"user#{user_id}"

    async def resolve(self, user_ids: list[int]) -> None:
        """Learn the names of these users (GET /v1/users/{id}, once per unknown id)."""
        for user_id in dict.fromkeys(user_ids):
            if user_id in self.names or user_id in self._asked:
                continue
            self._asked.add(user_id)
            with contextlib.suppress(PicaHttpError, aiohttp.ClientError, OSError):
                user = await self.client.user(user_id)
                self.names[user_id] = str(user["username"])

    async def conv(self, conversation_id: str) -> Conv:
        conv = self.convs.get(conversation_id)
        if conv is None:
            with contextlib.suppress(PicaHttpError, aiohttp.ClientError, OSError):
                await self.all_conversations()
            conv = self.convs.get(conversation_id)
        if conv is None:  # not in the list (our own timeline u:<id>) or not reachable now: a name from the id
            kind, _, rest = conversation_id.partition(":")
            if kind == "d":
                ids = [int(x) for x in rest.split(":")]
                peer = next((i for i in ids if i != self.me), self.me)
                conv = Conv(conversation_id, self.name_of(peer), "direct", peer_id=peer)
            elif kind == "g":
                conv = Conv(conversation_id, f"#{rest}", "group", group_id=int(rest))
            else:
                conv = Conv(conversation_id, "me", kind)
            self.convs[conversation_id] = conv
        return conv

    async def user_ids(self, names: str) -> list[int]:
        ids = []
        for name in names.replace(",", " ").split():
            try:
                user_id = await self.client.find_user(name)
            except PicaHttpError as exc:
                if exc.code in ("user_not_found", "invalid_username"):
                    raise UnknownUser(f"! no user named {name!r}") from None
                raise
            self.names[user_id] = name.lower()
            ids.append(user_id)
        return ids
