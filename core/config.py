"""Configuration: one frozen ``Settings`` read from the environment, overridden by CLI flags.

Every process of a deployment shares ``REDIS_URL``, ``JANGTEO_ADMIN_KEY`` and ``JANGTEO_SECRET``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

FANOUT_MODES = ("fast", "aiortc")
PAYMENT_PROVIDERS = ("external", "test")


class ConfigError(ValueError):
    """A setting has a value we cannot use."""


@dataclasses.dataclass(frozen=True)
class IceServer:
    urls: str
    username: str | None = None
    credential: str | None = None


@dataclasses.dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    redis_url: str | None = None
    admin_key: str = ""
    secret: str = ""
    data_dir: Path = Path("var")
    # ICE: servers handed to every RTCPeerConnection (default none: no public STUN).
    ice_servers: tuple[IceServer, ...] = ()
    # Local addresses aioice may gather (empty: every interface but loopback).
    ice_host_addresses: tuple[str, ...] = ()
    # Address written into our candidates for clients behind NAT / in the cloud.
    announced_address: str | None = None
    video_width: int = 1280
    video_height: int = 720
    video_fps: int = 30
    video_bitrate: int = 2_500_000
    # the rendition ladder, e.g. "720p:2500k,360p:800k,180p:250k" (stream/encode/ladder.py);
    # empty: the output size at video_bitrate and halves of it down to 180p
    ladder: str = ""
    # per-viewer rendition switching from each viewer's link feedback (off: everyone on the top)
    abr: bool = True
    # every show kept as a replay under data_dir/recordings (VOD HLS + one MP4)
    record: bool = True
    # the merchant's numbers: orders counted as they are placed, a timeline point per 10 s
    stats: bool = True
    record_min_free_mb: int = 500  # a recording stops (the show goes on) below this much free disk
    record_max_mb: int = 20_000  # … or once it is this large
    record_retention_days: int = 30  # recordings older than this are deleted
    # HLS only with a token of the broadcast (?token=); off: anyone, and CDNs can cache it
    media_tokens: bool = False
    # restreams may go to loopback and private addresses (tests; a platform on the same network)
    restream_allow_private: bool = False
    restream_ca_file: str | None = None  # CA certificates for RTMPS to private platforms
    # the operator's exchange rates (JSON, commerce/fx.py): prices shown ≈ in other currencies
    fx_rates_file: str | None = None
    # how viewers' RTP is sent: "fast" (packetized once, per viewer header + SRTP + send:
    # stream/deliver/rtpsend.py) or "aiortc" (each viewer's RTCRtpSender packetizes and sends)
    fanout: str = "fast"
    # fan-out worker processes serving viewers (0: this process sends; `auto`: one per core)
    workers: int = 0
    token_ttl_s: int = 12 * 3600
    # a WHIP/WHEP session whose peer has not connected (ICE + DTLS) by then is dropped
    connect_timeout_s: float = 15.0
    # WHEP sessions at once: per person (user id), per client address, per broadcast
    whep_per_user: int = 5
    whep_per_address: int = 100
    max_viewers: int = 2000
    # proxies whose X-Forwarded-For names the client (comma-separated addresses)
    trusted_proxies: tuple[str, ...] = ()
    # browser origins allowed besides our own pages (HTTP CORS and the chat socket's Origin);
    # "*" for any, e.g. WHEP players embedded on other sites
    cors_origins: tuple[str, ...] = ()
    # origins whose pages may frame the viewers' pages (watch, replay, screen): CSP
    # frame-ancestors; none by default (this origin only). The studio and report never are
    embed_origins: tuple[str, ...] = ()
    public_url: str | None = None
    # REDIS_URL names any node of a Redis Cluster (every script touches one slot: jt:{bid}:…)
    redis_cluster: bool = False
    # this node among the deployment's (core/nodes.py): its id and how other nodes reach it
    node_id: str | None = None  # default: host name and process id
    node_url: str | None = None  # default: base_url
    # the relay listener other nodes pull broadcasts from (0: none, a one-node deployment);
    # announced as the node URL's host (or relay_host) and this port
    relay_port: int = 0
    relay_host: str | None = None  # the address other nodes reach the relay at
    # TLS on the relay: this node's certificate and key (its relay speaks TLS only, announced
    # as tls://host:port), and the CA certificates an edge checks origins' relays against
    # (default: the system's)
    relay_tls_cert: str | None = None
    relay_tls_key: str | None = None
    relay_ca_file: str | None = None
    chat_max_chars: int = 200
    chat_rate_messages: int = 5  # per user, per chat_rate_window_s (the host is exempt)
    chat_rate_window_s: float = 10.0
    # events of one tick go out as one frame per socket; 0 sends every event as its own frame
    # (the naive anchor of `jangteo bench chat`)
    chat_batch_ms: int = 50
    # chat frames written straight to the sockets' transports, built once (chat/wire.py)
    chat_wire: bool = True
    guest_identities_per_min: int = 20  # new guest identities per client address per broadcast
    chat_sockets_per_user: int = 5  # chat sockets at once, on one process
    chat_sockets_per_address: int = 200
    hold_s: float = 600.0  # a reservation's life before its stock goes back on sale
    flash_hold_s: float = 120.0  # … while its product is pinned on a deal (a flash sale)
    hold_cooldown_s: float = 300.0  # a buyer whose hold ran out waits this long to order it again
    open_orders_per_buyer: int = 5  # reserved (unpaid) orders at once, per broadcast
    open_orders_per_address: int = 20
    unpaid_retention_s: int = 3 * 24 * 3600  # cancelled and expired orders are kept this long
    # "external": orders become paid only through the signed payment callback (or the host);
    # "test": the buyer's own confirm pays (demos and tests; `jangteo serve` refuses it)
    payment_provider: str = "external"
    # phone verification for strict flash sales: "none", or "test" (the code is answered, not
    # texted: demos and tests); a real SMS provider is an adapter in jangteo/guests.py
    phone_verifier: str = "none"
    payment_secret: str = ""  # signs payment callbacks (default: derived from the token secret)
    webhook_url: str | None = None  # the merchant's shop: order.created/paid/cancelled
    webhook_secret: str = ""  # whsec_<base64 key> (Standard Webhooks)
    webhook_retry_base_s: float = 1.0

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def default_orientation(self) -> str:
        """What a broadcast created without one gets: the configured output's shape."""
        return "portrait" if self.video_height > self.video_width else "landscape"

    def output_size(self, portrait: bool) -> tuple[int, int]:
        """The composed size of a broadcast: the configured size, turned to the orientation
        (1280x720 landscape is 720x1280 portrait)."""
        long, short = max(self.video_width, self.video_height), min(
            self.video_width, self.video_height)  # fmt: skip
        return (short, long) if portrait else (long, short)


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def parse_ice_servers(value: str) -> tuple[IceServer, ...]:
    """``stun:host:3478,turn:host:3478`` or a JSON list of RTCIceServer dicts."""
    value = value.strip()
    if not value:
        return ()
    if value.startswith("["):
        try:
            servers: list[IceServer] = []
            for s in json.loads(value):
                urls = [s["urls"]] if isinstance(s["urls"], str) else list(s["urls"])
                if not urls or not all(isinstance(u, str) for u in urls):
                    raise TypeError("urls must be a string or a list of strings")
                servers += [IceServer(u, s.get("username"), s.get("credential")) for u in urls]
            return tuple(servers)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"JANGTEO_ICE_SERVERS is not a JSON list of servers: {exc}") from exc
    return tuple(IceServer(urls=u) for u in _split(value))


