"""The commerce package's errors (all :class:`core.problems.Problem` subclasses).

::

    SoldOut (409 sold_out)             not enough stock left
    OrderConflict (409 …)              the order is not in a state that allows this (expired, paid…)
    LimitExceeded (422 limit_exceeded) over the per-buyer limit
    DealEnded (422 deal_ended)         the pinned deal's time is over
    KeyReused (422 idempotency_key_reused) same Idempotency-Key, different body
"""

from core.problems import Conflict, Unprocessable


class SoldOut(Conflict):
    default_code = "sold_out"


class OrderConflict(Conflict):
    default_code = "bad_order_state"


class LimitExceeded(Unprocessable):
    default_code = "limit_exceeded"


class DealEnded(Unprocessable):
    default_code = "deal_ended"


class KeyReused(Unprocessable):
    default_code = "idempotency_key_reused"
