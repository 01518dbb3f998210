"""Deploy registered versions to an endpoint: package, upload and deploy in one call.

`python -m training.sagemaker deploy` runs `deploy_registered` with the versions asked
for; automatic deployment (SIEVE_SAGEMAKER_AUTODEPLOY, see sieve/deployments.py) runs
`deploy_served` on a training worker after each change of a `production` alias: the
classifier the workers serve, with the served filter in front when there is a filter.
"""

import shutil
from collections.abc import Callable

from sieve.store import Store, open_store
from training.sagemaker import endpoints
from training.sagemaker.config import SageMakerSettings, load_sagemaker_settings
from training.sagemaker.package import build_model_archive, temporary_archive


def deploy_registered(clients: endpoints.Clients, settings: SageMakerSettings, store: Store,
                      endpoint: str, model: str = "classifier", ref: str | None = None,
                      with_filter: bool = False, filter_ref: str | None = None,
                      instance_type: str | None = None, instance_count: int = 1,
                      async_output: str | None = None, timeout: float = 1800,
                      poll: float = 15, echo: Callable[[str], None] = print) -> dict:
    """Package a version (and the filter's), upload the archive and deploy it, tagged with
    the versions inside; the endpoint's final description."""
    archive = temporary_archive("sieve-deploy-")
    try:
        info = build_model_archive(store, model, ref, archive, filter_ref, with_filter)
        label = "-".join(f"{m['name']}-{m['version']}" for m in info["models"].values())
        model_data = endpoints.upload(clients, archive, settings.require_s3_url() + "/models",
                                      label)
    finally:
        shutil.rmtree(archive.parent, ignore_errors=True)
    echo(f"uploaded {model_data}")
    tags = {f"sieve:{role}": f"{m['name']} {m['version']}"
            for role, m in info["models"].items()}
    return endpoints.deploy(clients, settings, endpoint, model_data, instance_type,
                            instance_count, async_output, tags, timeout, poll, echo)


def deploy_served(store: Store | None = None, settings: SageMakerSettings | None = None,
                  echo: Callable[[str], None] = print) -> dict:
    """Deploy what the workers serve to SAGEMAKER_ENDPOINT_NAME, with the settings'
    instance type; returns the endpoint, its configuration and the versions deployed."""
    store = store or open_store()
    settings = settings or load_sagemaker_settings()
    state = deploy_registered(endpoints.Clients.create(settings), settings, store,
                              settings.endpoint_name, "classifier", None,
                              with_filter=bool(store.versions("filter")), echo=echo)
    configuration = state["EndpointConfigName"]
    return {"endpoint": settings.endpoint_name, "status": state["EndpointStatus"],
            "configuration": configuration,
            "served": {name: store.served(name) for name in ("classifier", "filter")
                       if store.versions(name)}}
