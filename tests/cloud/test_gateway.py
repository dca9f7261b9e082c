"""The gateway without Ray: auth and admission over HTTP, then real WebRTC links on loopback
to a SessionHub running the conversation on fake engines."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from cloud.auth import RateLimiter, TokenError, issue_token, verify_token
from cloud.conversation.ports import MemoryContextStore
from cloud.conversation.session import ConversationSettings
from cloud.engines.reply import ReplyService
from cloud.engines.speech import SpeechService
from cloud.gateway import GatewayMetrics, GatewayPolicy, build_gateway_app
from cloud.sessions import SessionHub
from shared.link import Link, OfferRejectedError, connect
from shared.protocol import Error, Metrics, TranscriptFinal, TtsChunk, TtsEnd

SECRET = b"a-test-secret-of-enough-length"
URL = "http://gateway.test"


class Tier:
    """A gateway app over a hub with fake engines; HTTP goes in-process (ASGI)."""

    def __init__(self, fakes: Any, store: MemoryContextStore | None = None,
                 burst: int = 50) -> None:
        llm_cls, tts_cls = fakes
        self.replies = ReplyService([llm_cls(), llm_cls()])
        self.speech = SpeechService(tts_cls())
        self.store = store or MemoryContextStore()
        self.metrics = GatewayMetrics()
        self.hub = SessionHub(self.replies, self.speech, self.store, ConversationSettings(),
                              on_turn=self.metrics.on_turn)
        policy = GatewayPolicy(secret=SECRET, max_offer_bytes=16 * 1024, offer_burst=burst)
        self.app = build_gateway_app(self.hub, policy, self.metrics)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=URL)

    async def connect(self, device: str = "dev1", **kw: Any) -> Link:
        return await connect(URL, issue_token(SECRET, device, 60), http=self.http, **kw)

    async def close(self) -> None:
        await self.hub.close()
        await self.http.aclose()
        self.replies.close()
        self.speech.close()


@pytest.fixture
async def tier(fakes: Any) -> AsyncIterator[Tier]:
    t = Tier(fakes)
    yield t
    await t.close()


async def until(link: Link, pred: Any, timeout: float = 5.0) -> list[Any]:
    seen: list[Any] = []

    async def read() -> None:
        async for msg in link:
            seen.append(msg)
            if pred(msg):
                return

    await asyncio.wait_for(read(), timeout)
    return seen


async def ask(link: Link, turn_id: int, text: str) -> list[Any]:
    await link.send(TranscriptFinal(turn_id=turn_id, text=text))
    return await until(link, lambda m: isinstance(m, Metrics) and m.turn_id == turn_id)


# ---- tokens and admission -----------------------------------------------------------------


def test_tokens_carry_the_device_and_expire() -> None:
    token = issue_token(SECRET, "kiosk-7", 60, now=1000)
    assert verify_token(SECRET, token, now=1030).device_id == "kiosk-7"
    with pytest.raises(TokenError, match="expired"):
        verify_token(SECRET, token, now=1061)
    with pytest.raises(TokenError, match="signature"):
        verify_token(b"another-secret-entirely", token, now=1030)
    forged = token.replace("kiosk-7", "kiosk-8")
    with pytest.raises(TokenError):
        verify_token(SECRET, forged, now=1030)


def test_the_rate_limit_refills_over_time() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=2, clock=lambda: now[0])
    assert limiter.allow("d") and limiter.allow("d") and not limiter.allow("d")
    assert limiter.allow("other")
    now[0] = 1.0
    assert limiter.allow("d") and not limiter.allow("d")


async def test_offers_are_refused_with_the_right_status(fakes: Any) -> None:
    t = Tier(fakes, burst=3)
    try:
        good = {"Authorization": f"Bearer {issue_token(SECRET, 'd1', 60)}"}
        expired = {"Authorization": f"Bearer {issue_token(SECRET, 'd1', 1, now=0)}"}
        offer = {"type": "offer", "sdp": "v=0\r\n"}
        post = t.http.post
        assert (await post("/v1/sessions", json=offer)).status_code == 401
        assert (await post("/v1/sessions", json=offer,
                           headers={"Authorization": "Bearer nonsense"})).status_code == 401
        assert (await post("/v1/sessions", json=offer, headers=expired)).status_code == 401
        big = {"type": "offer", "sdp": "v=0\r\n" + "a=x\r\n" * 5000}
        assert (await post("/v1/sessions", json=big, headers=good)).status_code == 413
        assert (await post("/v1/sessions", content=b"{not json", headers=good)).status_code == 400
        assert (await post("/v1/sessions", json=offer, headers=good)).status_code == 400
        no_channel = {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\n"}
        assert (await post("/v1/sessions", json=no_channel, headers=good)).status_code == 400
        assert (await post("/v1/sessions", json=offer, headers=good)).status_code == 429
        other = {"Authorization": f"Bearer {issue_token(SECRET, 'd2', 60)}"}
        assert (await post("/v1/sessions", json={"type": "answer"},
                           headers=other)).status_code == 400
    finally:
        await t.close()


async def test_a_refused_token_is_a_clear_error_for_the_edge(tier: Tier) -> None:
    with pytest.raises(OfferRejectedError, match="token"):
        await connect(URL, "v1.dev.1.forged", http=tier.http)


async def test_health_and_metrics(tier: Tier) -> None:
    assert (await tier.http.get("/healthz")).json() == {"status": "ok", "sessions": 0}
    link = await tier.connect()
    await ask(link, 1, "hello there")
    text = (await tier.http.get("/metrics")).text
    assert "parley_turns_total 1.0" in text
    assert "parley_first_audio_seconds_count 1.0" in text
    assert "process_resident_memory_bytes" in text
    assert (await tier.http.get("/healthz")).json()["sessions"] == 1
    await link.close()


# ---- sessions over real WebRTC links ------------------------------------------------------


async def test_malformed_and_hostile_messages_get_errors_and_the_session_survives(
        tier: Tier) -> None:
    link = await tier.connect()
    channel = link._channel  # raw frames, as a broken or hostile edge would send them
    assert channel is not None
    for frame in (b"\x00\xffgarbage", "{not json", json.dumps({"type": "tts.chunk"}),
                  json.dumps({"type": "transcript.final", "turn_id": -1, "seq": 99})):
        channel.send(frame)
    await link.send(TtsChunk(turn_id=1, chunk_index=0, sample_rate=16000, sample_offset=0,
                             payload=b"\0\0"))
    errors = await until(link, lambda m: isinstance(m, Error) and m.code == "unexpected_message")
    errors = [m for m in errors if isinstance(m, Error)]
    assert len(errors) == 5 and not any(e.fatal for e in errors)
    msgs = await ask(link, 2, "are you still there")
    assert any(isinstance(m, TtsEnd) for m in msgs)
    await link.close()


async def test_a_session_resumes_with_its_context_after_a_reconnect(tier: Tier) -> None:
    link = await tier.connect()
    await ask(link, 1, "my name is Ada")
    session = link.session
    await link.close()
    resumed = await tier.connect(session=session)
    assert resumed.session is session
    await ask(resumed, 2, "what is my name")
    prompts = tier.replies.pool.models[0].prompts + tier.replies.pool.models[1].prompts
    assert any(m.content == "my name is Ada" for m in prompts[-1])
    await resumed.close()


async def test_a_restarted_gateway_replica_resumes_the_session_from_the_store(
        fakes: Any) -> None:
    store = MemoryContextStore()
    first = Tier(fakes, store)
    link = await first.connect()
    await ask(link, 1, "my name is Ada")
    session = link.session
    await link.close()
    await first.close()  # the replica is gone; only the store remains
    second = Tier(fakes, store)
    try:
        resumed = await second.connect(session=session)
        await ask(resumed, 2, "what is my name")
        prompts = second.replies.pool.models[0].prompts
        assert prompts[-1][-3].content == "my name is Ada"
        await resumed.close()
    finally:
        await second.close()
