"""stream.deliver.rtc SDP helpers: pure text in, text or parsed objects out (byte fixtures
below)."""

from __future__ import annotations

import pytest

from stream.deliver.rtc import announce, check_offer, negotiated_codec
from stream.errors import BadSdp

FP = (
    "4F:1E:9A:0B:77:62:C3:D8:15:AE:90:3B:6C:21:F4:E7"
    ":58:0D:B2:49:9E:13:C6:7A:28:F1:84:5D:3E:A0:6B:C9"
)

# A Chrome-like WHIP offer: audio (Opus first) and video (VP8 first, then H.264), send-only.
OFFER = (
    b"v=0\r\n"
    b"o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"t=0 0\r\n"
    b"a=group:BUNDLE 0 1\r\n"
    b"a=extmap-allow-mixed\r\n"
    b"a=msid-semantic: WMS stream\r\n"
    b"m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8\r\n"
    b"c=IN IP4 0.0.0.0\r\n"
    b"a=rtcp:9 IN IP4 0.0.0.0\r\n"
    b"a=ice-ufrag:Zx4q\r\n"
    b"a=ice-pwd:p7Nq2a3VfW0sE1lKm9TyUe8b\r\n"
    b"a=ice-options:trickle\r\n"
    b"a=fingerprint:sha-256 " + FP.encode() + b"\r\n"
    b"a=setup:actpass\r\n"
    b"a=mid:0\r\n"
    b"a=sendonly\r\n"
    b"a=msid:stream audio0\r\n"
    b"a=rtcp-mux\r\n"
    b"a=rtpmap:111 opus/48000/2\r\n"
    b"a=fmtp:111 minptime=10;useinbandfec=1\r\n"
    b"a=rtpmap:63 red/48000/2\r\n"
    b"a=rtpmap:9 G722/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=ssrc:1001 cname:studio\r\n"
    b"m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\n"
    b"c=IN IP4 0.0.0.0\r\n"
    b"a=rtcp:9 IN IP4 0.0.0.0\r\n"
    b"a=ice-ufrag:Zx4q\r\n"
    b"a=ice-pwd:p7Nq2a3VfW0sE1lKm9TyUe8b\r\n"
    b"a=ice-options:trickle\r\n"
    b"a=fingerprint:sha-256 " + FP.encode() + b"\r\n"
    b"a=setup:actpass\r\n"
    b"a=mid:1\r\n"
    b"a=sendonly\r\n"
    b"a=msid:stream video0\r\n"
    b"a=rtcp-mux\r\n"
    b"a=rtcp-rsize\r\n"
    b"a=rtpmap:96 VP8/90000\r\n"
    b"a=rtcp-fb:96 nack\r\n"
    b"a=rtcp-fb:96 nack pli\r\n"
    b"a=rtpmap:97 rtx/90000\r\n"
    b"a=fmtp:97 apt=96\r\n"
    b"a=rtpmap:102 H264/90000\r\n"
    b"a=rtcp-fb:102 nack pli\r\n"
    b"a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"
    b"a=rtpmap:103 rtx/90000\r\n"
    b"a=fmtp:103 apt=102\r\n"
    b"a=ssrc:2002 cname:studio\r\n"
)

# A Firefox-like offer: fingerprint at session level, credentials in the media section.
FIREFOX_OFFER = (
    b"v=0\r\n"
    b"o=mozilla...THIS_IS_SDPARTA-99.0 7154826347 0 IN IP4 0.0.0.0\r\n"
    b"s=-\r\n"
    b"t=0 0\r\n"
    b"a=fingerprint:sha-256 " + FP.encode() + b"\r\n"
    b"a=group:BUNDLE 0\r\n"
    b"a=ice-options:trickle\r\n"
    b"a=msid-semantic:WMS *\r\n"
    b"m=video 9 UDP/TLS/RTP/SAVPF 120 126\r\n"
    b"c=IN IP4 0.0.0.0\r\n"
    b"a=recvonly\r\n"
    b"a=ice-pwd:2b8f5c3a0c7e4b1d9e6f1a2b3c4d5e6f\r\n"
    b"a=ice-ufrag:9c1e4a7b\r\n"
    b"a=mid:0\r\n"
    b"a=rtcp-mux\r\n"
    b"a=rtpmap:120 VP8/90000\r\n"
    b"a=rtpmap:126 H264/90000\r\n"
    b"a=setup:actpass\r\n"
)


