"""Group permission rules and notice bodies, shared by every store backend.

Pure functions: a backend reads the roles it needs inside its transaction (the state being changed), asks these
functions, and writes what they allow. Keeping the rules here, once, means SQLite and PostgreSQL cannot drift apart
on who may do what (the contract suite checks the outcome on both). Each function raises the domain error the
protocol documents (docs/protocol.md, "Groups"), in the order the checks are listed there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pica.errors import BadRequest, Forbidden, GroupNotFound, NotFound, UserNotFound
from pica.protocol.text import has_control_chars

RANK: Final = {"owner": 3, "admin": 2, "member": 1}
MAX_NAME: Final = 100
NOTICE_LIST_LIMIT: Final = 100
"""A notice lists the user ids it concerns up to this many; a bigger change gives only the count."""

Event = dict[str, Any]


def check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise BadRequest(f"a group name is 1-{MAX_NAME} characters")
    if has_control_chars(name):
        raise BadRequest("a group name must not contain control characters")
    return name


def listed(user_ids: list[int] | tuple[int, ...]) -> dict[str, Any]:
    if len(user_ids) <= NOTICE_LIST_LIMIT:
        return {"user_ids": list(user_ids)}
    return {"count": len(user_ids)}


def plan_create(owner: int, name: str, members: Iterable[int], max_members: int) -> tuple[str, tuple[int, ...]]:
    """A new group's name and everyone named (the owner first, then the others in request order, once each)."""
    name = check_name(name)
    everyone = tuple(dict.fromkeys([owner, *members]))
    if len(everyone) > max_members:
        raise BadRequest(f"a group has at most {max_members} members")
    return name, everyone


def plan_founders(owner: int, name: str, everyone: tuple[int, ...], consent: Mapping[int, Consent]) -> AddPlan:
    """Who of those named at creation joins (the owner and whoever's consent allows it) and who is invited, by
    the rule of adds; the ``created`` notice lists those who joined."""
    check_users_found(len(everyone), sum(1 for u in everyone if u in consent))
    outcome = {u: ADD if u == owner else add_outcome(consent[u]) for u in everyone}
    joined = tuple(u for u in everyone if outcome[u] == ADD)
    return AddPlan(joined, tuple(u for u in everyone if outcome[u] != ADD),
                   tuple(u for u in everyone if outcome[u] == INVITE),
                   {"event": "created", "by": owner, "name": name, **listed(joined)})


def check_users_found(wanted: int, found: int) -> None:
    """``found`` of the ``wanted`` (distinct) users exist: all of them must."""
    if found != wanted:
        raise UserNotFound("some of these users do not exist")


def member_roles(user_ids: Iterable[int], found: Mapping[int, str]) -> dict[int, str]:
    """The roles of the members an action names (``found``: the roles read), in the order named; naming a
    non-member is refused."""
    roles = {}
    for user_id in user_ids:
        if user_id not in found:
            raise BadRequest(f"user {user_id} is not a member of this group")
        roles[user_id] = found[user_id]
    return roles


def acting_role(actor_role: str | None, dissolved: bool) -> str:
    """The role of whoever acts on a group: a non-member gets the same refusal as for a group that does not exist
    (ids cannot be probed); nobody acts on a dissolved group."""
    if actor_role is None:
        raise GroupNotFound()
    if dissolved:
        raise Forbidden("the group was dissolved")
    return actor_role


def require_rank(actor_role: str, needed: str, what: str) -> None:
    if RANK[actor_role] < RANK[needed]:
        raise Forbidden(f"only the {'owner' if needed == 'owner' else 'owner or an admin'} can {what}")


@dataclass(frozen=True, slots=True)
class Consent:
    """What a group add may do to one user, read inside the add's transaction."""

    group_add: str
    """Their setting: "everyone", "contacts" or "nobody"."""
    contact: bool
    """They and the actor are accepted contacts."""
    blocked: bool
    """They blocked the actor."""


ADD: Final = "add"
INVITE: Final = "invite"
DROP: Final = "drop"


def add_outcome(consent: Consent) -> str:
    """The consent rule of group adds: ADD (they become a member), INVITE (a pending invitation they may accept) or
    DROP (nothing is stored; the actor is told "invited" all the same, so that a block is not disclosed)."""
    if consent.blocked:
        return DROP
    if consent.group_add == "everyone" or (consent.group_add == "contacts" and consent.contact):
        return ADD
    return INVITE


@dataclass(frozen=True, slots=True)
class AddPlan:
    added: tuple[int, ...]
    invited: tuple[int, ...]
    """Told "invited": those to store an invitation for and the dropped."""
    invitations: tuple[int, ...]
    """The invitations to store."""
    event: Event | None
    """The notice, when somebody was added."""


