"""Ingest: publishers (WHIP peers, the synthetic studio) → decoded frames for the compositor."""
