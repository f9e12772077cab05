"""Hostile model bodies and the launcher that runs the real runner CLI under them (tests/test_hostile_bodies.py)."""
