"""Throughput measurement of certification on this machine (``smoothcert bench``, benchmarks/)."""
