"""Where the server is and which token to use: arguments first, then the environment
(SIEVE_URL, SIEVE_TOKEN), then a TOML file (SIEVE_CONFIG, else
$XDG_CONFIG_HOME/sieve/config.toml, else ~/.config/sieve/config.toml):

    url = "https://sieve.example.com"
    token = "sieve_..."
"""

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:5000"


class ConfigError(ValueError):
    """The configuration file cannot be read, or no token is configured."""


def config_path() -> Path:
    """The configuration file's path (it need not exist)."""
    if os.environ.get("SIEVE_CONFIG"):
        return Path(os.environ["SIEVE_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "sieve" / "config.toml"


@dataclass(frozen=True)
class Settings:
    """The server's URL and the API token."""

    url: str
    token: str


def _file() -> dict:
    """The configuration file's values; {} when there is none."""
    path = config_path()
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as file:
            values = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return {key: str(values[key]) for key in ("url", "token") if key in values}


def load(url: str | None = None, token: str | None = None) -> Settings:
    """The settings: arguments, then the environment, then the file. ConfigError when no
    token is found anywhere."""
    from_file = _file() if not (url or os.environ.get("SIEVE_URL")) or not (
        token or os.environ.get("SIEVE_TOKEN")) else {}
    url = url or os.environ.get("SIEVE_URL") or from_file.get("url") or DEFAULT_URL
    token = token or os.environ.get("SIEVE_TOKEN") or from_file.get("token")
    if not token:
        raise ConfigError(f"no API token: set SIEVE_TOKEN, pass --token, or put token = "
                          f"\"sieve_...\" in {config_path()}")
    return Settings(url.rstrip("/"), token)
