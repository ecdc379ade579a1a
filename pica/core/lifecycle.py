"""Account lifecycle: deleting my account and exporting my data.

Deletion is one store transaction (:func:`pica.store.lifecycle.delete_account`, which also states the policy); this
service guards it with the password, counted like a login so that it cannot be used to guess passwords, then delivers
the group notices it produced and closes the account's sockets on this node at once (other nodes close theirs at
their next sweep of recent deletions, ``PicaServer._sweep_accounts``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final

from pica.core.accounts import AccountService
from pica.core.ports import Clock, GroupRouter
from pica.core.ratelimit import RateLimits
from pica.errors import InvalidToken
from pica.logs import audit
from pica.store.base import GroupRecord, MessageRecord, Store

EXPORT_PAGE: Final = 500
"""Messages read from the store per page of an export: what an export holds in memory at once."""

EXPORT_FORMAT: Final = "pica-export-1"


@dataclass(frozen=True, slots=True)
class Export:
    """A data export: everything but the messages (``head``, small), and the messages the user sent, page by page,
    so that the caller can stream them."""

    head: dict[str, Any]
    messages: AsyncIterator[list[MessageRecord]]


class LifecycleService:
    def __init__(self, store: Store, accounts: AccountService, clock: Clock, fanout: GroupRouter,
                 rates: RateLimits | None = None, disconnect: Callable[[int], None] | None = None) -> None:
        self._store = store
        self._accounts = accounts
        self._clock = clock
        self._fanout = fanout
        self._rates = rates
        self._disconnect = disconnect
        """Closes a user's sockets on this node (the composition root's; None: nothing to close)."""

    async def delete_account(self, user_id: int, password: object, address: str = "") -> None:
        """Delete the caller's account, given its password (proven like a login: AccountService.confirm_password)."""
        user = await self._store.get_user(user_id)
        if user is None or user.deleted:
            raise InvalidToken("invalid token")
        await self._accounts.confirm_password(user, password, address, "account_delete")
        changes = await self._store.delete_account(user_id, self._clock.now_ms())
        for change in changes:  # in commit order, each right after the other: no later frame overtakes them
            self._fanout.apply(change)
        if self._disconnect is not None:
            self._disconnect(user_id)
        audit("account_deleted", user_id=user_id, address=address, groups_left=len({c.group.group_id
                                                                                      for c in changes}))

    async def export(self, user_id: int) -> Export:
        """The caller's data (``rates.exports_per_user``): profile and settings, contacts, blocks, groups and pending
        invitations at once, then the messages they sent, read page by page as the caller consumes them."""
        if self._rates is not None:
            self._rates.check(self._rates.exports, user_id, "data exports")
        user = await self._store.get_user(user_id)
        if user is None or user.deleted:
            raise InvalidToken("invalid token")
        settings = await self._store.get_settings(user_id)
        head: dict[str, Any] = {
            "format": EXPORT_FORMAT,
            "exported_at": self._clock.now_ms(),
            "profile": {"user_id": user.user_id, "username": user.username, "created_at": user.created_at,
                        "settings": {"only_contacts": settings.only_contacts, "group_add": settings.group_add,
                                     "presence": settings.presence}},
            "contacts": [{"user_id": c.user_id, "username": c.username, "state": c.state,
                          "updated_at": c.updated_at} for c in await self._store.list_contacts(user_id)],
            "blocked": await self._store.list_blocked(user_id),
            "groups": [_group(g) for g in await self._store.list_groups(user_id)],
            "invitations": [{"group_id": i.group_id, "name": i.name, "inviter_id": i.inviter_id,
                             "created_at": i.created_at} for i in await self._store.list_invitations(user_id)],
        }
        audit("data_exported", user_id=user_id)
        return Export(head, self._sent(user_id))

    async def _sent(self, user_id: int) -> AsyncIterator[list[MessageRecord]]:
        after = ""
        while page := await self._store.sent_messages(user_id, after, EXPORT_PAGE):
            yield page
            if len(page) < EXPORT_PAGE:
                return
            after = page[-1].client_msg_id


def _group(g: GroupRecord) -> dict[str, Any]:
    return {"group_id": g.group_id, "conversation_id": g.conversation_id, "name": g.name, "owner_id": g.owner_id,
            "dissolved": g.dissolved, "created_at": g.created_at}
