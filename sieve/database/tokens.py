"""API tokens: stored by their hash, looked up on every API request, revoked by their owner."""

from datetime import UTC, timedelta

from sqlalchemy import bindparam, insert, or_, select, update

from sieve.database.accounts import USERS
from sieve.database.engine import Store
from sieve.models import ApiToken, User, utcnow

TOKENS = ApiToken.__table__
# Every API request looks its token up: a Core statement built once, with the owner's
# columns labelled `owner_<name>`.
TOKEN_OWNER = (
    select(*TOKENS.c, *(column.label(f"owner_{column.name}") for column in USERS.c))
    .join_from(TOKENS, USERS, USERS.c.id == TOKENS.c.user_id)
    .where(TOKENS.c.token_hash == bindparam("token_hash")))


class Tokens(Store):
    """The api_tokens table."""

    def create_api_token(self, user_id: int, name: str, token_hash: str, prefix: str,
                         scopes: list[str], webhook_secret: str | None = None) -> ApiToken:
        """Store a new token by its hash (the plaintext is never stored), with the secret
        that signs its webhooks."""
        with self.writing() as connection:
            row = connection.execute(
                insert(TOKENS).values(user_id=user_id, name=name[:100],
                                      token_hash=token_hash, prefix=prefix,
                                      scopes=list(scopes), created_at=utcnow(),
                                      webhook_secret=webhook_secret)
                .returning(*TOKENS.c)).one()
        return ApiToken(**row._mapping)

    def api_token_owner(self, token_hash: str) -> tuple[ApiToken, User] | None:
        """The token with this hash and the user it belongs to, or None. Both are
        detached records (read in one query without the ORM session, which costs more
        than the query itself)."""
        with self.engine.connect() as connection:
            row = connection.execute(TOKEN_OWNER, {"token_hash": token_hash}).first()
        if row is None:
            return None
        values = row._mapping
        return (ApiToken(**{column.name: values[column.name] for column in TOKENS.c}),
                User(**{column.name: values[f"owner_{column.name}"] for column in USERS.c}))

    def api_tokens(self, user_id: int) -> list[ApiToken]:
        """A user's tokens, revoked ones included, newest first."""
        with self.session() as s:
            return list(s.scalars(select(ApiToken).where(ApiToken.user_id == user_id)
                                  .order_by(ApiToken.id.desc())))

    def revoke_api_token(self, user_id: int, token_id: int) -> bool:
        """Revoke one of the user's tokens; False when it is not theirs or already revoked."""
        with self.writing() as connection:
            return bool(connection.execute(
                update(TOKENS)
                .where(TOKENS.c.id == token_id, TOKENS.c.user_id == user_id,
                       TOKENS.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())).rowcount)

    def touch_api_token(self, token: ApiToken, every: float = 60.0) -> None:
        """Record that a token was used, at most once per `every` seconds (one write, not
        one per request). No statement at all when the token as read shows a use within
        that time: a write per request would queue behind the workers' writes."""
        now = utcnow()
        seen = token.last_used_at
        if seen is not None and (seen if seen.tzinfo else seen.replace(tzinfo=UTC)) >= (
                now - timedelta(seconds=every)):
            return
        with self.writing() as connection:
            connection.execute(update(TOKENS)
                               .where(TOKENS.c.id == token.id,
                                      or_(TOKENS.c.last_used_at.is_(None),
                                          TOKENS.c.last_used_at
                                          < now - timedelta(seconds=every)))
                               .values(last_used_at=now))
