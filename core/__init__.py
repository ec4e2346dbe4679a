"""The kernel every package stands on; it imports nothing of ours (tests/test_layering.py).

:mod:`core.config` (Settings from the environment), :mod:`core.tokens` (signed role tokens) and
:mod:`core.revocation`, :mod:`core.problems` (the error tree, codes only: the app maps it to
problem+json), :mod:`core.tasks` (owned tasks), :mod:`core.metrics` (the Prometheus registry),
Redis access (:mod:`core.keys`, :mod:`core.redismux`, :mod:`core.redisproc` the embedded server,
:mod:`core.redislimit`, :mod:`core.storage` the one place a Redis failure becomes a 503),
:mod:`core.broadcasts` (the broadcast record and its state machine), :mod:`core.events` (the
broadcast's event stream: every package publishes there, chat is one reader), :mod:`core.web`
(what a handler needs from a request: its caller, body, address), :mod:`core.ratelimit`,
:mod:`core.loop`, :mod:`core.malloc`.
"""
