"""Uploads small to send but large to decode, against the production web tier.

    python -m bench.heavy_uploads

On loopback only: a private redis-server, a fresh SQLite database and the web tier under
gunicorn (gevent, one worker process, SIEVE_ENV=production); no serving worker, the
predictions stay queued. Two clients at once each send one request of N PNGs of 40
megapixels (about 50 KB each); meanwhile a third client reads /healthz again and again.
Printed: the answers with their durations, and the slowest /healthz meanwhile: how long
the event loop was held up.
"""

import io
import secrets
import threading
import time

import requests
from PIL import Image

from bench.scratch import scratch
from bench.service import Gunicorn, make_api_token, service_env

SIDE = (8000, 5000)


def _png() -> bytes:
    """A 40-megapixel PNG of one grey."""
    buffer = io.BytesIO()
    Image.new("L", SIDE, 200).save(buffer, "PNG")
    return buffer.getvalue()


def _round(url: str, headers: dict, image: bytes, count: int) -> tuple[list, float]:
    """Two concurrent requests of `count` images; their answers and the slowest health
    check while they ran."""
    answers = []

    def send():
        started = time.perf_counter()
        files = [("image", (f"{i}.png", image)) for i in range(count)]
        response = requests.post(f"{url}/api/v1/predictions", headers=headers, files=files,
                                 timeout=120)
        answers.append((response.status_code, round(time.perf_counter() - started, 2)))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    slowest = 0.0
    while any(thread.is_alive() for thread in threads):
        started = time.perf_counter()
        requests.get(f"{url}/healthz", timeout=120)
        slowest = max(slowest, time.perf_counter() - started)
        time.sleep(0.05)
    for thread in threads:
        thread.join(timeout=120)
    return answers, slowest


def main() -> int:
    """Measure and print one line per round."""
    image = _png()
    with scratch() as s:
        env = service_env(s.redis.url, s.database_url, str(s.folder / "models"),
                          SIEVE_ENV="production", SECRET_KEY=secrets.token_hex(32))
        web = Gunicorn("web:create_app()", env, s.folder, ["-k", "gevent", "-w", "1"])
        try:
            web.wait("/healthz")
            headers = {"Authorization": f"Bearer {make_api_token(s.database_url, s.redis.url)}"}
            for count in (4, 16):
                answers, slowest = _round(web.url, headers, image, count)
                print(f"2 concurrent requests of {count} x 40 MP PNG ({len(image):,} bytes "
                      f"each): answers (status, s) {sorted(answers)}; slowest /healthz "
                      f"meanwhile {slowest:.2f} s", flush=True)
        finally:
            web.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
