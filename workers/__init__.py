"""Sieve's Celery workers: not built yet.

This package will hold the one Celery app and its thin tasks for the `filter`,
`classify` and `training` queues, calling plain functions from `training`.
"""
