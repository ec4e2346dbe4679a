"""The stream package's errors, all :class:`core.problems.Problem` subclasses.

::

    BadSdp (400)          the offer does not parse or carries nothing we can use
    HostLive (409)        another host identity is already publishing
    CohostLimit (409)     the host and 3 co-hosts are already publishing
    BroadcastEnded (409)  publishing or playing an ended broadcast
    SessionNotFound (404) unknown WHIP/WHEP session
    RenditionNotFound (404) ``?rendition=`` names no rung of the broadcast's ladder
    NotLive (409)         playing a broadcast that has not gone live yet (Retry-After)
    TooManySessions (429) over the sessions allowed per person, per address or per broadcast
    OriginElsewhere (409) a co-host's WHIP reached a node that is not the broadcast's origin
                          (``origin: {node, url}``: publish there)
"""

from core.problems import BadRequest, Conflict, NotFound, TooManyRequests


class BadSdp(BadRequest):
    default_code = "bad_sdp"


class HostLive(Conflict):
    default_code = "host_live"


class CohostLimit(Conflict):
    default_code = "cohost_limit"


class BroadcastEnded(Conflict):
    default_code = "broadcast_ended"


class SessionNotFound(NotFound):
    default_code = "session_not_found"


class RenditionNotFound(NotFound):
    default_code = "rendition_not_found"


class NotLive(Conflict):
    default_code = "not_live"


class TooManySessions(TooManyRequests):
    default_code = "too_many_sessions"


class OriginElsewhere(Conflict):
    default_code = "origin_elsewhere"
