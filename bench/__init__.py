"""Benchmarks of issue #5 (throughput, load) and #6 (latency): `python -m bench` writes BENCHMARKS.md."""
