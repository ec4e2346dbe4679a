"""HTTP Live Streaming (LL-HLS) and recordings from the encoded packets, without re-encoding."""
