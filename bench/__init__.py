"""Benchmarks: `make bench` runs them and prints tables and ratios (no timed tests)."""
