"""Sieve's Flask web tier: not built yet.

This package will hold the app factory (`create_app`) and the blueprints for the
pages, the JSON API under `/api/v1`, authentication and server-sent events. It will
enqueue work by task name and never import torch.
"""
