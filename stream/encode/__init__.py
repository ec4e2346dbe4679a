"""Encode once per codec per broadcast, and the bus that hands the packets to every consumer."""
