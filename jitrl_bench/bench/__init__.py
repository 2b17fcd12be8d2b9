"""Benchmarks (`jitrl-bench bench ...`): speed and memory goals are measured here, never asserted in timed tests."""
