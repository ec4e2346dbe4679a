"""The media path: ingest → compose → encode once → fan out.

Modules, in data-path order: :mod:`stream.rtc` (peer connections, ICE settings, SDP helpers),
:mod:`stream.ingest` (WHIP publishers → decoded frames), :mod:`stream.compose` (one compositor per
broadcast, slate), :mod:`stream.encode` (one encoder per codec per broadcast), :mod:`stream.fanout`
(encoded frames to every viewer, bounded), :mod:`stream.hub` (a broadcast's media and its sessions),
:mod:`stream.whip` / :mod:`stream.whep` (HTTP endpoints). :mod:`stream.pattern` and
:mod:`stream.synthetic` make the test pattern and tone used by the demo studio, tests and benches.
"""