_EMBED_ORIGIN = re.compile(r"https?://(?:\*\.)?[a-z0-9-]+(?:\.[a-z0-9-]+)*(?::[0-9]{1,5})?")


def parse_embed_origins(value: str) -> tuple[str, ...]:
    """``https://shop.example, https://*.example.org:8443``: space- or comma-separated origins
    (scheme, host, optional port; a leading ``*.`` for subdomains), lower-cased."""
    found = []
    for part in value.replace(",", " ").split():
        origin = part.lower().rstrip("/")
        if not _EMBED_ORIGIN.fullmatch(origin):
            raise ConfigError(
                f"JANGTEO_EMBED_ORIGINS: {part!r} is not an origin like https://shop.example"
            )
        found.append(origin)
    return tuple(dict.fromkeys(found))


def parse_workers(value: str) -> int:
    if value.strip() == "auto":
        return os.cpu_count() or 1
    try:
        n = int(value)
    except ValueError as exc:
        raise ConfigError(f"JANGTEO_WORKERS must be a number or auto, not {value!r}") from exc
    if not 0 <= n <= 64:
        raise ConfigError("JANGTEO_WORKERS must be between 0 and 64")
    return n


def parse_size(value: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in value.lower().split("x"))
    except ValueError as exc:
        raise ConfigError(f"video size must look like 1280x720, not {value!r}") from exc
    if w < 64 or h < 64 or w % 2 or h % 2 or w > 3840 or h > 2160:
        raise ConfigError(f"video size {value!r}: even numbers between 64x64 and 3840x2160")
    return w, h


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, not {raw!r}") from exc


