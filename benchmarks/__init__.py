"""Runnable benchmarks: each prints funcX figures beside a named peer measured in the same run."""
