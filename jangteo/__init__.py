"""Jangteo (장터): live-commerce broadcasting backend.

Layers, bottom up: ``core`` (the kernel: config, tokens, problems, tasks, metrics, Redis, the
broadcast record and its events); ``stream`` (the media path), ``chat`` (Redis Streams chat) and
``commerce`` (catalog and orders), each on ``core`` only; ``jangteo`` on top, the composition
root (app, routes, access table, pages, CLI, benchmarks, test kit).
"""

__version__ = "0.1.0"
