"""Stopping owned tasks even when one swallows its cancellation (as 3.11's asyncio.timeout can)."""

from __future__ import annotations

import asyncio

from core.tasks import TaskSet, cancel_all, cancel_and_wait, cancelling


async def _stubborn(swallow: int, seen: list[str]) -> None:
    """Survives its first ``swallow`` cancellations, like a loop whose ``except OSError`` caught a
    cancellation turned into TimeoutError."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            seen.append("cancel")
            if len(seen) > swallow:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]


async def test_a_task_that_swallows_a_cancel_is_cancelled_again() -> None:
    seen: list[str] = []
    task = asyncio.get_running_loop().create_task(_stubborn(2, seen))
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled()
    assert seen == ["cancel", "cancel", "cancel"]


async def test_cancel_all_retrieves_errors_and_ignores_finished_tasks() -> None:
    async def boom() -> None:
        raise ValueError("x")

    loop = asyncio.get_running_loop()
    failed = loop.create_task(boom())
    finished = loop.create_task(asyncio.sleep(0))
    await asyncio.wait({failed, finished})
    sleeper = loop.create_task(asyncio.sleep(3600))
    await cancel_all([failed, finished, sleeper, sleeper])
    assert sleeper.cancelled() and not finished.cancelled()


async def test_cancelling_tells_a_loop_it_was_asked_to_stop() -> None:
    states: list[bool] = []

    async def loop_body() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            states.append(cancelling())
            raise

    task = asyncio.get_running_loop().create_task(loop_body())
    await asyncio.sleep(0)
    states.append(cancelling())
    await cancel_and_wait(task)
    assert states == [False, True]


async def test_a_task_set_forgets_finished_tasks_and_cancels_the_rest() -> None:
    tasks = TaskSet()
    done = asyncio.Event()

    async def quick() -> None:
        done.set()

    tasks.spawn(quick())
    tasks.spawn(asyncio.sleep(3600), name="sleeper")
    await done.wait()
    await asyncio.sleep(0)  # the done callback runs
    assert [t.get_name() for t in tasks._tasks] == ["sleeper"]
    await tasks.aclose()
    assert not tasks._tasks


async def test_a_closed_task_set_refuses_work() -> None:
    tasks = TaskSet()
    ran: list[str] = []

    async def work() -> None:
        ran.append("ran")

    await tasks.aclose()
    assert tasks.closed
    assert tasks.spawn(work()) is None  # closed unstarted: no "never awaited" warning either
    await asyncio.sleep(0)
    assert ran == [] and len(tasks) == 0


async def test_work_spawned_while_the_set_closes_is_refused() -> None:
    tasks = TaskSet()
    refused: list[object] = []

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        finally:  # a task that, on its way out, tries to start another
            refused.append(tasks.spawn(asyncio.sleep(3600)))

    tasks.spawn(stubborn())
    await asyncio.sleep(0)
    await tasks.aclose()
    assert refused == [None] and len(tasks) == 0


async def test_draining_lets_the_work_finish_and_takes_no_more() -> None:
    tasks = TaskSet()
    done: list[int] = []
    gate = asyncio.Event()

    async def write(n: int) -> None:
        await gate.wait()
        done.append(n)

    for n in range(3):
        tasks.spawn(write(n))
    drained = asyncio.get_running_loop().create_task(tasks.drain(timeout=5))
    await asyncio.sleep(0)
    assert tasks.spawn(write(9)) is None  # closed to new work while it drains
    gate.set()
    await drained
    assert done == [0, 1, 2]
