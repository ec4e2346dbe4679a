"""The ``jangteo`` command: ``serve``, ``demo``, ``bench``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import uvicorn

from core.config import (
    ConfigError,
    Settings,
    from_env,
    parse_ice_servers,
    parse_size,
    parse_workers,
    with_generated_secrets,
)
from core.loop import run
from core.malloc import tune_malloc
from core.redisproc import EmbeddedRedisError, RedisServer

from . import logs

log = logging.getLogger("jangteo")


def _server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="listen address (env JANGTEO_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (env JANGTEO_PORT, default 8080)")
    p.add_argument("--redis-url", help="Redis to use (env REDIS_URL); none: start an embedded one")
    p.add_argument("--admin-key", help="operator key (env JANGTEO_ADMIN_KEY)")
    p.add_argument(
        "--ice-servers",
        help="STUN/TURN urls, comma-separated or JSON (env JANGTEO_ICE_SERVERS; default none)",
    )
    p.add_argument(
        "--ice-host-addresses",
        help="local addresses to gather, comma-separated (env JANGTEO_ICE_HOST_ADDRESSES)",
    )
    p.add_argument(
        "--announced-address",
        help="address written into our ICE candidates (env JANGTEO_ANNOUNCED_ADDRESS)",
    )
    p.add_argument("--video-size", help="output frame size, e.g. 1280x720 (env JANGTEO_VIDEO_SIZE)")
    p.add_argument("--fps", type=int, help="output frame rate (env JANGTEO_VIDEO_FPS, default 30)")
    p.add_argument(
        "--data-dir",
        help="where the embedded Redis keeps its AOF (env JANGTEO_DATA_DIR, default var/)",
    )
    p.add_argument(
        "--workers",
        help="fan-out worker processes: a number or auto, one per core (env JANGTEO_WORKERS, "
        "default 0: this process sends to viewers)",
    )
    p.add_argument("--log-level", default=os.environ.get("JANGTEO_LOG_LEVEL", "info"))
    p.add_argument(
        "--loop",
        choices=["auto", "uvloop", "asyncio"],
        default=os.environ.get("JANGTEO_LOOP", "auto"),
        help="event loop (auto: uvloop when installed)",
    )


def settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {
        "host": args.host,
        "port": args.port,
        "redis_url": args.redis_url,
        "admin_key": args.admin_key,
        "announced_address": args.announced_address,
        "video_fps": args.fps,
        "data_dir": Path(args.data_dir) if args.data_dir else None,
    }
    if args.ice_servers is not None:
        overrides["ice_servers"] = parse_ice_servers(args.ice_servers)
    if args.ice_host_addresses is not None:
        overrides["ice_host_addresses"] = tuple(
            a.strip() for a in args.ice_host_addresses.split(",") if a.strip()
        )
    if args.video_size:
        overrides["video_width"], overrides["video_height"] = parse_size(args.video_size)
    if args.workers is not None:
        overrides["workers"] = parse_workers(args.workers)
    return from_env(None, **cast(dict[str, Any], overrides))


@contextlib.asynccontextmanager
async def redis_for(settings: Settings, subdir: str) -> AsyncIterator[Settings]:
    """Yield settings with a Redis URL: the configured one, or an embedded child's."""
    if settings.redis_url:
        yield settings
        return
    server = RedisServer(settings.data_dir / subdir)
    url = await asyncio.to_thread(server.start)
    log.info("embedded redis-server started (%s, AOF fsync always)", url)
    try:
        yield dataclasses.replace(settings, redis_url=url)
    finally:
        await asyncio.to_thread(server.stop)
        log.info("embedded redis-server stopped")


