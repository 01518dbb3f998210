"""What the tasks do, as plain functions: testable without a broker.

Each step first reads the prediction and does nothing when it is final or already past
this step, so a redelivered message (a worker died, Redis restarted) never produces a
second result. Every state change is a conditional update in the database, then an event
on Redis pub/sub.
"""

import logging
from dataclasses import dataclass
from types import SimpleNamespace

from sieve.database import Database
from sieve.models import (
    CLASSIFY_ONLY,
    CLASSIFYING,
    DONE,
    FAILED,
    FILTERING,
    FINAL_STATES,
    QUEUED,
    REJECTED,
    UNFINISHED,
)
from sieve.pubsub import Events
from training.preprocess import ImageError
from workers import metrics
from workers.serving import ModelUnavailable, ServedModels

log = logging.getLogger(__name__)

REJECTED_REASON = "the filter says this image is not like the images the classifier knows"


@dataclass
class Services:
    """What a worker process talks to: the database, Redis pub/sub and its models."""

    db: Database
    events: Events
    models: ServedModels
    time_limit: float = 60.0
    top_k: int = 3

    def move(self, prediction_id: str, state: str, allowed_from, **fields) -> bool:
        """Change state if allowed; publish the change. False when another change won."""
        return bool(self.move_many({prediction_id: fields}, state, allowed_from))

    def move_many(self, changes: dict[str, dict], state: str, allowed_from) -> dict[str, dict]:
        """`move` for several predictions ({id: fields}) in one transaction and one
        publish; the events of those that this call moved, by id."""
        if not changes:
            return {}
        made = [event for event in self.db.transitions(changes, state, allowed_from)
                if event is not None]
        self.events.publish_many(made)
        for event in made:
            if state in FINAL_STATES:
                metrics.PREDICTIONS.labels(state).inc()
            log.info("prediction %s: %s", event["id"], state,
                     extra={"prediction_id": event["id"], "state": state})
        return {event["id"]: event for event in made}

    def fail(self, prediction_id: str, reason: str) -> bool:
        """Mark an unfinished prediction failed, with a reason a person can act on."""
        return bool(self.fail_many({prediction_id: reason}))

    def fail_many(self, reasons: dict[str, str]) -> dict[str, dict]:
        """`fail` for several predictions ({id: reason}) in one transaction."""
        for prediction_id, reason in reasons.items():
            log.warning("prediction %s failed: %s", prediction_id, reason)
        return self.move_many({pid: {"reason": reason} for pid, reason in reasons.items()},
                              FAILED, UNFINISHED)


def _image(services: Services, item) -> bytes | None:
    """The uploaded bytes of a work item, or None after marking the prediction failed."""
    if item.data is None:
        services.fail(item.id, "the uploaded image is missing from the image store")
    return item.data


def _verdict_fields(verdict: dict) -> dict:
    """What the filter's verdict records on the prediction."""
    return {"filter_score": verdict["score"], "filter_threshold": verdict["threshold"],
            "model_versions": {"filter": verdict["version"]}}


def _answer_fields(prediction, answer: dict) -> dict:
    """What the classifier's answer records on the prediction."""
    return {"label": answer["class"], "probability": answer["probability"],
            "top_k": answer["top_k"],
            "model_versions": {**(prediction.model_versions or {}),
                               "classifier": answer["version"]}}


def _reason(services: Services, exc: Exception) -> str:
    """Why a prediction failed, for a bad image, a missing model or a timeout."""
    if isinstance(exc, ImageError):
        return f"the upload is not a usable image: {exc}"
    if isinstance(exc, TimeoutError):
        return (f"the model did not answer within {services.time_limit:g} s: the workers "
                "are overloaded; submit the image again later")
    return str(exc)


EXPECTED = (ImageError, ModelUnavailable, TimeoutError)


def filter_image(services: Services, prediction_id: str) -> bool:
    """Filter step of one prediction. True when the chain should go on to the classifier."""
    return prediction_id in filter_many(services, [prediction_id])


def classify(services: Services, prediction_id: str) -> None:
    """Classifier step of one prediction: records class, top-k probabilities, versions."""
    classify_many(services, [prediction_id])


# The steps run for many predictions at once (a submission's images, or the images that
# wait in a worker at the same moment): one query, one forward pass per model and one
# transaction per state change for all of them.

def _run_many(services: Services, items: list, step, *args) -> list[tuple]:
    """(item, result) for the items whose image is there and usable; the others, and all
    of them when the model is missing or busy past the time limit, are failed."""
    usable = [item for item in items if _image(services, item) is not None]
    if not usable:
        return []
    try:
        results = step([item.data for item in usable], services.time_limit, *args,
                       [item.id for item in usable])
    except EXPECTED as exc:
        services.fail_many({item.id: _reason(services, exc) for item in usable})
        return []
    services.fail_many({item.id: _reason(services, result)
                        for item, result in zip(usable, results, strict=True)
                        if isinstance(result, ImageError)})
    return [(item, result) for item, result in zip(usable, results, strict=True)
            if not isinstance(result, ImageError)]


def filter_many(services: Services, prediction_ids: list[str],
                then_classify: bool = False) -> list[str]:
    """Filter step for several images: the ids that go on to the classifier.

    A prediction another delivery is moving (not `queued` for this one) is left to it;
    one already filtered goes on; final or cancelled ones are skipped. With
    `then_classify`, those that go on run the classifier step at once, in this call,
    from the records the filter step has just written (no second read)."""
    items = services.db.work_items(prediction_ids)
    ahead = [item for item in items if item.state == CLASSIFYING]
    moved = services.move_many({item.id: {} for item in items if item.state == QUEUED},
                               FILTERING, (QUEUED,))
    todo = [item for item in items if item.state == FILTERING or item.id in moved]
    verdicts = _run_many(services, todo, services.models.filter_many)
    services.move_many({item.id: {**_verdict_fields(v), "reason": REJECTED_REASON}
                        for item, v in verdicts if not v["accepted"]},
                       REJECTED, (FILTERING,))
    accepted = services.move_many({item.id: _verdict_fields(v)
                                   for item, v in verdicts if v["accepted"]},
                                  CLASSIFYING, (FILTERING,))
    going_on = ahead + [SimpleNamespace(**accepted[item.id], data=item.data)
                        for item in todo if item.id in accepted]
    if then_classify:
        _classify_items(services, going_on)
    return [item.id for item in going_on]


def classify_many(services: Services, prediction_ids: list[str]) -> None:
    """Classifier step for several images (filtered, or classifier-only)."""
    items = services.db.work_items(prediction_ids)
    moved = services.move_many({item.id: {} for item in items if item.state == QUEUED
                                and item.pipeline == CLASSIFY_ONLY}, CLASSIFYING, (QUEUED,))
    _classify_items(services, [item for item in items
                               if item.state == CLASSIFYING or item.id in moved])


def _classify_items(services: Services, items: list) -> None:
    """The classifier's answers recorded on items (records with their image `data`) that
    are `classifying`. The move to `done` is conditional, as every change: one cancelled
    meanwhile stays cancelled."""
    answers = _run_many(services, items, services.models.classify_many, services.top_k)
    services.move_many({item.id: _answer_fields(item, answer) for item, answer in answers},
                       DONE, (CLASSIFYING,))
