"""Benchmarks; each script prints one JSON line (see docs/performance.md)."""
