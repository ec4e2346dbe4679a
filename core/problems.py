"""Errors as application/problem+json (RFC 9457).

One exception tree for the whole HTTP surface::

    Problem                      (status, code, detail)
    ├── BadRequest               400 bad_request, bad_sdp, bad_json, ...
    ├── Unauthorized             401 no_token, bad_token, token_expired
    ├── Forbidden                403 wrong_role, wrong_broadcast
    ├── NotFound                 404 not_found
    ├── MethodNotAllowed         405 method_not_allowed
    ├── Conflict                 409 host_live, broadcast_ended, bad_state
    ├── PayloadTooLarge          413 too_large
    ├── UnsupportedMediaType     415 unsupported_media_type
    ├── Unprocessable            422 rule broken
    ├── TooManyRequests          429 rate_limited
    └── Unavailable              503 not_ready

Packages raise their own subclasses. This module knows nothing of the web: the app maps
every ``Problem`` to an HTTP answer once (jangteo/errors.py), the chat socket to a close
code.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    default_code: ClassVar[str] = "internal"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.default_code
        self.headers = headers or {}
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": f"/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
        }
        if instance:
            doc["instance"] = instance
        doc.update(self.extra)
        return doc


class BadRequest(Problem):
    status = 400
    title = "Bad request"
    default_code = "bad_request"


class Unauthorized(Problem):
    status = 401
    title = "Unauthorized"
    default_code = "no_token"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(
            detail, code=code, headers={"WWW-Authenticate": 'Bearer realm="jangteo"'}, **extra
        )


class Forbidden(Problem):
    status = 403
    title = "Forbidden"
    default_code = "wrong_role"


class NotFound(Problem):
    status = 404
    title = "Not found"
    default_code = "not_found"


class MethodNotAllowed(Problem):
    status = 405
    title = "Method not allowed"
    default_code = "method_not_allowed"


class Conflict(Problem):
    status = 409
    title = "Conflict"
    default_code = "conflict"


class PayloadTooLarge(Problem):
    status = 413
    title = "Payload too large"
    default_code = "too_large"


class UnsupportedMediaType(Problem):
    status = 415
    title = "Unsupported media type"
    default_code = "unsupported_media_type"


class Unprocessable(Problem):
    status = 422
    title = "Unprocessable"
    default_code = "unprocessable"


class TooManyRequests(Problem):
    status = 429
    title = "Too many requests"
    default_code = "rate_limited"


class Elsewhere(Problem):
    """What was asked for is served by another node of the deployment (``Location``)."""

    status = 307
    title = "Served by another node"
    default_code = "elsewhere"


class Unavailable(Problem):
    status = 503
    title = "Service unavailable"
    default_code = "not_ready"
