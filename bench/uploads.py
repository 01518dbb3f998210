"""Clients that upload through the HTTP API, and the check of what they were told against
the database; shared by bench.load and bench.faults.

Each client uploads one image per request to POST /api/v1/predictions as fast as it is
answered. A 202 is an acknowledgement: its prediction ids are what the clients were told.
A 503 is waited out for its Retry-After, then the same upload is sent again; so is a
request that got no answer at all (connection refused or reset, timeout). Every other
answer is counted with its status and detail, and the client goes on with the next upload.
"""

import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests
from sqlalchemy import select

from bench.processes import wait_for
from sieve.database import Database
from sieve.models import FINAL_STATES, Prediction

TIMEOUT = 30  # seconds one request may take
NO_ANSWER_PAUSE = 1.0  # seconds a client waits after a request that got no answer


@dataclass
class Tally:
    """What the clients were answered, kept up to date while they run."""

    told: list[str] = field(default_factory=list)  # prediction ids acknowledged (202)
    answers: Counter = field(default_factory=Counter)  # status -> how many
    reasons: Counter = field(default_factory=Counter)  # (status, detail) of non-202 answers
    no_answer: Counter = field(default_factory=Counter)  # exception name -> how many
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def acknowledged(self) -> int:
        """How many predictions the clients were told about so far."""
        return len(self.told)

    def backpressure(self) -> int:
        """503 answers that were back-pressure (the queue too deep)."""
        return sum(n for (status, detail), n in self.reasons.items()
                   if status == 503 and detail == BACKPRESSURE)

    def unexpected(self) -> dict[int, int]:
        """Answers other than 202 and 503, by status."""
        return {code: n for code, n in self.answers.items() if code not in (202, 503)}


BACKPRESSURE = "back-pressure"


def _detail(answer: requests.Response) -> str:
    """The problem detail of an error answer, numbers blanked so that alike ones add up."""
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:80]
    if "queue_depth" in body:
        return BACKPRESSURE
    return re.sub(r"\d+", "N", str(body.get("detail", "")))[:120]


def _client(url: str, token: str, images: list[bytes], quota: int, deadline: float,
            tally: Tally) -> None:
    """Upload `quota` images, honouring 503's Retry-After, until done or past the deadline."""
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    sent = 0
    while sent < quota and time.monotonic() < deadline:
        data = images[sent % len(images)]
        try:
            answer = session.post(f"{url}/api/v1/predictions", headers=headers,
                                  timeout=TIMEOUT,
                                  files={"image": ("load.png", data, "image/png")})
        except requests.RequestException as exc:
            with tally.lock:
                tally.no_answer[type(exc).__name__] += 1
            session = requests.Session()
            time.sleep(NO_ANSWER_PAUSE)
            continue
        with tally.lock:
            tally.answers[answer.status_code] += 1
            if answer.status_code == 202:
                tally.told.extend(item["id"] for item in answer.json()["items"])
            else:
                tally.reasons[(answer.status_code, _detail(answer))] += 1
        if answer.status_code == 503:
            time.sleep(float(answer.headers.get("Retry-After", "1")))
        else:
            sent += 1


def upload(url: str, token: str, images: list[bytes], uploads: int, clients: int,
           deadline: float, tally: Tally | None = None) -> Tally:
    """Send `uploads` images from `clients` concurrent clients; returns when all are done."""
    tally = tally or Tally()
    quotas = [uploads // clients + (i < uploads % clients) for i in range(clients)]
    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(_client, url, token, images, quota, deadline, tally)
                   for quota in quotas]
    for future in futures:
        future.result()  # a crashed client is a crashed benchmark
    return tally


@dataclass
class Outcome:
    """Where the acknowledged predictions ended up, from the database."""

    pending: set[str]  # acknowledged and not final within the bound
    states: Counter  # state -> how many of the acknowledged
    final_events: Counter  # final events per acknowledged prediction -> how many
    stored: int  # predictions in the database, of anyone
    strays: Counter  # (state, reason) -> predictions in the database no client was told of
    reasons: Counter  # reason -> how many acknowledged predictions failed with it


def settle(db: Database, told: list[str], timeout: float) -> set[str]:
    """Wait until every prediction in `told` is final, at most `timeout` seconds; returns
    those that are not."""
    pending = set(told)

    def all_final() -> bool:
        for pid in list(pending)[:500]:
            if db.get_prediction(pid).state in FINAL_STATES:
                pending.discard(pid)
        return not pending

    try:
        wait_for(all_final, max(1.0, timeout), "every acknowledged prediction to finish",
                 interval=0.5)
    except AssertionError:
        pass  # the caller reports what is pending
    return pending


def _reason(prediction) -> str:
    """A prediction's reason, numbers blanked so that alike ones add up."""
    return re.sub(r"\d+", "N", prediction.reason or "")[:120]


def outcome(db: Database, told: list[str], pending: set[str]) -> Outcome:
    """Read back from the database what became of the acknowledged predictions."""
    predictions = [db.get_prediction(pid) for pid in told]
    states = Counter(p.state for p in predictions)
    reasons = Counter(_reason(p) for p in predictions if p.state == "failed")
    finals = Counter(sum(e["state"] in FINAL_STATES for e in db.events(pid)) for pid in told)
    acknowledged = set(told)
    with db.session() as s:
        everything = s.execute(select(Prediction.id, Prediction.state,
                                      Prediction.reason)).all()
    strays = Counter((row.state, _reason(row)) for row in everything
                     if row.id not in acknowledged)
    return Outcome(pending, states, finals, len(everything), strays, reasons)


def loss_rows(tally: Tally, result: Outcome, refused: int = 0) -> list[tuple]:
    """The table rows that compare what clients were told with the database; `refused`:
    predictions recorded as failed while their client was told the upload was refused."""
    told = len(tally.told)
    unexpected = tally.unexpected()
    return [
        ("back-pressure answers (503)", f"{tally.backpressure()}", "", None),
        ("other answers", f"{sum(unexpected.values())} {unexpected or ''}", "0",
         not unexpected),
        ("acknowledged and final", f"{told - len(result.pending)}", f"{told}",
         not result.pending),
        ("final events per prediction", f"{dict(result.final_events)}", "{1: all}",
         set(result.final_events) <= {1}),
        ("states", f"{dict(result.states)}", "", None),
        ("predictions in the database", f"{result.stored}",
         f"{told}" + (f" + {refused} refused" if refused else ""),
         result.stored == told + refused),
    ]
