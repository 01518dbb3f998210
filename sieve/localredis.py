"""Make sure Redis answers at REDIS_URL, starting a local redis-server when none does.

    python -m sieve.localredis        # starts it in the background (stop: redis-cli shutdown)

Only a Redis on this machine (127.0.0.1 or localhost) is started, and it keeps nothing on
disk. From the command line it runs in the background and logs to var/redis.log;
`make run` (sieve/localrun.py) starts the same server as its child, and stops it.
"""

import shutil
import subprocess
import sys
import time
from urllib.parse import urlparse

import redis

from sieve.config import ROOT, get_settings


def answers(url: str) -> bool:
    """True when a Redis server answers PING at `url`."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def server_argv(url: str) -> list[str] | None:
    """The redis-server command that serves `url` in the foreground, keeping nothing on
    disk; None when `url` is not on this machine or redis-server is not installed."""
    parsed = urlparse(url)
    binary = shutil.which("redis-server")
    if parsed.hostname not in ("127.0.0.1", "localhost") or binary is None:
        return None
    var = ROOT / "var"
    var.mkdir(exist_ok=True)
    return [binary, "--port", str(parsed.port or 6379), "--bind", parsed.hostname,
            "--save", "", "--appendonly", "no", "--dir", str(var)]


def main() -> int:
    """Check, start if needed and possible, and say what happened."""
    url = get_settings().redis_url
    if answers(url):
        print(f"redis: answering at {url}")
        return 0
    argv = server_argv(url)
    if argv is None:
        print(f"redis: nothing answers at {url}; start Redis there "
              "(Debian: apt-get install redis-server), or set REDIS_URL", file=sys.stderr)
        return 1
    var = ROOT / "var"
    subprocess.run([*argv, "--daemonize", "yes", "--logfile", str(var / "redis.log"),
                    "--pidfile", str(var / "redis.pid")], check=True, timeout=30)
    for _ in range(50):
        if answers(url):
            print(f"redis: started redis-server at {url} (log: var/redis.log)")
            return 0
        time.sleep(0.1)
    print(f"redis: started redis-server but it does not answer at {url}; see var/redis.log",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
