"""`Client`: Sieve's JSON API from Python, over requests.

Every request has a timeout. Answers 429 and 503 are tried again after the server's
Retry-After (seconds or an HTTP date; at most `max_retry_wait` seconds each, `retries`
times), as are connection failures of requests that are safe to repeat. A submission
carries an Idempotency-Key, the same on each of its retries, so that a retry whose first
try did reach the server is answered with the first answer instead of a second prediction.
"""

import email.utils
import json
import mimetypes
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import requests

from sieve_client import config
from sieve_client.results import Model, Prediction, SieveError, TrainingRun

RETRY_STATUSES = frozenset({429, 503})
LONGEST_POLL = 30.0  # seconds: the server's default SIEVE_MAX_WAIT_SECONDS


def retry_after(response: requests.Response, default: float) -> float:
    """Seconds the server asks to wait (Retry-After as seconds or a date), else `default`."""
    raw = response.headers.get("Retry-After")
    if not raw:
        return default
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return default
    return max(0.0, moment.timestamp() - time.time())


def _image(image) -> tuple[str, bytes]:
    """(file name, bytes) of an image given as a path, bytes or (name, bytes)."""
    if isinstance(image, bytes):
        return "image", image
    if isinstance(image, tuple):
        return image[0], image[1]
    path = Path(image)
    return path.name, path.read_bytes()


