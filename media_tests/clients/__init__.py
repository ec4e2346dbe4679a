"""Real (non-aiortc) WHIP publishers driven by media_tests/test_interop.py; see docs/interop.md."""
