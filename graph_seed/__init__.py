"""Seed plants: the real SKAB testbed (Turtle) and a deterministic generator of any size."""
