"""The OpenAPI document's outputs beyond WebRTC: Low-Latency HLS of a live show, and its replay."""

from __future__ import annotations

from typing import Any

from .parts import BID, problem

RUNG = {
    "name": "rung",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "a rendition's name, as `renditions` lists them (e.g. 360p)",
}
PLAYLIST = {
    "description": "the playlist",
    "content": {"application/vnd.apple.mpegurl": {"schema": {"type": "string"}}},
}
MEDIA = {
    "description": "fMP4 (immutable: a CDN may keep it)",
    "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
}
NOT_LIVE = problem("the broadcast is not live (not_live)")
MEDIA_TOKEN = {
    "name": "token",
    "in": "query",
    "required": False,
    "schema": {"type": "string"},
    "description": "with JANGTEO_MEDIA_TOKENS=1: a token of the broadcast (any role), which "
    "the playlists carry on into the URIs they list; else not needed",
}
NO_MEDIA_TOKEN = {
    "401": problem("JANGTEO_MEDIA_TOKENS=1 and no token, or a bad one"),
    "403": problem("JANGTEO_MEDIA_TOKENS=1 and another broadcast's token"),
}
STARTING = problem("the media is starting, or this server does not carry it yet (Retry-After)")


def hls_paths() -> dict[str, Any]:
    def query(name: str, desc: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 0},
            "description": desc,
        }

    return {
        "/hls/{bid}/index.m3u8": {
            "parameters": [BID],
            "get": {
                "summary": "multivariant playlist: every rendition (H.264 + AAC); anyone",
                "parameters": [MEDIA_TOKEN],
                "responses": {
                    "200": PLAYLIST,
                    **NO_MEDIA_TOKEN,
                    "404": problem("unknown broadcast"),
                    "409": NOT_LIVE,
                    "503": STARTING,
                },
            },
        },
        "/hls/{bid}/{rung}/index.m3u8": {
            "parameters": [BID, RUNG],
            "get": {
                "summary": "a rendition's Low-Latency HLS media playlist (blocking reload)",
                "parameters": [
                    query("_HLS_msn", "hold the answer until this media sequence number exists"),
                    query("_HLS_part", "… and this part of it (needs _HLS_msn)"),
                    MEDIA_TOKEN,
                ],
                "responses": {
                    "200": PLAYLIST,
                    **NO_MEDIA_TOKEN,
                    "400": problem("bad _HLS_msn/_HLS_part, or too far ahead (bad_hls_query)"),
                    "404": problem("unknown broadcast or rendition (rendition_not_found)"),
                    "409": NOT_LIVE,
                    "503": STARTING,
                },
            },
        },
        "/hls/{bid}/{rung}/{file}": {
            "parameters": [
                BID,
                RUNG,
                {
                    "name": "file",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "init{k}.mp4, seg{n}.m4s, part{n}.{i}.m4s",
                },
            ],
            "get": {
                "summary": "init section, segment or part (a hinted part is held until made)",
                "parameters": [MEDIA_TOKEN],
                "responses": {
                    "200": MEDIA,
                    **NO_MEDIA_TOKEN,
                    "404": problem("not made yet, or out of the window"),
                    "409": NOT_LIVE,
                    "503": STARTING,
                },
            },
        },
    }


CHAPTER = {
    "type": "object",
    "properties": {
        "t_s": {"type": "number", "description": "seconds into the replay"},
        "product_id": {"type": "string"},
        "name": {"type": "string"},
        "price": {"type": "integer", "description": "won, as shown (the deal price if any)"},
        "image": {"type": "string"},
        "at": {"type": "integer", "description": "when it was pinned, epoch ms"},
    },
}
VOD_FILE: dict[str, Any] = {
    "description": "replay.mp4 and init sections (video/mp4) or a segment (video/iso.segment)",
    "content": {
        "video/mp4": {"schema": {"type": "string", "format": "binary"}},
        "video/iso.segment": {"schema": {"type": "string", "format": "binary"}},
    },
}
# Starlette's own answers to a Range it cannot serve (plain text, not problem+json)
RANGE_ERROR: dict[str, Any] = {"content": {"text/plain": {"schema": {"type": "string"}}}}
NOT_READY = problem("the replay is not ready yet (replay_not_ready, Retry-After)")


