"""Deliver the encoded packets without decoding: WebRTC viewers, locally or on worker processes."""
