"""`python -m moto.server` with SageMaker's UpdateEndpoint, which moto 5.2 lacks.

Run as `python -m tests.moto_sagemaker -H host -p port`. The added operation behaves as
SageMaker does: the endpoint serves the new configuration, unless the new model's image
name contains `fails-update`, which plays a failed deployment: the endpoint is `Failed`
with a reason (and then, as on SageMaker, can only be deleted). Everything else is moto.
"""

import sys

from moto.core.responses import ActionResult
from moto.sagemaker.responses import SageMakerResponse
from moto.server import main


def update_endpoint(self: SageMakerResponse) -> ActionResult:
    """UpdateEndpoint: switch the endpoint to another configuration (or fail to)."""
    backend = self.sagemaker_backend
    name = self._get_param("EndpointName")
    config = backend.describe_endpoint_config(self._get_param("EndpointConfigName"))
    backend.describe_endpoint(name)  # ValidationError when there is no such endpoint
    endpoint = backend.endpoints[name]
    model = backend.describe_model(config["ProductionVariants"][0]["ModelName"])
    if "fails-update" in model.response_object["PrimaryContainer"]["Image"]:
        endpoint.endpoint_status = "Failed"
        endpoint.failure_reason = "the primary container did not pass the ping health check"
    else:
        endpoint.endpoint_config_name = config["EndpointConfigName"]
        endpoint.production_variants = endpoint._process_production_variants(
            config["ProductionVariants"])
        endpoint.endpoint_status, endpoint.failure_reason = "InService", None
    return ActionResult({"EndpointArn": endpoint.arn})


SageMakerResponse.update_endpoint = update_endpoint

if __name__ == "__main__":
    main(sys.argv[1:])
