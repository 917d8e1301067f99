"""Offline replay of recorded traffic through the rules: what `refinery-py rules test` runs.

The same buffer and rules engine as the server, driven by the recorded span timestamps instead of
the wall clock, so time-windowed samplers behave as they would have in production.
"""
