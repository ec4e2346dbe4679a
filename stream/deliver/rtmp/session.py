"""One RTMP publishing connection: handshake, ``connect`` / ``createStream`` / ``publish``, then
FLV tags (H.264 as AVCC, raw AAC) as RTMP audio and video messages.

Written on asyncio (TLS by :mod:`ssl`, verified against the host named in the URL), so a slow or
silent far end holds nothing but its own socket: the caller sees how much is waiting to be sent
(:attr:`RtmpSession.backlog`) and decides what to drop. What the server sends back while we
publish (acknowledgement windows, pings, an ``onStatus`` error) is read by the session's own
task; a server that hangs up or errors ends the session (:attr:`RtmpSession.failed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import struct
from collections.abc import Callable
from typing import Any

from core.tasks import cancel_and_wait

from . import amf
from .chunks import (
    ACK,
    AUDIO,
    COMMAND_AMF0,
    DATA_AMF0,
    SET_CHUNK_SIZE,
    USER_CONTROL,
    VIDEO,
    WINDOW_ACK_SIZE,
    ChunkReader,
    ChunkWriter,
    Message,
)

CHUNK_SIZE = 4096
SEND_BUFFER = 128 * 1024  # the kernel doubles it
HANDSHAKE = 1536
CONTROL, COMMANDS, AUDIO_CS, DATA_CS, VIDEO_CS = 2, 3, 4, 5, 6
PING_REQUEST, PING_RESPONSE = 6, 7
FLASH_VER = "FMLE/3.0 (compatible; Jangteo)"


class RtmpError(Exception):
    """The far end refused or broke the session (its words, which never hold the stream key
    unless it echoed it: callers scrub)."""


class RtmpSession:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.chunks_in, self.chunks_out = ChunkReader(), ChunkWriter()
        self.stream_id = 0
        self.bytes_sent = 0
        self.failed: BaseException | None = None
        self.on_failed: Callable[[], None] | None = None  # told once the session has failed
        self._window = 2_500_000
        self._acked = 0
        self._pending: list[Message] = []
        self._watch: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, address: str, port: int, tls: ssl.SSLContext | None, server_hostname: str,
        tc_url: str, app: str, key: str,
    ) -> RtmpSession:  # fmt: skip
        """Connect to ``address`` (already resolved and checked) and publish ``key``."""
        sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
        try:
            sock.setblocking(False)
            # a small kernel buffer: a far end that falls behind shows in our backlog within a
            # second or so, not after megabytes (and seconds of delay) queued in the kernel
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await asyncio.get_running_loop().sock_connect(sock, (address, port))
            reader, writer = await asyncio.open_connection(
                sock=sock, ssl=tls, server_hostname=server_hostname if tls else None
            )
        except BaseException:
            sock.close()
            raise
        session = cls(reader, writer)
        try:
            await session._handshake()
            await session._publish(tc_url, app, key)
        except BaseException:
            await session.aclose(polite=False)
            raise
        session._watch = asyncio.get_running_loop().create_task(session._read_forever())
        return session

    # -- setting up ------------------------------------------------------------------------------
    async def _handshake(self) -> None:
        c1 = struct.pack(">II", 0, 0) + os.urandom(HANDSHAKE - 8)  # zero version: plain handshake
        self.writer.write(b"\x03" + c1)
        s0s1 = await self.reader.readexactly(1 + HANDSHAKE)
        if s0s1[0] != 3:
            raise RtmpError(f"not an RTMP server (version byte {s0s1[0]})")
        self.writer.write(s0s1[1:])  # C2 echoes S1
        await self.reader.readexactly(HANDSHAKE)  # S2

    async def _publish(self, tc_url: str, app: str, key: str) -> None:
        self._send(Message(CONTROL, SET_CHUNK_SIZE, 0, 0, struct.pack(">I", CHUNK_SIZE)))
        self.chunks_out.chunk_size = CHUNK_SIZE
        self._command(0, "connect", 1, {"app": app, "type": "nonprivate", "flashVer": FLASH_VER,
                                        "tcUrl": tc_url, "swfUrl": tc_url})  # fmt: skip
        await self.writer.drain()
        await self._answer(1)
        self._command(0, "releaseStream", 2, None, key)
        self._command(0, "FCPublish", 3, None, key)
        self._command(0, "createStream", 4, None)
        await self.writer.drain()
        result = await self._answer(4)
        if len(result) < 4 or not isinstance(result[3], float):
            raise RtmpError("createStream answered without a stream id")
        self.stream_id = int(result[3])
        self._command(self.stream_id, "publish", 5, None, key, "live")
        await self.writer.drain()
        while True:
            values = await self._next_command()
            if values[0] == "onStatus":
                info = values[3] if len(values) > 3 and isinstance(values[3], dict) else {}
                if info.get("code") == "NetStream.Publish.Start":
                    return
                if info.get("level") == "error":
                    raise RtmpError(f"{info.get('code')}: {info.get('description', '')}")
            elif values[0] == "_error" and values[1] == 5:
                raise RtmpError(_describe(values))

    async def _answer(self, txn: int) -> list[Any]:
        while True:
            values = await self._next_command()
            if values[0] in ("_result", "_error") and values[1] == txn:
                if values[0] == "_error":
                    raise RtmpError(_describe(values))
                return values

    async def _next_command(self) -> list[Any]:
        while True:
            while self._pending:
                message = self._pending.pop(0)
                if message.type_id == COMMAND_AMF0:
                    values = amf.decode(message.payload)
                    if values and isinstance(values[0], str) and len(values) > 1:
                        return values
            await self._receive()

    # -- while publishing ------------------------------------------------------------------------
    async def _receive(self) -> None:
        data = await self.reader.read(65536)
        if not data:
            raise ConnectionResetError("the server closed the connection")
        for message in self.chunks_in.feed(data):
            if not self._control(message):
                self._pending.append(message)
        if self.chunks_in.received - self._acked >= self._window:
            self._acked = self.chunks_in.received
            self._send(Message(CONTROL, ACK, 0, 0, struct.pack(">I", self._acked & 0xFFFFFFFF)))

    def _control(self, message: Message) -> bool:
        """Answer what needs answering; True when the message was only that."""
        if message.type_id == WINDOW_ACK_SIZE and len(message.payload) >= 4:
            self._window = max(1, struct.unpack(">I", message.payload[:4])[0])
            return True
        if message.type_id == USER_CONTROL and len(message.payload) >= 6:
            event, value = struct.unpack(">HI", message.payload[:6])
            if event == PING_REQUEST:
                self._send(Message(CONTROL, USER_CONTROL, 0, 0,
                                   struct.pack(">HI", PING_RESPONSE, value)))  # fmt: skip
            return True
        return message.type_id != COMMAND_AMF0

    async def _read_forever(self) -> None:
        try:
            while True:
                await self._receive()
                for message in self._pending:
                    values = amf.decode(message.payload)
                    info = values[3] if len(values) > 3 and isinstance(values[3], dict) else {}
                    if values and values[0] == "onStatus" and info.get("level") == "error":
                        raise RtmpError(f"{info.get('code')}: {info.get('description', '')}")
                self._pending.clear()
        except Exception as exc:  # the server hung up, broke the protocol, or refused us
            self.failed = exc
            self.writer.transport.abort()
            if self.on_failed is not None:
                self.on_failed()

    def _command(self, stream_id: int, *values: Any) -> None:
        self._send(Message(COMMANDS, COMMAND_AMF0, stream_id, 0, amf.encode(*values)))

    def _send(self, message: Message) -> None:
        data = self.chunks_out.message(message)
        self.writer.write(data)
        self.bytes_sent += len(data)

    @property
    def backlog(self) -> int:
        """Bytes written but not yet taken by the network."""
        return self.writer.transport.get_write_buffer_size()

    def metadata(self, fields: dict[str, Any]) -> None:
        payload = amf.encode("@setDataFrame", "onMetaData", amf.EcmaArray(fields))
        self._send(Message(DATA_CS, DATA_AMF0, self.stream_id, 0, payload))

    def video(self, timestamp_ms: int, tag: bytes) -> None:
        self._send(Message(VIDEO_CS, VIDEO, self.stream_id, timestamp_ms, tag))

    def audio(self, timestamp_ms: int, tag: bytes) -> None:
        self._send(Message(AUDIO_CS, AUDIO, self.stream_id, timestamp_ms, tag))

    async def drain(self) -> None:
        if self.failed is not None:
            raise self.failed
        await self.writer.drain()

    async def aclose(self, polite: bool = True) -> None:
        """Close the connection: ``polite``, end the publish (``FCUnpublish``,
        ``deleteStream``) and let what is queued go out (2 s at most); else, or after that,
        drop it at once (a far end that stopped reading would hold the socket and its buffer
        for as long as it acknowledges window probes)."""
        await cancel_and_wait(self._watch)
        transport = self.writer.transport
        if polite and self.failed is None and not transport.is_closing():
            with contextlib.suppress(OSError, RuntimeError):
                self._command(0, "FCUnpublish", 6, None, "")
                self._command(0, "deleteStream", 7, None, self.stream_id)
            self.writer.close()
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                await asyncio.wait_for(self.writer.wait_closed(), 2)
        transport.abort()


def _describe(values: list[Any]) -> str:
    info = next((v for v in values[2:] if isinstance(v, dict)), {})
    return f"{values[0]}: {info.get('code', '')} {info.get('description', '')}".strip()


# -- FLV tag bodies -----------------------------------------------------------------------------


def avc_sequence_header(record: bytes) -> bytes:
    return b"\x17\x00\x00\x00\x00" + record


def avc_frame(sample: bytes, keyframe: bool) -> bytes:
    """An AVCC access unit (no B-frames: composition time 0)."""
    return (b"\x17" if keyframe else b"\x27") + b"\x01\x00\x00\x00" + sample


def aac_sequence_header(asc: bytes) -> bytes:
    return b"\xaf\x00" + asc  # AAC, 44 kHz flag (FLV's ceiling; the ASC rules), 16-bit, stereo


def aac_frame(data: bytes) -> bytes:
    return b"\xaf\x01" + data
