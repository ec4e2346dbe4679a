"""Publish over WHIP with GStreamer's webrtcbin (1.22, Debian 12): a real non-aiortc studio.

Run with the SYSTEM Python (``gi`` is not importable from the project venv); it imports nothing
from the project::

    /usr/bin/python3 media_tests/clients/gst_whip.py URL TOKEN [--codec vp8|h264] [--seconds N]

videotestsrc (SMPTE bars) + audiotestsrc (sine) -> vp8enc / x264enc -> RTP payloader -> webrtcbin
(bundle-policy max-bundle, no STUN/TURN). It creates the offer, waits for ICE gathering to complete
(our server does not take trickle ICE), POSTs the offer with ``Authorization: Bearer TOKEN``, sets
the answer, and prints one line per event on stdout::

    offer <n> candidates: <addr> ...     the host candidates libnice gathered
    answer <status> <location>           the WHIP response
    connected                            ICE connected and DTLS done (webrtcbin connection state)
    failed <why>                         then exits 1

It runs ``--seconds`` (or until SIGTERM/SIGINT), DELETEs the session and exits 0.
``--offer-only`` prints the offer (to stdout, after the ``offer`` line) without POSTing.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

VIDEO = {
    # deadline=1: realtime. A keyframe a second; a PLI also reaches the encoder (force-key-unit).
    "vp8": (
        "vp8enc deadline=1 target-bitrate={bitrate} keyframe-max-dist={fps} "
        "error-resilient=partitions cpu-used=8 ! rtpvp8pay pt=96 picture-id-mode=15-bit ! "
        "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000"
    ),
    "h264": (
        "x264enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} key-int-max={fps} "
        "! video/x-h264,profile=constrained-baseline ! h264parse ! "
        "rtph264pay pt=102 config-interval=-1 aggregate-mode=zero-latency ! "
        "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000"
    ),
}
AUDIO = (
    "audiotestsrc is-live=true wave=sine freq={freq} volume=0.25 ! audioconvert ! audioresample ! "
    "audio/x-raw,rate=48000,channels=2 ! opusenc ! rtpopuspay pt=111 ! "
    "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000"
)


def say(*parts: object) -> None:
    print(*parts, flush=True)


class WhipPublisher:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loop = GLib.MainLoop()
        self.session_url: str | None = None
        self.exit_code = 0
        self.connected = False
        self._posted = False
        self._post_lock = threading.Lock()
        video = VIDEO[args.codec].format(bitrate=args.kbps * 1000, kbps=args.kbps, fps=args.fps)
        desc = (
            f"webrtcbin name=send bundle-policy=max-bundle "
            f"videotestsrc is-live=true pattern=smpte ! "
            f"video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1 ! "
            f"videoconvert ! queue ! {video} ! send. "
        )
        if not args.no_audio:
            desc += AUDIO.format(freq=args.freq) + " ! send. "
        self.pipe = Gst.parse_launch(desc)
        self.webrtc = self.pipe.get_by_name("send")
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.webrtc.connect("notify::connection-state", self.on_connection_state)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)

    # -- negotiation -----------------------------------------------------------------------------
    def on_negotiation_needed(self, element: Gst.Element) -> None:
        # We only send: make every transceiver sendonly before the offer is made.
        for i in range(16):
            t = self.webrtc.emit("get-transceiver", i)
            if t is None:
                break
            t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        promise = Gst.Promise.new_with_change_func(self.on_offer_created, None)
        self.webrtc.emit("create-offer", None, promise)

    def on_offer_created(self, promise: Gst.Promise, _data: object) -> None:
        promise.wait()
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply is not None else None
        if offer is None:
            say(f"failed create-offer: {reply.to_string() if reply is not None else 'no reply'}")
            GLib.idle_add(self.quit, 1)
            return
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())
        self._maybe_post()

    def on_gathering(self, element: Gst.Element, _pspec: object) -> None:
        self._maybe_post()

    def _maybe_post(self) -> None:
        state = self.webrtc.get_property("ice-gathering-state")
        local = self.webrtc.get_property("local-description")
        if state != GstWebRTC.WebRTCICEGatheringState.COMPLETE or local is None:
            return
        with self._post_lock:  # called from the promise thread and from streaming threads
            if self._posted:
                return
            self._posted = True
        GLib.idle_add(self._post, local.sdp.as_text())

    def _gathering_timeout(self) -> bool:
        if not self._posted:
            # libnice gathers no loopback address: with no other interface it never completes
            say("failed ICE gathering did not complete (no usable interface?)")
            self.quit(1)
        return False

    def _post(self, sdp: str) -> bool:
        cands = [
            " ".join(line.split()[4:6])
            for line in sdp.splitlines()
            if line.startswith("a=candidate:") and " udp " in line.lower()
        ]
        say(f"offer {len(cands)} candidates:", " ".join(sorted(set(cands))))
        if self.args.offer_only:
            print(sdp, flush=True)
            self.quit(0)
            return False
        req = urllib.request.Request(
            self.args.url,
            data=sdp.encode(),
            method="POST",
            headers={
                "Content-Type": "application/sdp",
                "Authorization": f"Bearer {self.args.token}",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                status, answer = r.status, r.read().decode()
                location = r.headers.get("Location", "")
        except urllib.error.HTTPError as e:
            say(f"failed HTTP {e.code}: {e.read().decode(errors='replace')[:300]}")
            self.quit(1)
            return False
        except OSError as e:
            say(f"failed POST: {e}")
            self.quit(1)
            return False
        self.session_url = urllib.parse.urljoin(self.args.url, location)
        say(f"answer {status} {location}")
        ok, msg = GstSdp.SDPMessage.new_from_text(answer)
        if ok != GstSdp.SDPResult.OK:
            say("failed the answer does not parse")
            self.quit(1)
            return False
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        self.webrtc.emit("set-remote-description", desc, Gst.Promise.new())
        return False

    # -- state -----------------------------------------------------------------------------------
    def on_connection_state(self, element: Gst.Element, _pspec: object) -> None:
        state = self.webrtc.get_property("connection-state")
        if state == GstWebRTC.WebRTCPeerConnectionState.CONNECTED and not self.connected:
            self.connected = True
            say("connected")
        elif state == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            say("failed peer connection state failed")
            GLib.idle_add(self.quit, 1)

    def on_error(self, bus: Gst.Bus, message: Gst.Message) -> None:
        err, debug = message.parse_error()
        say(f"failed {err.message} ({debug})")
        self.quit(1)

    def quit(self, code: int = 0) -> bool:
        self.exit_code = self.exit_code or code
        self.loop.quit()
        return False

    def run(self) -> int:
        self.pipe.set_state(Gst.State.PLAYING)
        GLib.timeout_add(int(self.args.seconds * 1000), self.quit, 0)
        GLib.timeout_add(10_000, self._gathering_timeout)
        for signum in (signal.SIGTERM, signal.SIGINT):
            GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, self.quit, 0)
        self.loop.run()
        self.pipe.set_state(Gst.State.NULL)
        if self.session_url:
            req = urllib.request.Request(
                self.session_url,
                method="DELETE",
                headers={"Authorization": f"Bearer {self.args.token}"},
            )
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    say(f"deleted {r.status}")
            except (urllib.error.HTTPError, OSError) as e:
                say(f"delete failed: {e}")
        return self.exit_code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="WHIP publisher on GStreamer webrtcbin")
    ap.add_argument("url")
    ap.add_argument("token")
    ap.add_argument("--codec", choices=sorted(VIDEO), default="vp8")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--kbps", type=int, default=1000)
    ap.add_argument("--freq", type=float, default=440.0)
    ap.add_argument("--no-audio", action="store_true")
    ap.add_argument("--offer-only", action="store_true")
    args = ap.parse_args(argv)
    Gst.init(None)
    return WhipPublisher(args).run()


if __name__ == "__main__":
    sys.exit(main())
