"""Stopping the tasks we own, for sure.

``task.cancel()`` followed by ``await task`` is not enough on Python 3.11: ``asyncio.timeout``
(used inside redis-py and elsewhere) turns a cancellation that races with its own deadline into
``TimeoutError`` -- an ``OSError`` our loops catch and survive -- and the task then sleeps on
with nobody left to cancel it. :func:`cancel_and_wait` cancels again until the task is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable, Iterator
from typing import Any

RECANCEL_S = 0.5


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel ``tasks`` and wait until every one has finished, re-cancelling any that swallowed
    the cancellation. Their results and exceptions are retrieved (and dropped)."""
    await cancel_all(t for t in tasks if t is not None)


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    owned = list(tasks)
    pending = {t for t in owned if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_S)
    for task in owned:
        if not task.cancelled():
            task.exception()


def cancelling() -> bool:
    """Whether the current task has been asked to stop (for ``except`` clauses in loops that
    survive errors: a cancellation disguised as ``TimeoutError`` must still stop them)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class TaskSet:
    """Tasks started on the side (a reload, a retransmit, a process watcher) that their owner
    cancels and awaits on close; a finished task leaves the set by itself.

    Once :meth:`aclose` has begun the set takes no more work: :meth:`spawn` closes the coroutine
    unstarted and returns ``None`` (a callback racing the owner's close must not leave a task
    nobody will stop).
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))  # a snapshot: tasks leave the set as they finish

    def spawn(
        self, coro: Coroutine[Any, Any, Any], name: str | None = None
    ) -> asyncio.Task[Any] | None:
        if self._closed:
            coro.close()
            return None
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def adopt(self, task: asyncio.Task[Any]) -> bool:
        """Own a task started elsewhere (a server's connection handler); False once closed."""
        if self._closed:
            return False
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def aclose(self) -> None:
        self._closed = True
        await cancel_all(self._tasks)

    async def drain(self, timeout: float | None = None) -> None:
        """Close the set, but let its tasks finish first (cancelling what is left after
        ``timeout``): for work that must not be cut short, like writing a file."""
        self._closed = True
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        await cancel_all(self._tasks)
