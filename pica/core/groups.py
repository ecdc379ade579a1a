"""Group management: create, membership and role changes, invitations, reads. Permission and consent checks run
inside the store's transaction (against the state being changed); this service orders the fan-out cache update after
each commit and tells invitees of their invitations."""

from __future__ import annotations

from pica.config import LimitsConfig
from pica.core.ports import Clock, Delivery, GroupRouter
from pica.core.wire import message_frame
from pica.errors import BadRequest
from pica.protocol import frames as f
from pica.protocol.outbound import OutboundFrame
from pica.store.base import GroupAction, GroupChange, GroupRecord, InvitationRecord, MemberRecord, Store

ACTIONS = frozenset({"add", "remove", "leave", "role", "transfer", "rename", "mute", "mute_all", "dissolve"})


class GroupService:
    def __init__(self, store: Store, fanout: GroupRouter, clock: Clock, limits: LimitsConfig,
                 delivery: Delivery | None = None) -> None:
        self._store = store
        self._fanout = fanout
        self._clock = clock
        self._limits = limits
        self._delivery = delivery
        """Reaches invitees' devices with ``invitation`` frames (None: nobody is told, as in a unit test)."""

    async def create(self, owner: int, name: object, members: object) -> GroupChange:
        """The new group; ``invited`` in the change: those named who were invited rather than added."""
        if not isinstance(name, str):
            raise BadRequest("'name' must be a string")
        member_ids = _user_ids(members, "members")
        change = await self._store.create_group(owner, name, member_ids, self._clock.now_ms(),
                                                self._limits.max_group_members)
        self._fanout.apply(change)  # no await in between: nothing committed later is delivered first
        self._tell_invited(change, owner)
        return change

    async def act(self, kind: str, actor: int, group_id: int, *, user_ids: object = (), role: str = "",
                  name: str = "", flag: bool = False) -> GroupChange:
        if kind not in ACTIONS:
            raise BadRequest(f"unknown group action {kind!r}")
        action = GroupAction(kind, actor, group_id, self._clock.now_ms(), tuple(_user_ids(user_ids, "user_ids")),
                             role, name, flag, self._limits.max_group_members)
        change = await self._store.group_action(action)
        self._fanout.apply(change)
        self._tell_invited(change, actor)
        if self._delivery is not None:
            for user_id, told in change.told:  # the removed member's devices, live; offline ones sync it
                self._delivery.deliver((user_id,), OutboundFrame(message_frame(told)))
        return change

    def _tell_invited(self, change: GroupChange, inviter: int) -> None:
        if change.invitations and self._delivery is not None:
            frame = f.Invitation(group_id=change.group.group_id, name=change.group.name, inviter_id=inviter,
                                 state="pending")
            self._delivery.deliver(change.invitations, OutboundFrame(frame))

    # ------------------------------------------------------------------------------------------ invitations

    async def invitations(self, user_id: int) -> list[InvitationRecord]:
        return await self._store.list_invitations(user_id)

    async def answer(self, user_id: int, group_id: int, accept: bool) -> GroupRecord | None:
        """Accept (join; the group as it is then) or decline (None) an invitation. The user's devices are told, so
        that each drops it from its list."""
        pending = {i.group_id: i for i in await self._store.list_invitations(user_id)}
        if accept:
            change = await self._store.accept_invitation(user_id, group_id, self._clock.now_ms(),
                                                         self._limits.max_group_members)
            self._fanout.apply(change)
            group: GroupRecord | None = change.group
        else:
            await self._store.decline_invitation(user_id, group_id)
            group = None
        invitation = pending.get(group_id)
        if self._delivery is not None and invitation is not None:
            frame = f.Invitation(group_id=group_id, name=invitation.name, inviter_id=invitation.inviter_id,
                                 state="accepted" if accept else "declined")
            self._delivery.deliver((user_id,), OutboundFrame(frame))
        return group

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
