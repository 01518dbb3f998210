"""Fixtures of the JSON API: tokens, a live server for property-based runs."""
