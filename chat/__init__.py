"""Live chat on Redis Streams: the broadcast's event stream, read once per process and fanned out
to every socket (:mod:`chat.hub`), the socket protocol (:mod:`chat.ws`, frames in
:mod:`chat.frames`), moderation and history over HTTP (:mod:`chat.http`), text rules
(:mod:`chat.normalize`), ranks (:mod:`chat.roles`) and per-broadcast settings (:mod:`chat.store`).
Events are published through :mod:`core.events`.
"""
