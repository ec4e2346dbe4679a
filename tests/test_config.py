"""core.config: Settings from the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.config import (
    ConfigError,
    IceServer,
    Settings,
    from_env,
    parse_ice_servers,
    parse_size,
    with_generated_secrets,
)


def test_defaults_from_an_empty_environment() -> None:
    s = from_env({})
    assert s == Settings()
    assert s.ice_servers == ()  # no public STUN unless configured
    assert s.ice_host_addresses == ()
    assert s.redis_url is None
    assert s.base_url == "http://127.0.0.1:8080"


def test_from_env_reads_every_setting() -> None:
    env = {
        "JANGTEO_HOST": "0.0.0.0",
        "JANGTEO_PORT": "9000",
        "REDIS_URL": "redis://127.0.0.1:6390/2",
        "JANGTEO_ADMIN_KEY": "adm",
        "JANGTEO_SECRET": "sec",
        "JANGTEO_DATA_DIR": "/srv/jangteo",
        "JANGTEO_ICE_SERVERS": "stun:stun.internal:3478",
        "JANGTEO_ICE_HOST_ADDRESSES": " 10.0.0.5 , ,fd00::5",
        "JANGTEO_ANNOUNCED_ADDRESS": "203.0.113.7",
        "JANGTEO_VIDEO_SIZE": "854X480",
        "JANGTEO_VIDEO_FPS": "25",
        "JANGTEO_VIDEO_BITRATE": "800000",
        "JANGTEO_TOKEN_TTL_S": "60",
        "JANGTEO_CORS_ORIGINS": "https://shop.example, https://studio.example",
        "JANGTEO_PUBLIC_URL": "https://live.example",
    }
    s = from_env(env)
    assert s.host == "0.0.0.0"
    assert s.port == 9000
    assert s.redis_url == "redis://127.0.0.1:6390/2"
    assert (s.admin_key, s.secret) == ("adm", "sec")
    assert s.data_dir == Path("/srv/jangteo")
    assert s.ice_servers == (IceServer("stun:stun.internal:3478"),)
    assert s.ice_host_addresses == ("10.0.0.5", "fd00::5")
    assert s.announced_address == "203.0.113.7"
    assert (s.video_width, s.video_height) == (854, 480)
    assert s.video_fps == 25
    assert s.video_bitrate == 800_000
    assert s.token_ttl_s == 60
    assert s.cors_origins == ("https://shop.example", "https://studio.example")
    assert s.base_url == "https://live.example"


def test_empty_values_fall_back_to_defaults() -> None:
    s = from_env({"REDIS_URL": "", "JANGTEO_PORT": "", "JANGTEO_ANNOUNCED_ADDRESS": ""})
    assert s.redis_url is None
    assert s.port == Settings().port
    assert s.announced_address is None


def test_overrides_win_and_none_is_ignored() -> None:
    s = from_env({"JANGTEO_PORT": "9000", "JANGTEO_HOST": "10.1.1.1"}, port=7000, host=None)
    assert s.port == 7000
    assert s.host == "10.1.1.1"


@pytest.mark.parametrize(
    ("text", "size"),
    [("1280x720", (1280, 720)), ("640X360", (640, 360)), ("64x64", (64, 64)),
     ("3840x2160", (3840, 2160)), (" 320 x 240 ", (320, 240))],
)  # fmt: skip
def test_parse_size(text: str, size: tuple[int, int]) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text",
    ["", "1280", "1280x", "x720", "1280x720x3", "wide", "1280*720", "1281x720", "1280x721",
     "62x64", "64x62", "3842x2160", "3840x2162", "-640x360", "1e3x720"],
)  # fmt: skip
def test_bad_sizes_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_size(text)
    with pytest.raises(ConfigError):
        from_env({"JANGTEO_VIDEO_SIZE": text})


def test_ice_servers_as_a_comma_list() -> None:
    servers = parse_ice_servers(" stun:10.0.0.1:3478 , turn:10.0.0.2:3478?transport=udp,, ")
    assert servers == (
        IceServer("stun:10.0.0.1:3478"),
        IceServer("turn:10.0.0.2:3478?transport=udp"),
    )
    assert parse_ice_servers("") == ()
    assert parse_ice_servers("   ") == ()


def test_ice_servers_as_json() -> None:
    raw = json.dumps(
        [
            {"urls": "stun:10.0.0.1:3478"},
            {"urls": "turn:10.0.0.2:3478", "username": "장터", "credential": "pw"},
        ]
    )
    servers = from_env({"JANGTEO_ICE_SERVERS": raw}).ice_servers
    assert servers == (
        IceServer("stun:10.0.0.1:3478"),
        IceServer("turn:10.0.0.2:3478", username="장터", credential="pw"),
    )


@pytest.mark.parametrize(
    "raw",
    ['[{"urls": "stun:x"', '[{"username": "u"}]', "[1, 2]", '["stun:x"]', "[null]"],
)
def test_bad_ice_json_is_a_config_error(raw: str) -> None:
    with pytest.raises(ConfigError):
        parse_ice_servers(raw)
    with pytest.raises(ConfigError):
        from_env({"JANGTEO_ICE_SERVERS": raw})


def test_ice_json_urls_as_a_list() -> None:
    raw = '[{"urls": ["stun:10.0.0.1:3478", "stun:10.0.0.3:3478"]}]'
    try:
        servers = parse_ice_servers(raw)
    except ConfigError:
        return  # refusing it clearly is acceptable too
    urls = [u for s in servers for u in ((s.urls,) if isinstance(s.urls, str) else s.urls)]
    assert urls == ["stun:10.0.0.1:3478", "stun:10.0.0.3:3478"]


@pytest.mark.parametrize(
    "name", ["JANGTEO_PORT", "JANGTEO_VIDEO_FPS", "JANGTEO_VIDEO_BITRATE", "JANGTEO_TOKEN_TTL_S"]
)
@pytest.mark.parametrize("value", ["eighty", "1.5", "0x10"])
def test_non_integers_are_config_errors(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_env({name: value})
    assert name in str(err.value)


@pytest.mark.parametrize("fps", ["0", "61", "-5"])
def test_fps_out_of_range(fps: str) -> None:
    with pytest.raises(ConfigError):
        from_env({"JANGTEO_VIDEO_FPS": fps})


@pytest.mark.parametrize("fps", ["1", "60"])
def test_fps_bounds_are_allowed(fps: str) -> None:
    assert from_env({"JANGTEO_VIDEO_FPS": fps}).video_fps == int(fps)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_with_generated_secrets_fills_missing_ones() -> None:
    s, generated = with_generated_secrets(Settings(port=1234))
    assert sorted(generated) == ["JANGTEO_ADMIN_KEY", "JANGTEO_SECRET"]
    assert len(s.admin_key) >= 24 and len(s.secret) >= 32
    assert s.admin_key != s.secret
    assert s.port == 1234  # the rest is untouched
    again, _ = with_generated_secrets(Settings())
    assert again.admin_key != s.admin_key and again.secret != s.secret


def test_with_generated_secrets_keeps_given_ones() -> None:
    base = Settings(admin_key="adm", secret="sec")
    s, generated = with_generated_secrets(base)
    assert generated == []
    assert s == base
    only_key, generated = with_generated_secrets(Settings(admin_key="adm"))
    assert generated == ["JANGTEO_SECRET"]
    assert only_key.admin_key == "adm" and only_key.secret


def test_the_relay_certificate_and_key_go_together() -> None:
    s = from_env({"JANGTEO_RELAY_TLS_CERT": "/etc/jt/relay.pem", "JANGTEO_RELAY_TLS_KEY": "/k.pem",
                  "JANGTEO_RELAY_CA_FILE": "/etc/jt/ca.pem"})  # fmt: skip
    assert (s.relay_tls_cert, s.relay_tls_key, s.relay_ca_file) == (
        "/etc/jt/relay.pem", "/k.pem", "/etc/jt/ca.pem",
    )  # fmt: skip
    for alone in ("JANGTEO_RELAY_TLS_CERT", "JANGTEO_RELAY_TLS_KEY"):
        with pytest.raises(ConfigError, match="go together"):
            from_env({alone: "/etc/jt/x.pem"})