class _Server(uvicorn.Server):
    """uvicorn's server, except that SIGTERM or Ctrl-C ends ``serve()`` normally. uvicorn raises
    the signal again once it has shut down, which killed the process before the embedded Redis
    child was stopped (it lived on). Guarded by tests/test_redisproc.py."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()  # handled: we are shutting down already


async def _serve(settings: Settings, on_started=None) -> None:  # type: ignore[no-untyped-def]
    from .app import WS_MAX_SIZE, create_app, listen

    app = create_app(settings)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, lifespan="on",
        ws_max_size=WS_MAX_SIZE, ws_per_message_deflate=False, timeout_graceful_shutdown=5,
        access_log=False, server_header=False,
    )  # fmt: skip
    server = _Server(config)
    sock = listen(settings.host, settings.port)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task
                raise SystemExit(1)
            await asyncio.sleep(0.05)
        if on_started is not None:
            await on_started(app)
        await task
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


def check_serve(settings: Settings) -> None:
    """What a server for real buyers refuses to start with (ConfigError says why)."""
    if settings.payment_provider == "test":
        raise ConfigError(
            "JANGTEO_PAYMENT_PROVIDER=test lets buyers mark their own orders paid: only "
            "`jangteo demo` runs with it"
        )
    if settings.phone_verifier == "test":
        raise ConfigError("JANGTEO_PHONE_VERIFIER=test verifies any phone: only `jangteo demo`")
    if settings.redis_url and not settings.secret:
        raise ConfigError(
            "JANGTEO_SECRET is not set: with a shared Redis (REDIS_URL) every process must sign "
            "tokens with the same secret, or they refuse each other's"
        )
    if settings.redis_url and not settings.admin_key:
        raise ConfigError("JANGTEO_ADMIN_KEY is not set: every process of a deployment needs it")


async def serve(settings: Settings) -> None:
    check_serve(settings)
    settings, generated = with_generated_secrets(settings)
    for name in generated:
        log.warning("%s not set: generated one for this run (tokens die with the process)", name)
    if "JANGTEO_ADMIN_KEY" in generated:
        print(f"admin key for this run: {settings.admin_key}", flush=True)
    async with redis_for(settings, "redis") as s:
        await _serve(s)


async def demo(settings: Settings) -> None:
    from core.tokens import Role
    from stream.ingest.synthetic import SyntheticStudio

    from .context import AppContext
    from .sample import DEMO_MERCHANT, sample_catalog, sample_history

    # a demo's buyers pay with one tap (nothing real is sold)
    # visitors see prices in their currency too, at the sample rates (with their date)
    sample_rates = str(Path(__file__).with_name("fx-rates.sample.json"))
    demo_rules = dataclasses.replace(
        settings, payment_provider="test", phone_verifier="test",
        fx_rates_file=settings.fx_rates_file or sample_rates,
    )  # fmt: skip
    settings, _ = with_generated_secrets(demo_rules)
    async with redis_for(settings, "demo-redis") as s:
        studio: list[SyntheticStudio] = []

        async def on_started(app) -> None:  # type: ignore[no-untyped-def]
            ctx: AppContext = app.state.ctx
            b = await ctx.store.create(
                "장터 데모 라이브 · Jangteo demo", host_user="u_host", merchant_id=DEMO_MERCHANT
            )
            await sample_history(ctx)  # the merchant's past shows: the forecast has a history
            host_token, _ = ctx.signer.issue(b.id, Role.HOST, "사장님", user_id="u_host")
            viewer_token, _ = ctx.signer.issue(b.id, Role.VIEWER, "시청자")
            await sample_catalog(ctx, b.id)  # before the media starts: its overlay loads it
            media = await ctx.hub.open(b.id)
            st = SyntheticStudio(
                media.compositor, width=s.video_width, height=s.video_height, fps=s.video_fps
            )
            st.start()
            studio.append(st)
            await ctx.store.ensure_live(b.id)
            base = s.base_url
            print(
                "\n".join(
                    [
                        "",
                        "Jangteo demo is live (synthetic studio: test pattern + 440 Hz tone;",
                        "sample catalog: 제주 감귤 pinned on a 10-minute deal)",
                        f"  viewer page : {base}/watch/{b.id}?token={viewer_token}",
                        f"  studio page : {base}/studio/{b.id}?token={host_token}",
                        f"  WHEP        : {base}/whep/{b.id}   (Bearer {viewer_token})",
                        f"  WHIP        : {base}/whip/{b.id}   (Bearer {host_token})",
                        f"  status      : {base}/api/broadcasts/{b.id}",
                        f"  report      : {base}/api/broadcasts/{b.id}/report?format=html"
                        f"&token={host_token}",
                        f"  forecast    : {base}/api/merchants/{DEMO_MERCHANT}/forecast"
                        f"   (Bearer {host_token})",
                        f"  metrics     : {base}/metrics    OpenAPI: {base}/openapi.json",
                        f"  admin key   : {s.admin_key}",
                        "Ctrl-C stops the server and its Redis.",
                        "",
                    ]
                ),
                flush=True,
            )

        try:
            await _serve(s, on_started)
        finally:
            for st in studio:
                await st.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jangteo", description="Live-commerce broadcasting server"
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    _server_flags(sub.add_parser("serve", help="run the server"))
    _server_flags(
        sub.add_parser("demo", help="server + embedded Redis + a synthetic live broadcast")
    )
    bench = sub.add_parser("bench", help="benchmarks (one JSON line each)")
    from .bench import add_bench_commands

    add_bench_commands(bench)
    from .drain_cli import add_drain_command

    add_drain_command(sub)
    args = parser.parse_args(argv)
    if args.cmd in ("bench", "drain"):
        result: int = args.run(args)
        return result
    logs.setup(args.log_level)
    tune_malloc()
    try:
        settings = settings_from(args)
        if args.cmd == "serve":
            run(serve(settings), args.loop)
        else:
            run(demo(settings), args.loop)
    except (ConfigError, EmbeddedRedisError) as exc:
        print(f"jangteo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
