"""Database migrations (Alembic), run from Python or the command line.

    python -m sieve.migrate                      # bring the database to the newest schema
    python -m sieve.migrate current              # which revision the database is at
    python -m sieve.migrate revision "add x"     # new migration from the models (developers)

The database is the one DATABASE_URL names (default: the SQLite file var/sieve.db).
"""

import argparse
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from sieve.config import get_settings
from sieve.database import make_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic configuration for `url`, without an alembic.ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _ensure_sqlite_folder(url: str) -> None:
    """SQLite creates the file but not its folder."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` to `revision` (the newest by default)."""
    _ensure_sqlite_folder(url)
    command.upgrade(alembic_config(url), revision)


def is_current(url: str) -> bool:
    """True when the database at `url` is at the newest revision."""
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision() == head
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    """Command line: upgrade (default), current, or revision."""
    parser = argparse.ArgumentParser(prog="python -m sieve.migrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", nargs="?", default="upgrade",
                        choices=["upgrade", "current", "revision"])
    parser.add_argument("message", nargs="?", help="message of a new revision")
    args = parser.parse_args(argv)
    url = get_settings().database_url
    if args.action == "upgrade":
        upgrade(url)
        print(f"database at the newest schema: {url}")
    elif args.action == "current":
        command.current(alembic_config(url))
    else:
        if not args.message:
            parser.error("revision needs a message")
        command.revision(alembic_config(url), message=args.message, autogenerate=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
