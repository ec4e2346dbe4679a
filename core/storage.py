"""The one boundary where a Redis failure becomes a problem for a client.

HTTP handlers let :class:`redis.exceptions.RedisError` propagate; the app's error handler, the
order fast path and the chat socket each hand it to :func:`unavailable`, which logs it once and
answers 503 ``unavailable`` (the client retries; nothing was acknowledged). Background loops
(chat readers, sweepers, webhooks) keep their own reconnect policy and never answer anyone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from .problems import Unavailable
from .tasks import cancelling

log = logging.getLogger("jangteo.storage")
DETAIL = "storage is unavailable; try again"


def unavailable(exc: RedisError | OSError, where: str) -> Unavailable:
    log.warning("redis error on %s: %s", where, exc)
    return Unavailable(DETAIL, headers={"Retry-After": "2"})


async def keep_doing(
    step: Callable[[], Awaitable[object]],
    pause_s: Callable[[], float],
    what: str,
    logger: logging.Logger = log,
) -> None:
    """A background loop over Redis: ``step``, then sleep ``pause_s()``, forever. A Redis or
    network failure is logged and the loop goes on; a cancellation (also one that races a
    timeout inside ``step``) ends it."""
    while True:
        try:
            await step()
        except (RedisError, OSError) as exc:
            if cancelling():
                raise asyncio.CancelledError from exc
            logger.warning("%s: %s", what, exc)
        await asyncio.sleep(pause_s())