def text(raw: bytes) -> str:
    return raw.decode()


def without(raw: bytes, *prefixes: bytes) -> str:
    return text(b"".join(line for line in raw.splitlines(True) if not line.startswith(prefixes)))


def replaced(raw: bytes, old: bytes, new: bytes) -> str:
    assert old in raw
    return text(raw.replace(old, new))


# -- check_offer -------------------------------------------------------------------------------


def test_check_offer_accepts_a_browser_offer() -> None:
    desc = check_offer(text(OFFER), need_send=True)
    assert [m.kind for m in desc.media] == ["audio", "video"]
    assert all(m.direction == "sendonly" for m in desc.media)
    assert all(m.ice and m.ice.usernameFragment == "Zx4q" for m in desc.media)


def test_check_offer_inherits_a_session_level_fingerprint() -> None:
    desc = check_offer(text(FIREFOX_OFFER), need_send=False)
    dtls = desc.media[0].dtls
    assert dtls is not None and dtls.fingerprints[0].value == FP


def test_check_offer_accepts_lf_line_endings() -> None:
    check_offer(text(OFFER).replace("\r\n", "\n"), need_send=True)


@pytest.mark.parametrize(
    "body",
    [b"", b"hello", b" v=0\r\n", b"V=0\r\n", b'{"type":"offer","sdp":"v=0"}', b"\r\nv=0\r\n",
     b"o=- 1 1 IN IP4 127.0.0.1\r\nv=0\r\n"],
)  # fmt: skip
def test_check_offer_rejects_what_is_not_sdp(body: bytes) -> None:
    with pytest.raises(BadSdp) as err:
        check_offer(text(body), need_send=True)
    assert err.value.code == "bad_sdp"
    assert err.value.status == 400


@pytest.mark.parametrize(
    "body",
    [
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        b"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
        b"a=ice-ufrag:Zx4q\r\na=ice-pwd:p7Nq2a3VfW0sE1lKm9TyUe8b\r\n"
        b"a=fingerprint:sha-256 " + FP.encode() + b"\r\na=setup:actpass\r\na=mid:0\r\n"
        b"a=sctp-port:5000\r\n",
    ],
    ids=["session-only", "datachannel-only"],
)
def test_check_offer_rejects_an_offer_without_media(body: bytes) -> None:
    for need_send in (True, False):
        with pytest.raises(BadSdp, match="no audio or video"):
            check_offer(text(body), need_send=need_send)


@pytest.mark.parametrize(
    ("direction", "whip_ok", "whep_ok"),
    [(b"sendonly", True, False), (b"recvonly", False, True), (b"sendrecv", True, True),
     (b"inactive", False, False)],
)  # fmt: skip
def test_check_offer_direction(direction: bytes, whip_ok: bool, whep_ok: bool) -> None:
    offer = replaced(OFFER, b"a=sendonly", b"a=" + direction)
    for need_send, ok in ((True, whip_ok), (False, whep_ok)):
        if ok:
            check_offer(offer, need_send=need_send)
        else:
            with pytest.raises(BadSdp, match="does not"):
                check_offer(offer, need_send=need_send)


def test_check_offer_one_usable_section_is_enough() -> None:
    # audio inactive, video sendonly: a video-only studio
    first = OFFER.index(b"a=sendonly")
    offer = text(OFFER[:first] + b"a=inactive" + OFFER[first + len(b"a=sendonly") :])
    check_offer(offer, need_send=True)
    with pytest.raises(BadSdp):
        check_offer(offer, need_send=False)


