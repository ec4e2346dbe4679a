"""The one boundary where a Redis failure becomes a problem for a client.

HTTP handlers let :class:`redis.exceptions.RedisError` propagate; the app's error handler, the
order fast path and the chat socket each hand it to :func:`unavailable`, which logs it once and
answers 503 ``unavailable`` (the client retries; nothing was acknowledged). Background loops
(chat readers, sweepers, webhooks) keep their own reconnect policy and never answer anyone.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from .problems import Unavailable

log = logging.getLogger("jangteo.storage")
DETAIL = "storage is unavailable; try again"


def unavailable(exc: RedisError | OSError, where: str) -> Unavailable:
    log.warning("redis error on %s: %s", where, exc)
    return Unavailable(DETAIL)
