"""Idempotent requests: the first answer to a request sent with an Idempotency-Key."""

from datetime import timedelta

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from sieve.database.engine import Store
from sieve.models import IdempotentRequest, utcnow

REQUESTS = IdempotentRequest.__table__


class IdempotencyKeys(Store):
    """The idempotent_requests table."""

    def claim_idempotency_key(self, user_id: int, key: str, fingerprint: str,
                              keep_for: float = 86400.0, abandon_after: float = 60.0
                              ) -> IdempotentRequest | None:
        """Reserve a key for a request (status 0 until `finish_idempotent_request`).

        Returns None when this call holds the key now, else the row that holds it: a
        finished answer to replay, or another request still in progress. A key older than
        `keep_for` seconds, or a reservation older than `abandon_after` (its request
        died), is taken over.
        """
        now = utcnow()
        mine = and_(REQUESTS.c.user_id == user_id, REQUESTS.c.key == key)
        try:
            with self.writing() as connection:
                connection.execute(insert(REQUESTS).values(
                    user_id=user_id, key=key, fingerprint=fingerprint, status=0,
                    response={}, created_at=now))
            return None
        except IntegrityError:
            pass  # the key is known: replay it, unless it has expired or was abandoned
        with self.writing() as connection:
            taken = connection.execute(
                update(REQUESTS)
                .where(mine, or_(REQUESTS.c.created_at < now - timedelta(seconds=keep_for),
                                 and_(REQUESTS.c.status == 0,
                                      REQUESTS.c.created_at
                                      < now - timedelta(seconds=abandon_after))))
                .values(fingerprint=fingerprint, status=0, response={}, created_at=now)
            ).rowcount
            if taken:
                return None
            row = connection.execute(select(REQUESTS).where(mine)).first()
        return IdempotentRequest(**row._mapping) if row else None

    def finish_idempotent_request(self, user_id: int, key: str, status: int,
                                  response: dict) -> None:
        """Store the answer to replay for a reserved key."""
        with self.writing() as connection:
            connection.execute(update(REQUESTS)
                               .where(REQUESTS.c.user_id == user_id, REQUESTS.c.key == key)
                               .values(status=status, response=response))

    def release_idempotency_key(self, user_id: int, key: str) -> None:
        """Drop a reservation whose request failed, so that a retry runs it again."""
        with self.writing() as connection:
            connection.execute(delete(REQUESTS)
                               .where(REQUESTS.c.user_id == user_id, REQUESTS.c.key == key,
                                      REQUESTS.c.status == 0))
