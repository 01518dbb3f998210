"""Accounts: users, their password hashes and the version their sessions were made under."""

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from sieve.database.engine import Store
from sieve.models import User, utcnow

USERS = User.__table__


class DuplicateEmail(ValueError):
    """An account with this email exists already."""


class Accounts(Store):
    """The users table."""

    def create_user(self, email: str, password_hash: str, is_admin: bool = False) -> User:
        """A new account; DuplicateEmail when the email (compared in lower case) is taken."""
        email = email.strip().lower()
        try:
            with self.writing() as connection:
                row = connection.execute(
                    insert(USERS).values(email=email, password_hash=password_hash,
                                         is_admin=is_admin, created_at=utcnow())
                    .returning(*USERS.c)).one()
        except IntegrityError as exc:
            raise DuplicateEmail(f"an account with {email} already exists") from exc
        return User(**row._mapping)

    def get_user(self, user_id: int) -> User | None:
        """One account by id, or None."""
        with self.session() as s:
            return s.get(User, user_id)

    def user_by_email(self, email: str) -> User | None:
        """The account with this email (any case), or None."""
        with self.session() as s:
            return s.scalar(select(User).where(User.email == email.strip().lower()))

    def set_password_hash(self, user_id: int, password_hash: str,
                          end_sessions: bool = False) -> None:
        """Replace an account's password hash: a rehash of the same password, or (with
        `end_sessions`) a new password, which also ends every session of the account."""
        values = {"password_hash": password_hash}
        if end_sessions:
            values["session_version"] = USERS.c.session_version + 1
        with self.writing() as connection:
            connection.execute(update(USERS).where(USERS.c.id == user_id).values(**values))

    def end_sessions(self, user_id: int) -> None:
        """End every session of an account (its session version moves on)."""
        with self.writing() as connection:
            connection.execute(update(USERS).where(USERS.c.id == user_id)
                               .values(session_version=USERS.c.session_version + 1))
