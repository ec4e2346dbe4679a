"""RTMP's chunk stream: messages cut into chunks for the wire (:class:`ChunkWriter`), and chunks
from the wire put back together into messages (:class:`ChunkReader`)."""

from __future__ import annotations

import dataclasses
import struct

DEFAULT_CHUNK = 128
MAX_MESSAGE = 64 * 1024  # a server's control and command messages are small
MAX_STREAMS = 16  # chunk streams a server may use at once (it needs two or three)
EXTENDED = 0xFFFFFF

# message types
SET_CHUNK_SIZE, ABORT, ACK, USER_CONTROL, WINDOW_ACK_SIZE, SET_PEER_BANDWIDTH = 1, 2, 3, 4, 5, 6
AUDIO, VIDEO, DATA_AMF0, COMMAND_AMF0 = 8, 9, 18, 20


@dataclasses.dataclass(slots=True)
class Message:
    csid: int
    type_id: int
    stream_id: int
    timestamp: int
    payload: bytes


def _basic(fmt: int, csid: int) -> bytes:
    if not 2 <= csid < 64:
        raise ValueError("chunk stream ids 2-63 only")
    return bytes([fmt << 6 | csid])


class ChunkWriter:
    def __init__(self) -> None:
        self.chunk_size = DEFAULT_CHUNK

    def message(self, m: Message) -> bytes:
        """``m`` as chunks: a full (type 0) header, then type 3 continuations."""
        ts = m.timestamp & 0xFFFFFFFF
        ext = struct.pack(">I", ts) if ts >= EXTENDED else b""
        head = (
            _basic(0, m.csid)
            + struct.pack(">I", min(ts, EXTENDED))[1:]
            + struct.pack(">I", len(m.payload))[1:]
            + bytes([m.type_id])
            + struct.pack("<I", m.stream_id)
        )
        size, payload = self.chunk_size, m.payload
        parts = [head, ext, payload[:size]]
        more = _basic(3, m.csid) + ext
        for at in range(size, len(payload), size):
            parts += (more, payload[at : at + size])
        return b"".join(parts)


@dataclasses.dataclass(slots=True)
class _Stream:
    """What one chunk stream's last header said, and the message it is part-way through."""

    timestamp: int = 0
    delta: int = 0
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    extended: bool = False
    partial: bytearray = dataclasses.field(default_factory=bytearray)


class ChunkReader:
    def __init__(self) -> None:
        self.chunk_size = DEFAULT_CHUNK
        self.received = 0  # bytes taken from the wire (acknowledgements count them)
        self._buf = bytearray()
        self._streams: dict[int, _Stream] = {}

    def feed(self, data: bytes) -> list[Message]:
        self.received += len(data)
        self._buf += data
        out: list[Message] = []
        while True:
            whole, message = self._chunk()
            if not whole:
                return out
            if message is not None:
                out.append(message)
                if message.type_id == ABORT and len(message.payload) >= 4:
                    dropped = self._streams.get(struct.unpack(">I", message.payload[:4])[0])
                    if dropped is not None:
                        dropped.partial.clear()
                if message.type_id == SET_CHUNK_SIZE and len(message.payload) >= 4:
                    size = struct.unpack(">I", message.payload[:4])[0] & 0x7FFFFFFF
                    if not 1 <= size <= 0xFFFFFF:
                        raise ValueError(f"bad chunk size {size}")
                    self.chunk_size = size

    def _chunk(self) -> tuple[bool, Message | None]:
        """One chunk off the buffer: (False, None) if it does not hold a whole chunk yet, else
        (True, the message it completed or None if the message goes on)."""
        buf = self._buf
        if not buf:
            return False, None
        fmt, csid, at = buf[0] >> 6, buf[0] & 0x3F, 1
        if csid < 2:  # a two- or three-byte basic header
            wide = csid == 1
            if len(buf) < 3 + wide:
                return False, None
            csid, at = 64 + buf[1] + (buf[2] << 8 if wide else 0), 2 + wide
        s = self._streams.get(csid)
        if s is None:
            if len(self._streams) >= MAX_STREAMS:
                raise ValueError(f"more than {MAX_STREAMS} chunk streams")
            s = self._streams[csid] = _Stream()
        need = (11, 7, 3, 0)[fmt]
        if len(buf) < at + need:
            return False, None
        field = int.from_bytes(buf[at : at + 3], "big") if fmt < 3 else 0
        length, type_id, stream_id = s.length, s.type_id, s.stream_id
        if fmt <= 1:
            length = int.from_bytes(buf[at + 3 : at + 6], "big")
            type_id = buf[at + 6]
        if fmt == 0:
            stream_id = struct.unpack("<I", buf[at + 7 : at + 11])[0]
        at += need
        extended = field == EXTENDED if fmt < 3 else s.extended
        if extended:
            if len(buf) < at + 4:
                return False, None
            field = struct.unpack(">I", buf[at : at + 4])[0] if fmt < 3 else field
            at += 4
        if length > MAX_MESSAGE:
            raise ValueError(f"a {length}-byte message is more than a server sends")
        take = min(self.chunk_size, length - len(s.partial)) if fmt == 3 else min(
            self.chunk_size, length)  # fmt: skip
        if len(buf) < at + take:
            return False, None
        # the whole chunk is here: apply its header
        if fmt < 3:
            if s.partial:
                raise ValueError("a new message started before the last one ended")
            s.length, s.type_id, s.stream_id, s.extended = length, type_id, stream_id, extended
            if fmt == 0:
                s.timestamp, s.delta = field, 0
            else:
                s.delta = field
                s.timestamp += field
        elif not s.partial:  # type 3 starting a message: same header, same delta again
            s.timestamp += s.delta
        s.partial += buf[at : at + take]
        del buf[: at + take]
        if len(s.partial) < s.length:
            return True, None
        message = Message(csid, s.type_id, s.stream_id, s.timestamp, bytes(s.partial))
        s.partial.clear()
        return True, message