def replay_paths() -> dict[str, Any]:
    status = {"type": "string", "enum": ["none", "recording", "ready"]}
    url = {"type": ["string", "null"]}
    return {
        "/api/broadcasts/{bid}/replay": {
            "parameters": [BID],
            "get": {
                "summary": "the show's replay: status, length, where to play it, its chapters",
                "responses": {
                    "200": {
                        "description": "{status, duration_s, hls, mp4, chapters_vtt, chapters}",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "status": status,
                                        "duration_s": {"type": "number"},
                                        "started_at": {"type": "integer"},
                                        "hls": url,
                                        "mp4": url,
                                        "chapters_vtt": url,
                                        "chapters": {"type": "array", "items": CHAPTER},
                                        "stopped": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "404": problem("unknown broadcast"),
                },
            },
        },
        "/vod/{bid}/index.m3u8": {
            "parameters": [BID],
            "get": {
                "summary": "the replay's VOD playlist (pins as EXT-X-DATERANGE)",
                "responses": {
                    "200": PLAYLIST,
                    "404": problem("unknown broadcast"),
                    "409": NOT_READY,
                },
            },
        },
        "/vod/{bid}/chapters.vtt": {
            "parameters": [BID],
            "get": {
                "summary": "the replay's chapters as WebVTT",
                "responses": {
                    "200": {
                        "description": "WebVTT",
                        "content": {"text/vtt": {"schema": {"type": "string"}}},
                    },
                    "404": problem("unknown broadcast"),
                    "409": NOT_READY,
                },
            },
        },
        "/vod/{bid}/{file}": {
            "parameters": [
                BID,
                {
                    "name": "file",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "init{k}.mp4, seg{n}.m4s or replay.mp4",
                },
            ],
            "get": {
                "summary": "a replay file; HTTP Range answered 206 (replay.mp4: moov first)",
                "responses": {
                    "200": VOD_FILE,
                    "206": {
                        "description": "the range asked for (several: multipart/byteranges)",
                        "content": VOD_FILE["content"]
                        | {"multipart/byteranges": {"schema": {"type": "string"}}},
                    },
                    "400": RANGE_ERROR | {"description": "a malformed Range header"},
                    "404": problem("no such file, or unknown broadcast"),
                    "409": NOT_READY,
                    "416": RANGE_ERROR | {"description": "the range is past the end"},
                },
            },
        },
    }


DESTINATION = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "url": {"type": "string", "description": "the URL with its stream key masked (…/****)"},
        "rendition": {"type": "string"},
        "created_at": {"type": "integer"},
        "status": {"type": "string", "enum": ["idle", "connecting", "live", "retrying", "failed"]},
        "since": {"type": "integer", "description": "epoch ms"},
        "bytes_sent": {"type": "integer"},
        "last_error": {"type": ["string", "null"]},
    },
}


def restream_paths() -> dict[str, Any]:
    did = {"name": "did", "in": "path", "required": True, "schema": {"type": "string"}}
    body = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["name", "url"],
                    "properties": {
                        "name": {"type": "string", "maxLength": 60},
                        "url": {"type": "string", "description": "rtmp:// or rtmps://…/app/key"},
                        "rendition": {"type": "string", "description": "default: the top"},
                    },
                }
            }
        },
    }
    one = {
        "description": "the destination",
        "content": {"application/json": {"schema": DESTINATION}},
    }
    return {
        "/api/broadcasts/{bid}/destinations": {
            "parameters": [BID],
            "post": {
                "summary": "add a restream destination (host)",
                "security": [{"bearer": []}],
                "requestBody": body,
                "responses": {
                    "201": one,
                    "401": problem("no token"),
                    "403": problem("not the host"),
                    "404": problem("unknown broadcast"),
                    "409": problem("five already (too_many_destinations)"),
                    "422": problem(
                        "not rtmp(s) (bad_destination_url), or a loopback/private "
                        "address (private_destination)"
                    ),
                },
            },
            "get": {
                "summary": "the destinations and what each push is doing (host)",
                "security": [{"bearer": []}],
                "responses": {
                    "200": {
                        "description": "the destinations, oldest first",
                        "content": {
                            "application/json": {"schema": {"type": "array", "items": DESTINATION}}
                        },
                    },
                    "401": problem("no token"),
                    "403": problem("not the host"),
                    "404": problem("unknown broadcast"),
                },
            },
        },
        "/api/broadcasts/{bid}/destinations/{did}": {
            "parameters": [BID, did],
            "delete": {
                "summary": "remove a destination; its push stops (host)",
                "security": [{"bearer": []}],
                "responses": {
                    "204": {"description": "removed"},
                    "404": problem("no such destination, or unknown broadcast"),
                },
            },
        },
    }
