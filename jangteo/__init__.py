"""Jangteo (장터): live-commerce broadcasting backend.

Packages: ``jangteo`` (app, config, tokens, broadcasts, CLI), ``stream`` (the media path),
``chat`` (Redis Streams chat), ``commerce`` (catalog and orders).
"""

__version__ = "0.1.0"