def plan_add(actor: int, actor_role: str, requested: Iterable[int], existing: set[int], max_members: int,
             consent: Mapping[int, Consent]) -> AddPlan:
    """Who joins (the requested users not yet members whose consent allows it, in request order), who is invited,
    and the notice. ``consent``: every requested non-member's (a missing one does not exist: UserNotFound)."""
    require_rank(actor_role, "admin", "add members")
    wanted = tuple(u for u in dict.fromkeys(requested) if u not in existing)
    if not wanted:
        raise BadRequest("everyone named is a member already")
    outcome = {u: add_outcome(consent[u]) for u in wanted if u in consent}
    # The size first (users that do not exist counted as joining), then their existence: the order of the checks
    # the protocol lists.
    if len(existing) + sum(1 for u in wanted if outcome.get(u, ADD) == ADD) > max_members:
        raise BadRequest(f"a group has at most {max_members} members")
    check_users_found(len(wanted), len(outcome))
    added = tuple(u for u in wanted if outcome[u] == ADD)
    return AddPlan(added, tuple(u for u in wanted if outcome[u] != ADD),
                   tuple(u for u in wanted if outcome[u] == INVITE),
                   {"event": "members_added", "by": actor, **listed(added)} if added else None)


def check_invitation(inviter_role: str | None, dissolved: bool, already_member: bool, members: int,
                     max_members: int) -> None:
    """Accepting an invitation, checked again at that moment: it is valid while its inviter is still the group's
    owner or an admin (an inviter who left or was demoted no longer vouches for it)."""
    if inviter_role is None or RANK[inviter_role] < RANK["admin"]:
        raise NotFound("no valid invitation to this group")
    if dissolved:
        raise Forbidden("the group was dissolved")
    if already_member:
        raise BadRequest("you are a member of this group already")
    if members + 1 > max_members:
        raise BadRequest(f"a group has at most {max_members} members")


def successor(members: Mapping[int, tuple[str, int]]) -> int | None:
    """Who becomes owner when the owner's account is deleted: among the other members (``members``: id → (role,
    joined_seq)), the highest ranked, then the longest in the group, then the lowest id; None when nobody is left
    (the group is then dissolved)."""
    if not members:
        return None
    return min(members, key=lambda u: (-RANK[members[u][0]], members[u][1], u))


def plan_leave(kind: str, actor: int, actor_role: str, roles: Mapping[int, str]) -> tuple[tuple[int, ...], Event]:
    """``leave`` (the actor) or ``remove`` (``roles``: the targets' roles): who goes, and the notice."""
    for role in roles.values():
        if role == "owner":
            raise Forbidden("the owner cannot leave or be removed; transfer ownership or dissolve the group")
        if kind == "remove":
            require_rank(actor_role, "admin", "remove members")
            if RANK[role] >= RANK[actor_role]:
                raise Forbidden("you can only remove members ranked below you")
    removed = tuple(roles)
    return removed, {"event": "member_left" if kind == "leave" else "members_removed", "by": actor,
                     **listed(removed)}


def removed_notice(group_id: int, conversation_id: str, name: str, actor: int, notice_seq: int) -> Event:
    """The notice a removed member finds in their own timeline: which group (named as it was: they can no longer
    read it), who removed them, and the seq of the group's ``members_removed`` notice, the last they could see."""
    return {"system": {"event": "removed_from_group", "group_id": group_id, "conversation_id": conversation_id,
                       "name": name, "by": actor, "seq": notice_seq}}


def check_role_request(actor_role: str, role: str) -> None:
    require_rank(actor_role, "owner", "change roles")
    if role not in ("admin", "member"):
        raise BadRequest("role must be 'admin' or 'member'")


def plan_role(actor: int, role: str, roles: Mapping[int, str]) -> Event:
    if any(r == "owner" for r in roles.values()):
        raise Forbidden("use transfer to change the owner")
    return {"event": "role_changed", "by": actor, "role": role, **listed(tuple(roles))}


def check_transfer_request(actor_role: str, user_ids: tuple[int, ...]) -> None:
    require_rank(actor_role, "owner", "transfer ownership")
    if len(user_ids) != 1:
        raise BadRequest("name exactly one new owner")


def plan_transfer(actor: int, target: int) -> Event:
    if target == actor:
        raise BadRequest("you are the owner already")
    return {"event": "owner_changed", "by": actor, "user_id": target}


def plan_rename(actor: int, actor_role: str, name: str) -> tuple[str, Event]:
    require_rank(actor_role, "admin", "rename the group")
    name = check_name(name)
    return name, {"event": "renamed", "by": actor, "name": name}


def plan_mute(actor: int, actor_role: str, roles: Mapping[int, str], flag: bool) -> Event:
    """Mute or unmute members (``roles``: their roles; the rank check on the actor comes before reading them)."""
    if any(RANK[r] >= RANK[actor_role] for r in roles.values()):
        raise Forbidden("you can only mute members ranked below you")
    return {"event": "muted" if flag else "unmuted", "by": actor, **listed(tuple(roles))}


def plan_mute_all(actor: int, actor_role: str, flag: bool) -> Event:
    require_rank(actor_role, "admin", "mute the group")
    return {"event": "group_muted" if flag else "group_unmuted", "by": actor}


def plan_dissolve(actor: int, actor_role: str) -> Event:
    require_rank(actor_role, "owner", "dissolve the group")
    return {"event": "dissolved", "by": actor}