def from_env(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    env = os.environ if env is None else env
    w, h = parse_size(env.get("JANGTEO_VIDEO_SIZE", "1280x720"))
    values: dict[str, object] = {
        "host": env.get("JANGTEO_HOST", "127.0.0.1"),
        "port": _int(env, "JANGTEO_PORT", 8080),
        "redis_url": env.get("REDIS_URL") or None,
        "admin_key": env.get("JANGTEO_ADMIN_KEY", ""),
        "secret": env.get("JANGTEO_SECRET", ""),
        "data_dir": Path(env.get("JANGTEO_DATA_DIR", "var")),
        "ice_servers": parse_ice_servers(env.get("JANGTEO_ICE_SERVERS", "")),
        "ice_host_addresses": _split(env.get("JANGTEO_ICE_HOST_ADDRESSES", "")),
        "announced_address": env.get("JANGTEO_ANNOUNCED_ADDRESS") or None,
        "video_width": w,
        "video_height": h,
        "video_fps": _int(env, "JANGTEO_VIDEO_FPS", 30),
        "video_bitrate": _int(env, "JANGTEO_VIDEO_BITRATE", 2_500_000),
        "ladder": env.get("JANGTEO_LADDER", ""),
        "abr": env.get("JANGTEO_ABR", "1") not in ("0", "false", "no", "off"),
        "record": env.get("JANGTEO_RECORD", "1") not in ("0", "false", "no", "off"),
        "stats": env.get("JANGTEO_STATS", "1") not in ("0", "false", "no", "off"),
        "record_min_free_mb": _int(env, "JANGTEO_RECORD_MIN_FREE_MB", 500),
        "record_max_mb": _int(env, "JANGTEO_RECORD_MAX_MB", 20_000),
        "record_retention_days": _int(env, "JANGTEO_RECORD_RETENTION_DAYS", 30),
        "media_tokens": env.get("JANGTEO_MEDIA_TOKENS", "0") in ("1", "true", "yes", "on"),
        "restream_allow_private": env.get("JANGTEO_RESTREAM_ALLOW_PRIVATE", "0") == "1",
        "restream_ca_file": env.get("JANGTEO_RESTREAM_CA_FILE") or None,
        "fx_rates_file": env.get("JANGTEO_FX_RATES") or None,
        "fanout": env.get("JANGTEO_FANOUT", "fast"),
        "workers": parse_workers(env.get("JANGTEO_WORKERS", "0")),
        "token_ttl_s": _int(env, "JANGTEO_TOKEN_TTL_S", 12 * 3600),
        "connect_timeout_s": float(_int(env, "JANGTEO_CONNECT_TIMEOUT_S", 15)),
        "whep_per_user": _int(env, "JANGTEO_WHEP_PER_USER", 5),
        "whep_per_address": _int(env, "JANGTEO_WHEP_PER_ADDRESS", 100),
        "max_viewers": _int(env, "JANGTEO_MAX_VIEWERS", 2000),
        "trusted_proxies": _split(env.get("JANGTEO_TRUSTED_PROXIES", "")),
        "cors_origins": _split(env.get("JANGTEO_CORS_ORIGINS", "")),
        "embed_origins": parse_embed_origins(env.get("JANGTEO_EMBED_ORIGINS", "")),
        "public_url": env.get("JANGTEO_PUBLIC_URL") or None,
        "node_id": env.get("JANGTEO_NODE_ID") or None,
        "redis_cluster": env.get("JANGTEO_REDIS_CLUSTER", "0") in ("1", "true", "yes", "on"),
        "node_url": env.get("JANGTEO_NODE_URL") or None,
        "relay_port": _int(env, "JANGTEO_RELAY_PORT", 0),
        "relay_host": env.get("JANGTEO_RELAY_HOST") or None,
        "relay_tls_cert": env.get("JANGTEO_RELAY_TLS_CERT") or None,
        "relay_tls_key": env.get("JANGTEO_RELAY_TLS_KEY") or None,
        "relay_ca_file": env.get("JANGTEO_RELAY_CA_FILE") or None,
        "chat_max_chars": _int(env, "JANGTEO_CHAT_MAX_CHARS", 200),
        "chat_rate_messages": _int(env, "JANGTEO_CHAT_RATE_MESSAGES", 5),
        "chat_rate_window_s": float(_int(env, "JANGTEO_CHAT_RATE_WINDOW_S", 10)),
        "chat_batch_ms": _int(env, "JANGTEO_CHAT_BATCH_MS", 50),
        "chat_wire": env.get("JANGTEO_CHAT_WIRE", "1") not in ("0", "false", "no", "off"),
        "guest_identities_per_min": _int(env, "JANGTEO_GUEST_IDENTITIES_PER_MIN", 20),
        "chat_sockets_per_user": _int(env, "JANGTEO_CHAT_SOCKETS_PER_USER", 5),
        "chat_sockets_per_address": _int(env, "JANGTEO_CHAT_SOCKETS_PER_ADDRESS", 200),
        "hold_s": float(_int(env, "JANGTEO_HOLD_S", 600)),
        "flash_hold_s": float(_int(env, "JANGTEO_FLASH_HOLD_S", 120)),
        "hold_cooldown_s": float(_int(env, "JANGTEO_HOLD_COOLDOWN_S", 300)),
        "open_orders_per_buyer": _int(env, "JANGTEO_OPEN_ORDERS_PER_BUYER", 5),
        "open_orders_per_address": _int(env, "JANGTEO_OPEN_ORDERS_PER_ADDRESS", 20),
        "unpaid_retention_s": _int(env, "JANGTEO_UNPAID_RETENTION_S", 3 * 24 * 3600),
        "payment_provider": env.get("JANGTEO_PAYMENT_PROVIDER", "external"),
        "phone_verifier": env.get("JANGTEO_PHONE_VERIFIER", "none"),
        "payment_secret": env.get("JANGTEO_PAYMENT_SECRET", ""),
        "webhook_url": env.get("JANGTEO_WEBHOOK_URL") or None,
        "webhook_secret": env.get("JANGTEO_WEBHOOK_SECRET", ""),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**values)  # type: ignore[arg-type]
    if not 1 <= settings.video_fps <= 60:
        raise ConfigError("JANGTEO_VIDEO_FPS must be between 1 and 60")
    if settings.webhook_url and not settings.webhook_secret:
        raise ConfigError("JANGTEO_WEBHOOK_URL needs JANGTEO_WEBHOOK_SECRET (whsec_…) to sign with")
    if settings.payment_provider not in PAYMENT_PROVIDERS:
        raise ConfigError(f"JANGTEO_PAYMENT_PROVIDER must be one of {', '.join(PAYMENT_PROVIDERS)}")
    if settings.phone_verifier not in ("none", "test"):
        raise ConfigError("JANGTEO_PHONE_VERIFIER must be none or test")
    if bool(settings.relay_tls_cert) != bool(settings.relay_tls_key):
        raise ConfigError("JANGTEO_RELAY_TLS_CERT and JANGTEO_RELAY_TLS_KEY go together")
    if settings.fanout not in FANOUT_MODES:
        raise ConfigError(f"JANGTEO_FANOUT must be one of {', '.join(FANOUT_MODES)}")
    return settings


def with_generated_secrets(settings: Settings) -> tuple[Settings, list[str]]:
    """Fill a missing admin key or token secret with random ones; say which were generated."""
    generated: list[str] = []
    admin_key, secret = settings.admin_key, settings.secret
    if not admin_key:
        admin_key = secrets.token_urlsafe(24)
        generated.append("JANGTEO_ADMIN_KEY")
    if not secret:
        secret = secrets.token_urlsafe(32)
        generated.append("JANGTEO_SECRET")
    return dataclasses.replace(settings, admin_key=admin_key, secret=secret), generated


def with_payment_secret(settings: Settings) -> Settings:
    """Derive the payment callback secret from the token secret when none is configured."""
    if settings.payment_secret or not settings.secret:
        return settings
    derived = hmac.new(settings.secret.encode(), b"jangteo-payments", hashlib.sha256).hexdigest()
    return dataclasses.replace(settings, payment_secret=derived)
