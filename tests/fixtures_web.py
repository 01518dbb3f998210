"""Fixtures of the web tier: the app, its test client and browser."""
