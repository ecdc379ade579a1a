"""Group management: create, membership and role changes, reads. Permission checks run inside the store's
transaction (against the state being changed); this service orders the fan-out cache update after each commit."""

from __future__ import annotations

from pica.config import LimitsConfig
from pica.core.ports import Clock, GroupRouter
from pica.errors import BadRequest
from pica.store.base import GroupAction, GroupRecord, MemberRecord, Store

ACTIONS = frozenset({"add", "remove", "leave", "role", "transfer", "rename", "mute", "mute_all", "dissolve"})


class GroupService:
    def __init__(self, store: Store, fanout: GroupRouter, clock: Clock, limits: LimitsConfig) -> None:
        self._store = store
        self._fanout = fanout
        self._clock = clock
        self._limits = limits

    async def create(self, owner: int, name: object, members: object) -> GroupRecord:
        if not isinstance(name, str):
            raise BadRequest("'name' must be a string")
        member_ids = _user_ids(members, "members")
        change = await self._store.create_group(owner, name, member_ids, self._clock.now_ms(),
                                                self._limits.max_group_members)
        self._fanout.apply(change)  # no await in between: nothing committed later is delivered first
        return change.group

    async def act(self, kind: str, actor: int, group_id: int, *, user_ids: object = (), role: str = "",
                  name: str = "", flag: bool = False) -> GroupRecord:
        if kind not in ACTIONS:
            raise BadRequest(f"unknown group action {kind!r}")
        action = GroupAction(kind, actor, group_id, self._clock.now_ms(), tuple(_user_ids(user_ids, "user_ids")),
                             role, name, flag, self._limits.max_group_members)
        change = await self._store.group_action(action)
        self._fanout.apply(change)
        return change.group

    async def get(self, user_id: int, group_id: int) -> GroupRecord:
        return await self._store.get_group(user_id, group_id)

    async def of_user(self, user_id: int) -> list[GroupRecord]:
        return await self._store.list_groups(user_id)

    async def members(self, user_id: int, group_id: int) -> list[MemberRecord]:
        return await self._store.group_members(user_id, group_id)


def _user_ids(value: object, field: str) -> list[int]:
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 < v < 2**53 for v in value
    ):
        raise BadRequest(f"'{field}' must be a list of user ids")
    return list(value)
