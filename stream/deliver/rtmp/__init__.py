"""RTMP(S) restream: the show pushed to the platforms merchants already sell on, no re-encode."""
