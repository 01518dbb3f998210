"""The web request behind a prediction, named on the worker's log lines for it.

The web tier sends each task of a prediction's chain with a `sieve_request_id` message
header (see `workers.client`). A worker notes it when a task starts, in the task's own
thread, and its log handlers add `[request <id>]` to every line that thread logs until
the task ends. Imported by `workers.tasks`, before Celery sets up logging.
"""

import logging
import threading

from celery.signals import after_setup_logger, after_setup_task_logger, task_postrun, task_prerun

HEADER = "sieve_request_id"

_current = threading.local()


def headers(request_id: str | None) -> dict:
    """The message headers that carry a request id (none without one)."""
    return {HEADER: request_id} if request_id else {}


def current() -> str | None:
    """The request id of the task this thread is running, if it came with one."""
    return getattr(_current, "request_id", None)


@task_prerun.connect
def _enter(task=None, **_kwargs) -> None:
    """A task starts: remember its request id for this thread."""
    _current.request_id = getattr(task.request, HEADER, None) if task else None


@task_postrun.connect
def _leave(**_kwargs) -> None:
    """A task ended: its request id no longer applies."""
    _current.request_id = None


class RequestFormatter(logging.Formatter):
    """Another formatter's line, followed by the current request id when there is one."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        """The inner formatter's text, tagged with the request id."""
        text = self.inner.format(record)
        request_id = current()
        return f"{text} [request {request_id}]" if request_id else text


@after_setup_logger.connect
@after_setup_task_logger.connect
def _tag_handlers(logger=None, **_kwargs) -> None:
    """Wrap the formatters of the worker's log handlers."""
    for handler in logger.handlers if logger else ():
        if not isinstance(handler.formatter, RequestFormatter):
            handler.setFormatter(RequestFormatter(handler.formatter))
