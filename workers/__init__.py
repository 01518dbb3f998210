"""Sieve's Celery workers: `celery -A workers worker -Q filter,classify`.

Celery's command line finds the app as `workers.app`. Creating it opens no connection;
the tasks module (and with it torch) is imported by worker processes only, so the web
tier can import this package to send tasks by name.
"""

from workers.celery_app import create_celery

app = create_celery()
