"""Runnable benchmarks; each prints its figures and the ratio against its comparison."""
