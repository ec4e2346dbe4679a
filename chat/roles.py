"""Who may do what in chat: one table, tested as a matrix."""

from __future__ import annotations

import enum

from jangteo.problems import Forbidden
from jangteo.tokens import Role


class Action(enum.StrEnum):
    SEND = "send"
    HEART = "heart"
    DELETE = "delete"
    BAN = "ban"
    SETTINGS = "settings"
    ANNOUNCE = "announce"
    BYPASS_SLOW_MODE = "bypass_slow_mode"
    BYPASS_RATE_LIMIT = "bypass_rate_limit"
    BYPASS_FREEZE = "bypass_freeze"


_ALL = frozenset(Role)
_STAFF = frozenset({Role.HOST, Role.COHOST, Role.MODERATOR})
_MODS = frozenset({Role.HOST, Role.MODERATOR})

PERMISSIONS: dict[Action, frozenset[Role]] = {
    Action.SEND: _ALL,
    Action.HEART: _ALL,
    Action.DELETE: _MODS,
    Action.BAN: _MODS,
    Action.SETTINGS: _MODS,
    Action.ANNOUNCE: frozenset({Role.HOST}),
    Action.BYPASS_SLOW_MODE: _STAFF,
    Action.BYPASS_RATE_LIMIT: frozenset({Role.HOST}),
    Action.BYPASS_FREEZE: _STAFF,
}


def may(role: Role, action: Action) -> bool:
    return role in PERMISSIONS[action]


def require(role: Role, action: Action) -> None:
    if not may(role, action):
        raise Forbidden(f"role {role.value} may not {action.value.replace('_', ' ')}")
