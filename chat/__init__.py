"""Live chat on Redis Streams.

For now: the publish API the rest of the product uses to put events (status, pin, stock, order)
into a broadcast's stream, so that they resume without gaps with the chat history.
"""

from .publish import STREAM_MAXLEN, publish, stream_key

__all__ = ["STREAM_MAXLEN", "publish", "stream_key"]
