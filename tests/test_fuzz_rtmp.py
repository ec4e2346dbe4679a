"""Fuzzing restream destinations (stream/deliver/rtmp/destinations.py): the URL a host types in.

Any string is a :class:`~stream.deliver.rtmp.destinations.Target` -- ``rtmp``/``rtmps``, a host
the resolver can take, a port, an app and a key, spelled back the same -- or
:class:`BadDestination` (422). Masking and scrubbing never show the key; an address is public or
not without raising; resolving an address literal (no DNS here) gives only public addresses or
:class:`PrivateDestination` (422). Profiles: tests/fuzz_profiles.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from typing import TypeVar

from hypothesis import example, given
from hypothesis import strategies as st

from stream.deliver.rtmp.destinations import (
    SCHEMES,
    BadDestination,
    PrivateDestination,
    Target,
    masked,
    parse,
    public_address,
    resolve,
    scrub,
)

from .fuzz_profiles import fuzz

T = TypeVar("T")

HOSTS = ["live.example.com", "a.rtmp.youtube.com", "1.1.1.1", "[2606:4700::1111]", "127.0.0.1",
         "[::1]", "10.0.0.1", "localhost", "a..b", "x" * 64 + ".com", "[::ffff:10.0.0.1]",
         "[fe80::1%25eth0]", "[v1.x]", "ｅxample.com", "", "exa mple", "[1.2.3.4]", "0x7f.1",
         "2130706433", "100.64.0.1", "[2002:a00::1]", "169.254.169.254", "h\x00st", ".", "-a-",
         "\udc80", "例え.jp"]  # fmt: skip
segment = (
    st.text(st.sampled_from("abcXYZ019-_."), min_size=1, max_size=8)
    | st.text(st.sampled_from("abc019-_.~%?#&=;:@!$+ /\\\t"), max_size=8)
    | st.text(max_size=6)
)


def _some(*values: T) -> st.SearchStrategy[T]:
    """The first value most of the time, the others now and then."""
    return st.sampled_from([values[0]] * len(values) + list(values[1:]))


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(_some("rtmp", "rtmps", "RTMP", "rtmpe", "http", "", "rtmp:"))
    sep = draw(_some("://", ":/", ":", "//"))
    user = draw(_some("", "user@", "u:p@", ":@", "@"))
    host = draw(st.sampled_from(HOSTS) | st.text(max_size=12) | st.just("live.example.com"))
    port = draw(_some("", ":1935", ":0", ":65535", ":65536", ":-1", ":x", ":"))
    path = "/" + "/".join(draw(st.lists(segment, min_size=draw(_some(2, 0, 1)), max_size=4)))
    query = draw(_some("", "?token=abcd1234", "?a=%41%42%43%44&b", "?"))
    frag = draw(_some("", "#frag", "#"))
    pad = draw(_some("", " ", "\n", "\t"))
    return f"{pad}{scheme}{sep}{user}{host}{port}{path}{query}{frag}{pad}"


any_url = (
    urls()
    | st.text(max_size=60)
    | st.builds(
        lambda u, t, n: (u + t * n)[:2100],
        urls(),
        st.text(min_size=1, max_size=4),
        st.integers(400, 1100),
    )
)  # around the 2000 characters allowed


def _parsed(url: str) -> Target | None:
    try:
        t = parse(url)
    except BadDestination as exc:
        assert exc.status == 422 and exc.code == "bad_destination_url"
        return None
    assert isinstance(t, Target)
    return t


@fuzz()
@given(any_url)
@example("rtmp://a..b/app/key")  # was accepted; then resolve() raised UnicodeError (a 500)
@example("rtmp://" + "x" * 64 + ".com/app/key")  # a label over 63 characters: the same
@example("rtmp://\udc80/app/key")
@example("rtmp://live.example.com/live/ #")  # a blank key: accepted, then its stored URL was not
@example("rtmp://live.example.com/live/key ?")  # "key ", stored as ".../key " and read as "key"
@example("rtmps://live-api-s.facebook.com:443/rtmp/FB-123?s_bl=1&s_sw=0&a=Zq8s")
def test_any_url_is_a_target_or_bad_destination(url: str) -> None:
    t = _parsed(url)
    if t is None:
        return
    assert t.scheme in SCHEMES and 0 < t.port <= 65535
    assert t.host and t.app and t.key
    assert "" not in t.app.split("/") and "/" not in t.key.partition("?")[0]
    assert parse(t.url) == t  # one spelling: what is stored reads back the same
    # what the resolver does with the name before any lookup (no DNS: numeric only)
    with contextlib.suppress(socket.gaierror):
        socket.getaddrinfo(t.host, t.port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)


@fuzz()
@given(any_url, st.text(max_size=20))
def test_masking_and_scrubbing_never_show_the_key(url: str, noise: str) -> None:
    shown = masked(url)
    t = _parsed(url)
    if t is None:
        assert shown == "****"
        return
    assert shown.endswith("/****") and shown.startswith(f"{t.scheme}://")
    said = scrub(f"{noise} {url} said {t.key} {noise}", url)
    bare = t.key.partition("?")[0]
    for secret in (t.key, bare):
        if len(secret) >= 4 and "*" not in secret and secret not in f"{noise} {shown}":
            assert secret not in said


addresses = (
    st.ip_addresses(v=4).map(str)
    | st.ip_addresses(v=6).map(str)
    | st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}")
    | st.ip_addresses(v=4).map(lambda a: str(ipaddress.IPv6Address((0x2002 << 112)
                                                                    | (int(a) << 80))))
    | st.ip_addresses(v=6).map(lambda a: f"{a}%eth0")
)  # fmt: skip
PRIVATE = [ipaddress.ip_network(n) for n in ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10",
           "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4",
           "240.0.0.0/4")]  # fmt: skip


@fuzz()
@given(addresses)
@example("::ffff:127.0.0.1")
@example("2002:a00::1")  # 6to4 of 10.0.0.0
@example("2001:0:4136:e378:8000:63bf:f5ff:fffe")  # Teredo to 10.0.0.1
def test_an_address_is_public_or_not_without_raising(address: str) -> None:
    public = public_address(address)
    ip = ipaddress.ip_address(address.split("%")[0])
    inner: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ip
    if isinstance(ip, ipaddress.IPv6Address):  # IPv4 inside: mapped, 6to4, Teredo
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
    if isinstance(inner, ipaddress.IPv4Address) and any(inner in n for n in PRIVATE):
        assert not public
    if public:
        assert ip.is_global and not ip.is_multicast


literal_hosts = st.ip_addresses().map(str) | st.sampled_from(
    ["127.0.0.1", "0x7f.1", "2130706433", "0177.0.0.1", "10.1", "::ffff:7f00:1", "::1",
     "1.1.1.1", "2606:4700::1111", "::", "0.0.0.0", "255.255.255.255"]
)  # fmt: skip


@fuzz(0.5)
@given(literal_hosts, st.sampled_from(["rtmp", "rtmps"]))
@example("2130706433", "rtmp")  # 127.0.0.1 spelled as one number
async def test_resolving_an_address_gives_public_ones_or_private_destination(
    host: str, scheme: str
) -> None:
    try:  # address literals only: nothing here may query DNS
        socket.getaddrinfo(host, 1935, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        return
    target = Target(scheme, host, SCHEMES[scheme], "live", "key")
    try:
        found = await asyncio.wait_for(resolve(target, allow_private=False), 10)
    except PrivateDestination as exc:
        assert exc.status == 422 and exc.code == "private_destination"
        return
    except BadDestination as exc:
        assert exc.status == 422
        return
    assert found and all(public_address(a) for a in found)
    assert await resolve(target, allow_private=True) == found
