"""A Python client of Sieve's JSON API, and the `sieve` command (sieve_client.cli).

    from sieve_client import Client

    client = Client()  # SIEVE_URL and SIEVE_TOKEN, or ~/.config/sieve/config.toml
    [prediction] = client.predict("boot.png", wait=60)
    print(prediction.state, prediction.label)

Depends on requests only, so that programs can install it without the server's stack.
"""

from sieve_client.client import Client
from sieve_client.config import ConfigError
from sieve_client.results import Model, Prediction, SieveError, TrainingRun

__all__ = ["Client", "ConfigError", "Model", "Prediction", "SieveError", "TrainingRun"]
