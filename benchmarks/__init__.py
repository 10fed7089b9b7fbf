"""Benchmarks of ../shared/BENCHMARKS.md: run with ``python -m benchmarks``."""
