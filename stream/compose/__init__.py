"""Compose: one picture and one audio mix per broadcast, overlay drawn in (pixels touched once)."""
