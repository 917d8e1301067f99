"""Benchmarks and the load generator. Not part of the installed package."""
