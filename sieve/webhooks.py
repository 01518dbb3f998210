"""Webhooks: a prediction's state changes posted to the URL its submission named, signed
as the Standard Webhooks specification says (https://www.standardwebhooks.com).

- A message carries `webhook-id` (the event's number, the same on every retry, so that
  a receiver drops duplicates), `webhook-timestamp` (seconds since the epoch, of this
  attempt) and `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of
  `{id}.{timestamp}.{body}` under the secret of the token that submitted the prediction,
  written `whsec_` and the key in base64.
- Safe by default: https only, and every address the host resolves to must be public.
  SIEVE_WEBHOOK_ALLOW_HOSTS names hosts (by name) or networks (by address or CIDR) that
  may be private or loopback and may use plain http.

The web tier checks a URL when a submission names it; the webhooks worker checks it again
before each attempt and connects to the very address it checked (workers/webhooks.py).
"""

import base64
import hashlib
import hmac
import ipaddress
import json
import random
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sieve.models import FINAL_STATES

FINAL, ALL = "final", "all"
EVENT_CHOICES = (FINAL, ALL)
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
SECRET_PREFIX = "whsec_"
MAX_URL_LENGTH = 2000
LONGEST_DELAY = 3600.0  # seconds: the backoff doubles up to this


class WebhookRefused(ValueError):
    """A URL webhooks may not be posted to; the message says why."""


class WebhookUnresolved(WebhookRefused):
    """The URL's host resolves to no address (now: at a later attempt, it may)."""


def new_secret() -> str:
    """A new signing secret in the specification's form: `whsec_` + base64 of 24 bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header of a message: `v1,<base64 HMAC-SHA256>`."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt at posting `body`."""
    return {"content-type": "application/json", "user-agent": "sieve-webhooks",
            "webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, message_id, timestamp, body)}


def wants(events: str | None, state: str) -> bool:
    """Whether a subscription to `events` (final or all) is told of a move to `state`."""
    return events == ALL or (events == FINAL and state in FINAL_STATES)


def deliveries_for(rows: list, event_ids: list[int], state: str, now: datetime) -> list[dict]:
    """The delivery records to add with the events of a state change: one per moved
    prediction (a row with its webhook columns) that has a webhook wanting this event."""
    return [{"event_id": event_id, "prediction_id": row.id, "url": row.webhook_url,
             "state": PENDING, "attempts": 0, "next_attempt_at": now, "created_at": now}
            for row, event_id in zip(rows, event_ids, strict=True)
            if row.webhook_url and wants(row.webhook_events, state)]


def payload(state: str, data: dict, timestamp: str) -> bytes:
    """The body of a message: the event type, when it happened, and the prediction."""
    return json.dumps({"type": f"prediction.{state}", "timestamp": timestamp, "data": data},
                      separators=(",", ":")).encode()


def retry_delay(attempts: int, base: float) -> float:
    """Seconds before the next attempt after `attempts` failed ones: `base`, doubling up
    to an hour, with a fifth either way of jitter (receivers that come back are not hit
    by every waiting delivery at once)."""
    return min(base * 2 ** (attempts - 1), LONGEST_DELAY) * random.uniform(0.8, 1.2)


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (an address that passed the checks) and what to ask."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        """The Host header: the name, with the port when it is not the scheme's own."""
        name = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return name if self.port == default else f"{name}:{self.port}"


class AllowList:
    """SIEVE_WEBHOOK_ALLOW_HOSTS: host names, addresses and networks (CIDR) trusted to be
    private or loopback and to be reached over plain http."""

    def __init__(self, entries: tuple[str, ...] | list[str]):
        self.names, self.networks = set(), []
        for entry in entries:
            try:
                self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self.names.add(entry.lower().rstrip("."))

    def has_name(self, host: str) -> bool:
        """Whether the host is allowed by its name."""
        return host.lower().rstrip(".") in self.names

    def has_address(self, address) -> bool:
        """Whether an address is inside an allowed network."""
        return any(address.version == net.version and address in net for net in self.networks)


def _parse(url: str) -> tuple[str, str, int, str]:
    """Scheme, host, port and request path of a URL; WebhookRefused when malformed."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL_LENGTH:
        raise WebhookRefused(f"the webhook must be a URL of 1 to {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise WebhookRefused(f"the webhook is not a valid URL: {exc}") from None
    if parts.scheme not in ("https", "http"):
        raise WebhookRefused("the webhook must be an https:// URL")
    if not parts.hostname:
        raise WebhookRefused("the webhook URL names no host")
    if parts.username is not None or parts.password is not None:
        raise WebhookRefused("the webhook URL may not carry credentials: the messages are "
                             "signed instead")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path


def _resolve(host: str, port: int) -> list:
    """Every address the host resolves to; WebhookRefused when it resolves to none."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise WebhookUnresolved(f"the webhook's host {host} cannot be resolved: {exc}"
                                ) from None
    addresses = []
    for *_, sockaddr in found:
        address = ipaddress.ip_address(sockaddr[0].split("%")[0])
        mapped = getattr(address, "ipv4_mapped", None)
        address = mapped or address
        if address not in addresses:
            addresses.append(address)
    return addresses


def _kind(address) -> str:
    """What makes an address non-public, in words."""
    for kind in ("loopback", "link_local", "private", "multicast", "unspecified"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return "non-public"


def check(url: str, allow: AllowList) -> Target:
    """The URL as a Target if webhooks may be posted to it, else WebhookRefused saying why.
    Resolves the host: every address must be public, or the host allowed by name, or the
    address inside an allowed network. Plain http only to a host allowed (by name, or
    with all its addresses)."""
    scheme, host, port, path = _parse(url)
    addresses = _resolve(host, port)
    by_name = allow.has_name(host)
    for address in addresses:
        public = address.is_global and not address.is_multicast
        if not (public or by_name or allow.has_address(address)):
            raise WebhookRefused(
                f"the webhook's host {host} resolves to {address}, a {_kind(address)} "
                "address: webhooks go to public addresses only, unless the operator allows "
                "the host in SIEVE_WEBHOOK_ALLOW_HOSTS")
    if scheme == "http" and not (by_name or all(map(allow.has_address, addresses))):
        raise WebhookRefused("the webhook must be an https:// URL (plain http only to hosts "
                             "the operator allows in SIEVE_WEBHOOK_ALLOW_HOSTS)")
    return Target(url, scheme, host, port, path, tuple(str(a) for a in addresses))
