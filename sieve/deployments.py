"""Automatic deployment to SageMaker: a change of a model's `production` version sends the
deployment task to the training queue, when SIEVE_SAGEMAKER_AUTODEPLOY is on.

The registry (sieve/registry.py) calls `request_deployment` after each promotion or
rollback of `production`, whoever made it: `python -m sieve.registry`, the API, the
models page or a training run with `promote`. A training worker (`celery -A workers worker
-Q training`) runs the task: it deploys the versions the workers serve to the endpoint
(training/sagemaker/release.py). The task is sent by name, so nothing here needs torch,
boto3 or the workers package; the promotion stands even when the broker is unreachable
(the failure is logged, and `python -m training.sagemaker deploy` does the same by hand).
"""

import logging

import kombu.exceptions
import redis
from celery import Celery

from sieve.config import get_settings
from sieve.queues import TRAINING_QUEUE

log = logging.getLogger(__name__)

DEPLOY_TASK = "sieve.train.deploy"


def request_deployment(name: str, version: str) -> str | None:
    """Send the deployment task for `name` `version`, now in production; the task's id, or
    None when automatic deployment is off or the broker did not take the message."""
    settings = get_settings()
    if not settings.sagemaker_autodeploy:
        return None
    app = Celery("sieve", broker=settings.broker_url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"])
    try:
        result = app.send_task(DEPLOY_TASK, args=(name, version), queue=TRAINING_QUEUE,
                               ignore_result=True,
                               retry_policy={"max_retries": 2, "interval_start": 0.5})
    except (redis.RedisError, kombu.exceptions.OperationalError) as exc:
        log.warning("%s %s is in production, but its SageMaker deployment was not queued "
                    "(the task queue is unreachable: %s); run `python -m training.sagemaker "
                    "deploy --filter`", name, version, exc)
        return None
    finally:
        app.close()
    log.info("%s %s is in production: SageMaker deployment queued (task %s)", name, version,
             result.id)
    return result.id
