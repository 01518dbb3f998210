"""Sieve's tests (a package, so that `tests` here wins over any installed `tests`)."""