@pytest.mark.parametrize(
    "drop",
    [(b"a=ice-ufrag",), (b"a=fingerprint",), (b"a=ice-ufrag", b"a=fingerprint"), (b"a=setup",)],
    ids=["no-ufrag", "no-fingerprint", "neither", "no-setup"],
)
def test_check_offer_needs_ice_and_dtls(drop: tuple[bytes, ...]) -> None:
    with pytest.raises(BadSdp, match=r"ICE credentials|DTLS fingerprint"):
        check_offer(without(OFFER, *drop), need_send=True)


def test_check_offer_every_section_needs_credentials() -> None:
    video = OFFER.index(b"m=video")
    head, tail = OFFER[:video], OFFER[video:]
    tail = tail.replace(b"a=ice-ufrag:Zx4q\r\n", b"")
    with pytest.raises(BadSdp):
        check_offer(text(head + tail), need_send=True)


@pytest.mark.parametrize(
    "body",
    [b"v=0\r\nm=video x UDP 96\r\n", b"v=0\r\nm=\r\n", b"v=0\r\nc=IN IP4\r\n",
     b"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111\r\n"],
)  # fmt: skip
def test_check_offer_turns_parser_errors_into_bad_sdp(body: bytes) -> None:
    with pytest.raises(BadSdp):
        check_offer(text(body), need_send=True)


def test_check_offer_truncated_anywhere_fails_cleanly() -> None:
    """Every prefix of the offer is either accepted or BadSdp, never another exception; and a
    prefix that ends before the first section is complete is always refused."""
    full = text(OFFER)
    first_complete = full.index("a=sendonly") + len("a=sendonly")
    accepted = []
    for n in range(len(full)):
        try:
            desc = check_offer(full[:n], need_send=True)
        except BadSdp:
            continue
        accepted.append(n)
        for m in desc.media:
            assert m.ice and m.ice.usernameFragment and m.dtls and m.dtls.fingerprints
    assert accepted and min(accepted) >= first_complete


# -- negotiated_codec --------------------------------------------------------------------------


def answer(video_pts: str, audio_pts: str = "111", video_first: bool = False) -> str:
    audio = (
        f"m=audio 9 UDP/TLS/RTP/SAVPF {audio_pts}\r\n"
        "c=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n"
        "a=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    video = (
        f"m=video 9 UDP/TLS/RTP/SAVPF {video_pts}\r\n"
        "c=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendonly\r\n"
        "a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"
        "a=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n"
    )
    head = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
    return head + (video + audio if video_first else audio + video)


@pytest.mark.parametrize("video_first", [False, True])
@pytest.mark.parametrize(
    ("video_pts", "codec"), [("96 97 102", "vp8"), ("102 96 97", "h264"), ("97 96", "rtx")]
)
def test_negotiated_codec_is_the_first_payload_type(
    video_pts: str, codec: str, video_first: bool
) -> None:
    sdp = answer(video_pts, video_first=video_first)
    assert negotiated_codec(sdp, "video") == codec
    assert negotiated_codec(sdp, "audio") == "opus"


def test_negotiated_codec_audio_first_payload_type() -> None:
    assert negotiated_codec(answer("96", audio_pts="0 111"), "audio") == "pcmu"


def test_negotiated_codec_of_real_offers() -> None:
    assert negotiated_codec(text(OFFER), "video") == "vp8"
    assert negotiated_codec(text(OFFER), "audio") == "opus"
    assert negotiated_codec(text(FIREFOX_OFFER), "video") == "vp8"
    h264_first = replaced(OFFER, b"SAVPF 96 97 102 103", b"SAVPF 102 103 96 97")
    assert negotiated_codec(h264_first, "video") == "h264"


