"""Running a process's main coroutine on the best event loop there is."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from .config import ConfigError


def run(coro: Coroutine[Any, Any, None], loop: str = "auto") -> None:
    """Run ``coro`` on uvloop when it is installed (and not refused), else on asyncio's loop."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop != "asyncio":
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            if loop == "uvloop":
                raise ConfigError("--loop uvloop: uvloop is not installed") from None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(coro)