class Client:
    """Submit images, follow predictions, run training and manage models."""

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 timeout: float = 30.0, retries: int = 4, max_retry_wait: float = 60.0,
                 session: requests.Session | None = None):
        settings = config.load(url, token)
        self.url, self.timeout = settings.url, timeout
        self.retries, self.max_retry_wait = retries, max_retry_wait
        self.session = session or requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {settings.token}",
                                     "User-Agent": "sieve-client"})

    # The one way requests are sent

    def request(self, method: str, path: str, *, safe: bool | None = None,
                timeout: float | None = None, **kwargs) -> requests.Response:
        """Send a request, retried as the module says; SieveError for an error answer.
        `safe`: whether a request that may have reached the server can be sent again
        (default: GET, or a request with an Idempotency-Key)."""
        headers = kwargs.pop("headers", {}) or {}
        if safe is None:
            safe = method == "GET" or "Idempotency-Key" in headers
        delay = 0.5
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self.session.request(method, self.url + path, headers=headers,
                                                timeout=timeout or self.timeout, **kwargs)
            except (requests.ConnectionError, requests.Timeout):
                if last or not safe:
                    raise
                time.sleep(delay)
                delay *= 2
                continue
            if response.status_code in RETRY_STATUSES and not last and (
                    safe or response.status_code == 429):
                time.sleep(min(retry_after(response, delay), self.max_retry_wait))
                delay *= 2
                continue
            if response.status_code == 409 and "Idempotency-Key" in headers and not last \
                    and "Retry-After" in response.headers:  # the first try still running
                time.sleep(min(retry_after(response, delay), self.max_retry_wait))
                continue
            return _checked(response)
        raise AssertionError("unreachable")  # the loop returns or raises on its last turn

    def _json(self, method: str, path: str, **kwargs) -> dict:
        """The JSON body of a request's answer."""
        return self.request(method, path, **kwargs).json()

    # Predictions

    def predict(self, images, *, classifier_only: bool = False, wait: float | None = None,
                webhook: str | None = None, webhook_events: str | None = None
                ) -> list[Prediction]:
        """Submit images (paths, bytes or (name, bytes)) in one request: their predictions,
        in order. With `wait` (seconds, any length), returned once all are final or when
        the time is up."""
        files = [("image", (name, data, mimetypes.guess_type(name)[0] or
                            "application/octet-stream"))
                 for name, data in map(_image, [images] if isinstance(
                     images, (str, Path, bytes, tuple)) else images)]
        form = {"pipeline": "classifier" if classifier_only else "filter"}
        if webhook:
            form["webhook"] = webhook
            form["webhook_events"] = webhook_events or "final"
        params = {"wait": min(wait, LONGEST_POLL)} if wait else None
        body = self._json("POST", "/api/v1/predictions", files=files, data=form,
                          params=params, headers={"Idempotency-Key": str(uuid.uuid4())},
                          timeout=self.timeout + (params or {}).get("wait", 0))
        found = [Prediction.from_json(item) for item in body["items"]]
        if wait and not all(p.final for p in found):
            return self.wait([p.id for p in found], wait)
        return found

    def prediction(self, prediction_id: str, wait: float | None = None) -> Prediction:
        """One prediction; with `wait`, once it is final or when the seconds are up."""
        if wait:
            return self.wait([prediction_id], wait)[0]
        return Prediction.from_json(self._json("GET", f"/api/v1/predictions/{prediction_id}"))

    def wait(self, prediction_ids: list[str], timeout: float = 300.0) -> list[Prediction]:
        """The predictions once all are final, or as they are after `timeout` seconds
        (long polls of at most 30 s each)."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, min(deadline - time.monotonic(), LONGEST_POLL))
            params = [("id", pid) for pid in prediction_ids] + [("wait", round(left, 3))]
            body = self._json("GET", "/api/v1/predictions", params=params,
                              timeout=self.timeout + left)
            found = [Prediction.from_json(item) for item in body["items"]]
            if all(p.final for p in found) or time.monotonic() >= deadline:
                return found

    def events(self, prediction_id: str) -> Iterator[Prediction]:
        """The prediction's states as they happen (Server-Sent Events), from its first,
        until its final one. A dropped stream is resumed after the last event received."""
        last = 0
        while True:
            response = self.request("GET", f"/api/v1/predictions/{prediction_id}/events",
                                    headers={"Last-Event-ID": str(last)}, stream=True,
                                    timeout=(self.timeout, 120))
            try:
                for event_id, data in _server_sent(response):
                    last = event_id
                    prediction = Prediction.from_json(data, event_id)
                    yield prediction
                    if prediction.final:
                        return
            except (requests.ConnectionError, requests.Timeout):
                pass  # resumed from `last` below
            finally:
                response.close()

    def cancel(self, prediction_id: str) -> Prediction:
        """Cancel a prediction that has not finished (SieveError 409 when it has)."""
        return Prediction.from_json(self._json(
            "POST", f"/api/v1/predictions/{prediction_id}/cancel", safe=True))

    def webhook(self, prediction_id: str) -> dict:
        """The prediction's webhook and its deliveries, with each attempt."""
        return self._json("GET", f"/api/v1/predictions/{prediction_id}/webhook")

    # Training runs (a token with the `train` scope, of an administrator)

    def submit_run(self, **params) -> TrainingRun:
        """Submit a training run (model, epochs, optimizer, lr, ...; see the API)."""
        return TrainingRun.from_json(self._json("POST", "/api/v1/training-runs", json=params))

    def run(self, run_id: str) -> TrainingRun:
        """One training run."""
        return TrainingRun.from_json(self._json("GET", f"/api/v1/training-runs/{run_id}"))

    def cancel_run(self, run_id: str) -> TrainingRun:
        """Cancel a training run (a running one stops within a step)."""
        return TrainingRun.from_json(self._json(
            "POST", f"/api/v1/training-runs/{run_id}/cancel", safe=True))

    # Models

    def models(self) -> list[Model]:
        """Every published model, with its versions, aliases and the served version."""
        return [Model.from_json(item) for item in self._json("GET", "/api/v1/models")["items"]]

    def promote(self, name: str, version: str, alias: str = "production",
                note: str | None = None) -> dict:
        """Point an alias (production by default) at a published version."""
        body = {"version": version, "alias": alias, **({"note": note} if note else {})}
        return self._json("POST", f"/api/v1/models/{name}/promote", json=body, safe=True)


def _checked(response: requests.Response) -> requests.Response:
    """The response if it is a success, else SieveError from its problem details."""
    if response.ok:
        return response
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    raise SieveError(response.status_code, body.get("title") or response.reason or "Error",
                     body.get("detail") or response.text[:200], body)


def _server_sent(response: requests.Response) -> Iterator[tuple[int, dict]]:
    """(event id, data) of each message of an event stream."""
    event_id, data = 0, []
    response.encoding = "utf-8"  # the event stream's encoding, whatever the header says
    for line in response.iter_lines(decode_unicode=True):
        if line is None:
            continue
        if not line:
            if data:
                yield event_id, json.loads("\n".join(data))
            data = []
        elif line.startswith("id:"):
            event_id = int(line[3:].strip())
        elif line.startswith("data:"):
            data.append(line[5:].strip())
