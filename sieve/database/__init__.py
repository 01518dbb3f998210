"""`Database`: every read and write of Sieve's tables goes through this class.

Views and tasks call its methods; none of them builds a query. Each aggregate has its own
module (accounts, tokens, predictions, their state changes, training runs, idempotency
keys, webhook deliveries); `Database` is all of them on one engine, and every change goes
through the one write path, `Store.writing`.
"""

from sieve.database.accounts import Accounts, DuplicateEmail
from sieve.database.deliveries import Deliveries
from sieve.database.engine import LARGEST_INTEGER, Store, make_engine
from sieve.database.idempotency import IdempotencyKeys
from sieve.database.predictions import Predictions
from sieve.database.tokens import Tokens
from sieve.database.training_runs import TrainingRuns
from sieve.database.transitions import Transitions

__all__ = ["LARGEST_INTEGER", "Database", "Deliveries", "DuplicateEmail", "Store",
           "make_engine"]


class Database(Accounts, Tokens, Predictions, Transitions, TrainingRuns, IdempotencyKeys):
    """Sieve's data: accounts, tokens, stored images, predictions and their state changes,
    training runs and idempotent requests."""
