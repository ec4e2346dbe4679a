"""Run a real server in-process for tests and benchmarks (uvicorn on a free port)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import httpx
import uvicorn
from starlette.applications import Starlette

from core.config import Settings
from core.redisproc import free_port
from jangteo.app import WS_MAX_SIZE, create_app, listen
from jangteo.context import AppContext


@dataclasses.dataclass
class RunningServer:
    settings: Settings
    app: Starlette
    base_url: str
    http: httpx.AsyncClient

    @property
    def ctx(self) -> AppContext:
        context: AppContext = self.app.state.ctx
        return context

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.admin_key}"}

    async def create_broadcast(self, title: str = "테스트 방송") -> dict[str, str]:
        r = await self.http.post("/api/broadcasts", json={"title": title}, headers=self.admin())
        r.raise_for_status()
        doc: dict[str, str] = r.json()
        return doc

    async def live_broadcast(self, title: str = "테스트 방송") -> dict[str, str]:
        """A broadcast already on air (as if its host had gone live), for viewers to watch."""
        doc = await self.create_broadcast(title)
        await self.ctx.store.ensure_live(doc["id"])
        return doc

    async def token(self, bid: str, role: str, name: str, as_token: str | None = None) -> str:
        headers = {"Authorization": f"Bearer {as_token}"} if as_token else self.admin()
        r = await self.http.post(
            f"/api/broadcasts/{bid}/tokens", json={"role": role, "name": name}, headers=headers
        )
        r.raise_for_status()
        token: str = r.json()["token"]
        return token


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of a token."""
    return {"Authorization": f"Bearer {token}"}


async def eventually(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    """Poll a server-side condition that has no event to await (a session reaped, a count)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


SHUTDOWN_LIMIT_S = 20  # uvicorn's graceful 5 s, then closing peers (5 s deadline each, in parallel)


@contextlib.asynccontextmanager
async def running_server(settings: Settings) -> AsyncIterator[RunningServer]:
    port = settings.port or free_port(settings.host)
    settings = dataclasses.replace(settings, port=port)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=port,
        log_config=None,
        lifespan="on",
        ws_max_size=WS_MAX_SIZE,
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    sock = listen(settings.host, port)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task
            raise RuntimeError("server did not start")
        await asyncio.sleep(0.01)
    base = f"http://{settings.host}:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=20) as http:
        try:
            yield RunningServer(settings, app, base, http)
        finally:
            server.should_exit = True
            done, _ = await asyncio.wait({task}, timeout=15)
            if not done:
                import sys as _s

                for t in asyncio.all_tasks():
                    print("TASK", t.get_name(), file=_s.stderr)
                    t.print_stack(file=_s.stderr)
                raise RuntimeError("server shutdown hung")
            await task


async def start_serve_process(
    env: dict[str, str], log: str = os.devnull
) -> tuple[subprocess.Popen[bytes], str]:
    """``jangteo serve`` as a child process on a free port (with ``env`` over ours); returns it
    and its base URL once /healthz answers. The caller stops it with :func:`stop_process`."""
    port = free_port()
    with open(log, "ab") as err:  # noqa: ASYNC230 - opened once, the child keeps its copy
        proc = subprocess.Popen(  # noqa: ASYNC220 - a second server process, started once
            [sys.executable, "-m", "jangteo.cli", "serve", "--port", str(port)],
            env=os.environ | env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base) as http:
        for _ in range(400):
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/healthz")).status_code == 200:
                    return proc, base
            if proc.poll() is not None:
                break
            await asyncio.sleep(0.05)  # another process binding its port: nothing to await
    stop_process(proc)
    raise RuntimeError(f"jangteo serve did not start (see {log})")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def raw_get(base_url: str, raw_path: str) -> tuple[int, bytes]:
    """GET ``raw_path`` sent as written (an HTTP client would take dot segments out first):
    the status and the whole answer."""
    url = urlsplit(base_url)
    assert url.hostname is not None and url.port is not None
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        request = f"GET {raw_path} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n\r\n"
        writer.write(request.encode("ascii"))
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, _ = answer.partition(b"\r\n")
    return int(status_line.split()[1]), answer
