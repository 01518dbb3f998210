"""Receive Sieve's webhooks and verify their signatures (Standard Webhooks), with the
standard library only.

    SIEVE_WEBHOOK_SECRET=whsec_... python webhook_receiver.py 8080

Answers 204 to a message whose signature verifies and whose timestamp is within five
minutes, 400 to any other; prints each verified event once (a retry of a message already
seen, same `webhook-id`, is answered 204 and not printed again).
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

TOLERANCE = 300  # seconds between the message's timestamp and now


def verify(secret: str, headers, body: bytes, now: float | None = None) -> dict:
    """The message's JSON if its signature verifies; ValueError otherwise."""
    message_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs((now or time.time()) - int(timestamp)) > TOLERANCE:
        raise ValueError("the timestamp is too old or too new")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for signature in headers["webhook-signature"].split():  # "v1,<base64> v1,<base64>"
        version, _, value = signature.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return json.loads(body)
    raise ValueError("no signature matches")


class Receiver(BaseHTTPRequestHandler):
    """POST handler: verify, then handle each webhook-id once."""

    seen: set[str] = set()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            message = verify(os.environ["SIEVE_WEBHOOK_SECRET"], self.headers, body)
        except (KeyError, ValueError) as exc:
            self.send_error(400, str(exc))
            return
        if self.headers["webhook-id"] not in self.seen:
            self.seen.add(self.headers["webhook-id"])
            data = message["data"]
            print(message["type"], data["id"], data["state"], data.get("label"), flush=True)
        self.send_response(204)
        self.end_headers()


if __name__ == "__main__":
    HTTPServer(("0.0.0.0", int(sys.argv[1]) if len(sys.argv) > 1 else 8080),
               Receiver).serve_forever()
