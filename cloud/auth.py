"""Per-device bearer tokens (HMAC-SHA256, with expiry) and a per-device rate limit.

A token is ``v1.<device>.<expires_unix>.<signature>`` where the signature is the URL-safe
base64 HMAC-SHA256 of ``v1.<device>.<expires_unix>`` under the tier's secret. ``parley cloud
token --device ID`` issues one; the gateway checks it on every offer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.errors import ConfigError, ParleyError

VERSION = "v1"
DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_TOKEN_CHARS = 256


class TokenError(ParleyError):
    """A bearer token is missing, malformed, forged or expired (HTTP 401)."""


@dataclass(frozen=True, slots=True)
class DeviceGrant:
    """Who a valid token was issued to, and until when."""

    device_id: str
    expires_at: int


def issue_token(secret: bytes, device_id: str, ttl_s: int, now: float | None = None) -> str:
    """A token for ``device_id`` valid for ``ttl_s`` seconds."""
    if not DEVICE_ID.match(device_id):
        raise ConfigError("a device id is 1-64 letters, digits, '-' or '_'")
    if ttl_s <= 0:
        raise ConfigError("a token's time to live must be positive")
    expires = int((time.time() if now is None else now) + ttl_s)
    body = f"{VERSION}.{device_id}.{expires}"
    return f"{body}.{_sign(secret, body)}"


def verify_token(secret: bytes, token: str, now: float | None = None) -> DeviceGrant:
    """The grant of a valid token; ``TokenError`` (one line) otherwise."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise TokenError("missing or oversized bearer token")
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != VERSION:
        raise TokenError("malformed bearer token")
    _, device, expires, signature = parts
    body = f"{VERSION}.{device}.{expires}"
    if not hmac.compare_digest(_sign(secret, body), signature):
        raise TokenError("bad token signature")
    if not DEVICE_ID.match(device) or not expires.isdigit():
        raise TokenError("malformed bearer token")
    if int(expires) <= (time.time() if now is None else now):
        raise TokenError("the token has expired")
    return DeviceGrant(device_id=device, expires_at=int(expires))


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header ('' when absent)."""
    if not header:
        return ""
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _sign(secret: bytes, body: str) -> str:
    digest = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class RateLimiter:
    """A token bucket per key: ``burst`` at once, refilled at ``per_minute``."""

    def __init__(self, per_minute: float, burst: int,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> bool:
        """Take one token from ``key``'s bucket; False when it is empty."""
        now = self._clock()
        tokens, last = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self._max_keys:  # bounded memory: drop the stalest
            del self._buckets[min(self._buckets, key=lambda k: self._buckets[k][1])]
        return allowed
