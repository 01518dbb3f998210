"""What recording webhook deliveries costs a state change: `Database.transition` of
predictions without a webhook, and with one that wants every event (one more INSERT).

    python -m bench.webhooks                  # 300 predictions of each, 3 changes each

On a fresh SQLite database in a scratch folder; prints the median per state change.
"""

import argparse
import statistics
import tempfile
import time

from sieve.database import Database
from sieve.migrate import upgrade
from sieve.webhooks import new_secret

CHANGES = (("filtering", "queued"), ("classifying", "filtering"), ("done", "classifying"))


def median_change(db: Database, user_id: int, webhook: dict | None, count: int) -> float:
    """Median seconds of one state change of `count` new predictions."""
    ids = [db.create_submissions([([(b"x", "image/png", "a.png")], "filter", user_id, None,
                                   webhook)])[0][0].id for _ in range(count)]
    times = []
    for pid in ids:
        for state, before in CHANGES:
            started = time.perf_counter()
            db.transition(pid, state, (before,))
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    """Run both cases twice (the first round warms the statement cache) and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=300,
                        help="predictions per case and round (default: 300)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        upgrade(url)
        db = Database(url)
        user = db.create_user("bench@example.com", "-")
        token = db.create_api_token(user.id, "bench", "0" * 64, "sieve_bench", ["predict"],
                                    new_secret())
        hook = {"url": "https://93.184.215.14/", "events": "all", "token_id": token.id}
        for _ in range(2):
            plain = median_change(db, user.id, None, args.predictions)
            hooked = median_change(db, user.id, hook, args.predictions)
        print(f"state change without a webhook: {plain * 1e6:.0f} µs (median)")
        print(f"state change recording a delivery: {hooked * 1e6:.0f} µs (median)")
        db.dispose()


if __name__ == "__main__":
    main()
