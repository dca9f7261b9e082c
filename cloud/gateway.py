"""The HTTP face of the cloud tier (FastAPI): offers in, answers out, health and metrics.

``POST /v1/sessions`` — body ``{"type": "offer", "sdp": ..., "session_id": ...}`` with
``Authorization: Bearer <token>``; answers ``{"type": "answer", "sdp": ...}``. Errors: 413 for a
body over ``max_offer_bytes``, 401 for a missing, bad or expired token, 429 over the device's
rate limit, 400 for a malformed offer, 503 when the replica is full.
``GET /healthz`` and ``GET /metrics`` (Prometheus text) need no token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from cloud.auth import RateLimiter, TokenError, bearer, verify_token
from cloud.conversation.turn import TurnRecord
from cloud.sessions import SessionHub, SessionsFullError
from shared.link import OFFER_PATH, OfferRejectedError, answer_body, parse_offer
from shared.protocol import ProtocolError


class GatewayMetrics:
    """The Prometheus series of one gateway replica (its own registry)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes...
        self.sessions = Gauge("parley_sessions", "Sessions with an open link",
                              registry=self.registry)
        self.offers = Counter("parley_offers", "SDP offers by outcome", ["outcome"],
                              registry=self.registry)
        self.turns = Counter("parley_turns", "Turns answered", registry=self.registry)
        self.errors = Counter("parley_errors", "Errors by kind", ["kind"],
                              registry=self.registry)
        self.first_audio = Histogram(
            "parley_first_audio_seconds", "Transcript final to first audio chunk sent",
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0),
            registry=self.registry)

    def on_turn(self, record: TurnRecord) -> None:
        self.turns.inc()
        if record.first_audio_ms is not None:
            self.first_audio.observe(record.first_audio_ms / 1000.0)

    def on_error(self, kind: str) -> None:
        self.errors.labels(kind=kind).inc()


@dataclass(frozen=True, slots=True)
class GatewayPolicy:
    """Admission rules of ``POST /v1/sessions``."""

    secret: bytes
    max_offer_bytes: int = 32 * 1024
    offers_per_minute: float = 30.0
    offer_burst: int = 10


def build_gateway_app(hub: SessionHub, policy: GatewayPolicy,
                      metrics: GatewayMetrics) -> FastAPI:
    """The FastAPI app over a replica's ``SessionHub``."""
    app = FastAPI(title="Parley cloud gateway", docs_url=None, redoc_url=None)
    limiter = RateLimiter(policy.offers_per_minute, policy.offer_burst)

    def refuse(status: int, outcome: str, detail: str) -> JSONResponse:
        metrics.offers.labels(outcome=outcome).inc()
        return JSONResponse({"error": outcome, "detail": detail}, status_code=status)

    @app.post(OFFER_PATH)
    async def create_session(request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > policy.max_offer_bytes:
            return refuse(413, "too_large", f"offers are at most {policy.max_offer_bytes} bytes")
        try:
            grant = verify_token(policy.secret, bearer(request.headers.get("authorization")))
        except TokenError as exc:
            return refuse(401, "unauthorized", str(exc))
        if not limiter.allow(grant.device_id):
            return refuse(429, "rate_limited", "too many sessions opened by this device")
        body = await _read_limited(request, policy.max_offer_bytes)
        if body is None:
            return refuse(413, "too_large", f"offers are at most {policy.max_offer_bytes} bytes")
        try:
            offer = parse_offer(json.loads(body))
            answer = await hub.open(offer.sdp, offer.session_id)
        except (ValueError, ProtocolError, OfferRejectedError) as exc:
            return refuse(400, "bad_offer", str(exc)[:200])
        except SessionsFullError as exc:
            return refuse(503, "full", str(exc))
        metrics.offers.labels(outcome="accepted").inc()
        return JSONResponse(answer_body(answer))

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        return {"status": "ok", "sessions": hub.connected}

    @app.get("/metrics")
    async def prometheus() -> Response:
        metrics.sessions.set(hub.connected)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it exceeds ``limit`` bytes."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)
