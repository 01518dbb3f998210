"""The no-op chain the benchmarks measure the real one against: two tasks that do nothing.

They exist only in a worker that a benchmark starts as `celery -A bench.noop worker`: the
service's app with these two tasks added. Senders name their queue (`noop_chain`).
"""

from workers import app

FIRST, SECOND = "bench.noop.first", "bench.noop.second"


@app.task(name=FIRST)
def first(value):
    """The first task of the chain: hands its argument on."""
    return value


@app.task(name=SECOND)
def second(value):
    """The second task of the chain: hands its argument back."""
    return value
