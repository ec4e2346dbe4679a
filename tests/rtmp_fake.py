"""A scripted RTMP server on loopback for the publisher's own tests: the handshake, answers to
``connect`` and ``createStream``, then what ``mode`` says at ``publish``:

* ``start``: ``NetStream.Publish.Start``, then it keeps every audio and video message;
* ``drop``: ``Publish.Start``, then it hangs up (a platform that takes the key, then refuses);
* ``refuse``: an ``onStatus`` error whose description echoes the stream key back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from stream.deliver.rtmp import amf
from stream.deliver.rtmp.chunks import (
    AUDIO,
    COMMAND_AMF0,
    VIDEO,
    ChunkReader,
    ChunkWriter,
    Message,
)


class FakeRtmpServer:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.connections: list[float] = []  # when each was accepted (monotonic)
        self.media: list[Message] = []  # audio and video messages, in arrival order
        self.got_media = asyncio.Event()
        self.server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def url(self, key: str) -> str:
        assert self.server is not None
        return f"rtmp://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/live/{key}"

    async def aclose(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._clients.add(task)
        task.add_done_callback(self._clients.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append(time.monotonic())
        try:
            c0c1 = await reader.readexactly(1537)
            writer.write(b"\x03" + bytes(1536) + c0c1[1:])  # S0, S1, S2 (C1 echoed)
            await reader.readexactly(1536)  # C2
            chunks, out = ChunkReader(), ChunkWriter()

            def command(stream_id: int, *values: Any) -> None:
                writer.write(out.message(Message(3, COMMAND_AMF0, stream_id, 0,
                                                 amf.encode(*values))))  # fmt: skip

            while data := await reader.read(65536):
                for m in chunks.feed(data):
                    if m.type_id in (AUDIO, VIDEO):
                        self.media.append(m)
                        self.got_media.set()
                        continue
                    if m.type_id != COMMAND_AMF0:
                        continue
                    name, txn, *rest = amf.decode(m.payload)
                    if name == "connect":
                        ok = {"code": "NetConnection.Connect.Success", "level": "status"}
                        command(0, "_result", txn, {"fmsVer": "FMS/3,0,1,123"}, ok)
                    elif name == "createStream":
                        command(0, "_result", txn, None, 1.0)
                    elif name == "publish":
                        if self.mode == "refuse":
                            command(1, "onStatus", 0, None, {
                                "level": "error", "code": "NetStream.Publish.BadName",
                                "description": f"{rest[1]} is already publishing"})  # fmt: skip
                            continue
                        start = {"level": "status", "code": "NetStream.Publish.Start"}
                        command(1, "onStatus", 0, None, start)
                        if self.mode == "drop":
                            await writer.drain()
                            return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
