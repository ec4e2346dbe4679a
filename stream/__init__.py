"""The media path: ingest → compose → encode once → deliver (docs: README, "The data path").

- :mod:`stream.ingest`: WHIP publishers (aiortc peers) → decoded frames into a source; the
  synthetic studio (test pattern and tone) used by the demo, tests and benchmarks.
- :mod:`stream.compose`: one compositor per broadcast (layout of the publishers' pictures, the
  slate while the host is away, overlay sprites, the audio mix).
- :mod:`stream.encode`: the encoders (once per codec per broadcast, keyframe limiter) and the bus
  that hands encoded frames to everything that sends them.
- :mod:`stream.deliver`: WebRTC out (WHEP negotiation, the fast fan-out, aiortc hooks, the
  aiortc error boundary in :mod:`stream.deliver.rtc`) and the fan-out worker processes with
  their typed channel. HLS, recording, RTMP and the relay between nodes will sit beside it.
- :mod:`stream.hub` (a broadcast's media on this process and its sessions), :mod:`stream.http`
  (the WHIP/WHEP endpoints), :mod:`stream.cohosting` (layout and co-host rights),
  :mod:`stream.errors` (the package's problems).
"""
