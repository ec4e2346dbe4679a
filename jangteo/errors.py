"""Problems as HTTP answers: application/problem+json (RFC 9457), mapped once for the app.

The problem tree itself (core/problems.py) knows nothing of the web; this is where a raised
``Problem``, Starlette's own 404/405 and a storage error become responses.
"""

from __future__ import annotations

import json
import logging

from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from core import metrics
from core.problems import PROBLEM_JSON, MethodNotAllowed, NotFound, Problem
from core.storage import unavailable

log = logging.getLogger(__name__)


def problem_response(problem: Problem, instance: str | None = None) -> Response:
    metrics.PROBLEMS.inc(status=str(problem.status), code=problem.code)
    return Response(
        json.dumps(problem.body(instance), ensure_ascii=False),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        # also for a 500, which Starlette answers outside the middleware that adds it elsewhere
        headers=problem.headers | {"X-Content-Type-Options": "nosniff"},
    )


async def handle_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc, instance=request.url.path)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    problem: Problem
    if exc.status_code == 405:
        problem = MethodNotAllowed("this method is not allowed here")
    elif exc.status_code == 404:
        problem = NotFound("no such route")
    else:
        problem = Problem(str(exc.detail))
        problem.status = exc.status_code  # type: ignore[misc]
    return problem_response(problem, request.url.path)


async def redis_error(request: Request, exc: Exception) -> Response:
    """A storage failure: 503, logged (core/storage.py)."""
    assert isinstance(exc, RedisError)
    return problem_response(unavailable(exc, request.url.path), request.url.path)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s", request.url.path, exc_info=exc)
    return problem_response(Problem("internal error; it has been logged"), request.url.path)


HANDLERS = {
    Problem: handle_problem,
    HTTPException: http_error,
    RedisError: redis_error,
    Exception: unexpected_error,
}
