"""Sieve's test suite (a package, so that `tests.*` never resolves to an installed one)."""