def test_negotiated_codec_missing_kind_or_rtpmap() -> None:
    assert negotiated_codec(text(FIREFOX_OFFER), "audio") is None
    assert negotiated_codec("", "video") is None
    assert negotiated_codec("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF\r\n", "video") is None
    # the first payload type has no rtpmap in its own section: not borrowed from another one
    sdp = answer("98 96", video_first=True).replace(
        "m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=audio 9 UDP/TLS/RTP/SAVPF 98"
    )
    sdp = sdp.replace("a=rtpmap:111 opus", "a=rtpmap:98 opus")
    assert negotiated_codec(sdp, "video") is None
    assert negotiated_codec(sdp, "audio") == "opus"


def test_negotiated_codec_lf_only() -> None:
    assert negotiated_codec(answer("102 96").replace("\r\n", "\n"), "video") == "h264"


# -- announce ----------------------------------------------------------------------------------

ANSWER_TEMPLATE = (
    "v=0\r\n"
    "o=- 3900000000 3900000000 IN IP4 0.0.0.0\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    "a=group:BUNDLE 0 1\r\n"
    "m=audio 40001 UDP/TLS/RTP/SAVPF 111\r\n"
    "c=IN IP4 {c}\r\n"
    "a=recvonly\r\n"
    "a=mid:0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=rtpmap:111 opus/48000/2\r\n"
    "a=candidate:1a2b 1 udp 2130706431 {h1} 40001 typ host\r\n"
    "a=candidate:3c4d 1 udp 2130706175 {h2} 40001 typ host\r\n"
    "a=candidate:5e6f 1 udp 1694498815 198.51.100.20 40001 typ srflx raddr 10.0.0.5 rport 40001\r\n"
    "a=end-of-candidates\r\n"
    "a=ice-ufrag:abcd\r\n"
    "m=video 40002 UDP/TLS/RTP/SAVPF 96\r\n"
    "c=IN IP4 {c}\r\n"
    "a=recvonly\r\n"
    "a=mid:1\r\n"
    "a=rtpmap:96 VP8/90000\r\n"
    "a=candidate:7a8b 1 udp 2130706431 {h1} 40002 typ host\r\n"
    "a=candidate:9c0d 1 tcp 1518280447 {h1} 9 typ host tcptype passive\r\n"
    "a=end-of-candidates\r\n"
)
ORIGINAL = ANSWER_TEMPLATE.format(c="10.0.0.5", h1="10.0.0.5", h2="172.17.0.2")


@pytest.mark.parametrize("address", [None, ""])
def test_announce_without_an_address_changes_nothing(address: str | None) -> None:
    assert announce(ORIGINAL, address) == ORIGINAL


def test_announce_rewrites_host_candidates_and_c_lines() -> None:
    out = announce(ORIGINAL, "203.0.113.7")
    assert out == ANSWER_TEMPLATE.format(c="203.0.113.7", h1="203.0.113.7", h2="203.0.113.7")
    # server-reflexive candidates and the o=/a=rtcp lines are left alone
    assert "198.51.100.20 40001 typ srflx raddr 10.0.0.5" in out
    assert "o=- 3900000000 3900000000 IN IP4 0.0.0.0" in out
    assert "a=rtcp:9 IN IP4 0.0.0.0" in out


def test_announce_ipv6_address() -> None:
    out = announce(ORIGINAL, "2001:db8::7")
    expected = ANSWER_TEMPLATE.format(c="2001:db8::7", h1="2001:db8::7", h2="2001:db8::7")
    assert out == expected.replace("c=IN IP4 2001:db8::7", "c=IN IP6 2001:db8::7")


def test_announce_keeps_line_structure() -> None:
    out = announce(ORIGINAL, "203.0.113.7")
    assert out.count("\r\n") == ORIGINAL.count("\r\n")
    assert out.endswith("\r\n")
    assert announce(out, "203.0.113.7") == out  # idempotent
