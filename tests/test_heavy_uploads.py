"""Uploads that are small to send but large to decode: the web tier reads headers only
and caps the pixels of a request (under the production command); the workers decode at
a reduced scale and give the memory back after a large batch."""

import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import requests
from PIL import Image

from sieve.config import ROOT
from sieve.images import MAX_PIXELS, DamagedImage, inspect_image, load_image
from tests.fixtures_web import PASSWORD
from web.uploads import check
from web.users import create_user

SIDE = (8000, 5000)  # 40 megapixels, the most one image may have


def huge_png(mode: str = "L") -> bytes:
    """A 40-megapixel PNG of one colour: about 40 KB to send, 40 MB or more to decode."""
    buffer = io.BytesIO()
    Image.new(mode, SIDE, 200).save(buffer, "PNG")
    return buffer.getvalue()


def png_with_garbage_pixels() -> bytes:
    """A PNG whose header and checksums are right but whose pixel data is not zlib."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(buffer, "PNG")
    data = buffer.getvalue()
    start = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[start:start + 4])[0]
    garbage = bytes(range(256))[:length] * (length // 256 + 1)
    garbage = garbage[:length]
    chunk = (struct.pack(">I", length) + b"IDAT" + garbage
             + struct.pack(">I", zlib.crc32(b"IDAT" + garbage)))
    return data[:start] + chunk + data[start + 12 + length:]


def test_the_web_tier_reads_the_header_only():
    """The upload check never decodes pixels (the workers do): damage that only decoding
    shows passes it, and fails in the workers' decoder with a reason."""
    data = png_with_garbage_pixels()
    upload = check("odd.png", data)
    assert upload.content_type == "image/png" and upload.pixels == 64 * 64
    with pytest.raises(DamagedImage, match="damaged"):
        load_image(data)


def test_the_header_check_is_cheap_for_the_largest_image():
    info = inspect_image(huge_png())
    assert (info.width, info.height, info.frames) == (*SIDE, 1)
    assert info.pixels == MAX_PIXELS


@pytest.mark.parametrize("kind", ["PNG", "JPEG"])
def test_the_workers_decode_large_images_reduced(kind):
    buffer = io.BytesIO()
    Image.new("RGB", (6000, 4000), (10, 200, 30)).save(buffer, kind)
    image = load_image(buffer.getvalue(), fit=112)
    assert 112 <= min(image.size) < 2 * 112 and image.size[0] > image.size[1]
    assert image.getpixel((5, 5))[1] > 150  # the picture, not an empty canvas
    small = load_image(buffer.getvalue(), fit=5000)
    assert small.size == (6000, 4000)  # never reduced below what was asked


def test_production_refuses_more_pixels_than_a_request_may_hold(production, tmp_path,
                                                               sqlite_url):
    """Sixteen 40-megapixel PNGs (each within every bound) in one API request: 413, and
    nothing stored. A few of them are accepted, without decoding in the web tier."""
    server = production(SIEVE_MAX_PIXELS_PER_REQUEST=str(200_000_000),
                        SIEVE_RATE_LIMIT="1000/minute")
    token = _token(server, sqlite_url)
    image = huge_png()
    headers = {"Authorization": f"Bearer {token}"}
    answer = requests.post(f"{server.url}/api/v1/predictions", headers=headers, timeout=60,
                           files=[("image", (f"{i}.png", image)) for i in range(16)])
    assert answer.status_code == 413, answer.text
    assert "pixels in all" in answer.json()["detail"]
    listed = requests.get(f"{server.url}/api/v1/predictions", headers=headers, timeout=10)
    assert listed.json()["items"] == []
    accepted = requests.post(f"{server.url}/api/v1/predictions", headers=headers, timeout=60,
                             files=[("image", (f"{i}.png", image)) for i in range(4)])
    assert accepted.status_code == 202, accepted.text


def _token(server, database_url: str) -> str:
    """A user's API token, made through the app's own functions on the server's database."""
    from web import create_app
    from web.api.tokens import create_token

    app = create_app({"TESTING": True, "DATABASE_URL": database_url,
                      "REDIS_URL": server.env["REDIS_URL"],
                      "SECRET_KEY": server.env["SECRET_KEY"]})
    with app.app_context():
        user = create_user("big@example.com", PASSWORD)
        token, _ = create_token(user.id, "big", ["predict"])
    app.extensions["sieve"].listener.close()
    return token


WORKER_DECODING = """
import io, threading
from PIL import Image
from training.models import architecture, build_model
from training.predict import Predictor
from training.preprocess import Preprocessing

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 // 2**20

buffer = io.BytesIO()
Image.new("RGB", (8000, 5000), (200, 30, 30)).save(buffer, "PNG")
data = buffer.getvalue()
predictor = Predictor("classifier", "v0", build_model(architecture(1, 10)),
                      {"classes": [str(i) for i in range(10)]}, Preprocessing())
small = io.BytesIO()
Image.new("L", (28, 28)).save(small, "PNG")
predictor.canonical([small.getvalue()])  # torch's own start-up memory is not counted
before = rss()
threads = [threading.Thread(target=predictor.canonical, args=([data] * 4,)) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(rss() - before)
"""


def test_the_workers_give_back_the_memory_of_a_large_batch():
    """Four batch threads decode four 40-megapixel images each, as a serving worker
    would: afterwards the process holds little more memory than before."""
    run = subprocess.run([sys.executable, "-c", WORKER_DECODING], cwd=ROOT, timeout=300,
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    grown = int(run.stdout.split()[-1])
    assert grown < 150, f"the worker kept {grown} MB after the batch"
