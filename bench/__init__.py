"""Benchmark harness: python -m bench <suite>."""
