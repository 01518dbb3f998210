"""What the tasks do, as plain functions: testable without a broker.

Each step first reads the prediction and does nothing when it is final or already past
this step, so a redelivered message (a worker died, Redis restarted) never produces a
second result. Every state change is a conditional update in the database, then an event
on Redis pub/sub.
"""

import logging
from dataclasses import dataclass

from sieve.database import Database
from sieve.events import Events
from sieve.models import (
    CLASSIFY_ONLY,
    CLASSIFYING,
    DONE,
    FAILED,
    FILTERING,
    FINAL_STATES,
    QUEUED,
    REJECTED,
    STATES,
)
from training.preprocess import ImageError
from workers import metrics
from workers.serving import ModelUnavailable, ServedModels

log = logging.getLogger(__name__)

UNFINISHED = tuple(s for s in STATES if s not in FINAL_STATES)


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
        change = self.db.transition(prediction_id, state, allowed_from, **fields)
        if change is None:
            return False
        self.events.publish(change)
        if state in FINAL_STATES:
            metrics.PREDICTIONS.labels(state).inc()
        log.info("prediction %s: %s", prediction_id, state,
                 extra={"prediction_id": prediction_id, "state": state})
        return True

    def fail(self, prediction_id: str, reason: str) -> bool:
        """Mark an unfinished prediction failed, with a reason a person can act on."""
        log.warning("prediction %s failed: %s", prediction_id, reason)
        return self.move(prediction_id, FAILED, UNFINISHED, reason=reason)


def _image(services: Services, item) -> bytes | None:
    """The uploaded bytes of a work item, or None after marking the prediction failed."""
    if item.data is None:
        services.fail(item.id, "the uploaded image is missing from the image store")
    return item.data


def _guarded(services: Services, prediction_id: str, step, *args) -> dict | None:
    """Run a model step; a bad image, a missing model or a timeout fails the prediction."""
    try:
        return step(*args)
    except ImageError as exc:
        services.fail(prediction_id, f"the upload is not a usable image: {exc}")
    except ModelUnavailable as exc:
        services.fail(prediction_id, str(exc))
    except TimeoutError:
        services.fail(prediction_id,
                      f"the model did not answer within {services.time_limit:g} s: "
                      "the workers are overloaded; submit the image again later")
    return None


def screen(services: Services, prediction_id: str) -> bool:
    """Filter step. True when the chain should go on to the classifier."""
    prediction = services.db.work_item(prediction_id)
    if prediction is None:
        log.error("prediction %s does not exist; dropping its task", prediction_id)
        return False
    if prediction.state == CLASSIFYING:
        return True  # screened on an earlier delivery; the classifier step is idempotent
    if prediction.state not in (QUEUED, FILTERING):
        return False  # final, or cancelled meanwhile
    if prediction.state == QUEUED and not services.move(prediction_id, FILTERING, (QUEUED,)):
        return screen(services, prediction_id)  # another delivery moved it: look again
    data = _image(services, prediction)
    if data is None:
        return False
    verdict = _guarded(services, prediction_id, services.models.screen, data,
                       services.time_limit, prediction_id)
    if verdict is None:
        return False
    fields = {"filter_score": verdict["score"], "filter_threshold": verdict["threshold"],
              "model_versions": {"filter": verdict["version"]}}
    if not verdict["accepted"]:
        services.move(prediction_id, REJECTED, (FILTERING,), **fields,
                      reason="the filter says this image is not like the images the "
                             "classifier knows")
        return False
    return services.move(prediction_id, CLASSIFYING, (FILTERING,), **fields)


def classify(services: Services, prediction_id: str) -> None:
    """Classifier step: records class, top-k probabilities and model versions."""
    prediction = services.db.work_item(prediction_id)
    if prediction is None:
        log.error("prediction %s does not exist; dropping its task", prediction_id)
        return
    if prediction.state == QUEUED and prediction.pipeline == CLASSIFY_ONLY:
        if not services.move(prediction_id, CLASSIFYING, (QUEUED,)):
            classify(services, prediction_id)  # another delivery moved it: look again
            return
    elif prediction.state != CLASSIFYING:
        return  # final, or not screened yet (a stale message): nothing to do here
    data = _image(services, prediction)
    if data is None:
        return
    answer = _guarded(services, prediction_id, services.models.classify, data,
                      services.time_limit, services.top_k, prediction_id)
    if answer is None:
        return
    versions = {**(prediction.model_versions or {}), "classifier": answer["version"]}
    services.move(prediction_id, DONE, (CLASSIFYING,), label=answer["class"],
                  probability=answer["probability"], top_k=answer["top_k"],
                  model_versions=versions)
