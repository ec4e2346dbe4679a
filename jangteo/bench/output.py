"""How a benchmark command reports: one JSON line."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any


def prints_json(
    p: argparse.ArgumentParser,
    bench: Callable[[argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]],
) -> None:
    """``p`` runs the async ``bench`` and prints its result as one JSON line."""

    def run(args: argparse.Namespace) -> int:
        print(json.dumps(asyncio.run(bench(args)), ensure_ascii=False), flush=True)
        return 0

    p.set_defaults(run=run)
