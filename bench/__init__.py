"""Benchmarks and accuracy scoring on ../shared/data (see README: Performance)."""
