"""Every show kept as a replay (VOD HLS and one MP4), from the packets it already has."""
