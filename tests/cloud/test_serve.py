"""The Ray Serve application with the real models (one Ray + Serve for the whole module)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from cloud.auth import issue_token
from cloud.config import CloudSettings, load_settings
from cloud.conversation.ports import Clause, ReplyDone, ReplyRequest, SpeechRequest
from cloud.engines.llm import ChatMessage
from shared.audio import pcm16_to_float, rms_db
from shared.link import Link, connect
from shared.protocol import BargeIn, Metrics, ResponseText, TranscriptFinal, TtsChunk, TtsEnd

pytestmark = [pytest.mark.slow, pytest.mark.ray]

SECRET = "serve-test-secret-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def tier(cloud_models: None) -> Iterator[tuple[str, CloudSettings]]:
    """Local Ray + Serve with the app (about 20 s to start), shared by this module."""
    from cloud import deployments
    from cloud.cli import start_embedded

    settings = load_settings(port=free_port(), token_secret=SECRET, llm_instances=2,
                             llm_spares=1, ray_num_cpus=2)
    start_embedded(settings)
    try:
        yield f"http://127.0.0.1:{settings.port}", settings
    finally:
        deployments.stop()


async def open_link(url: str, device: str = "test-edge", **kw: Any) -> Link:
    return await connect(url, issue_token(SECRET.encode(), device, 300), **kw)


async def collect_turn(link: Link, turn_id: int, text: str,
                       arrivals: list[float] | None = None) -> list[Any]:
    await link.send(TranscriptFinal(turn_id=turn_id, text=text))
    seen: list[Any] = []

    async def read() -> None:
        async for msg in link:
            seen.append(msg)
            if arrivals is not None:
                arrivals.append(time.monotonic())
            if isinstance(msg, Metrics) and msg.turn_id == turn_id:
                return

    await asyncio.wait_for(read(), 60)
    return seen


async def test_a_spoken_reply_streams_back_over_webrtc(tier: tuple[str, CloudSettings]) -> None:
    url, _ = tier
    link = await open_link(url)
    try:
        msgs = await collect_turn(link, 1, "What time does the library open?")
    finally:
        await link.close()
    text = "".join(m.delta for m in msgs if isinstance(m, ResponseText)).strip()
    chunks = [m for m in msgs if isinstance(m, TtsChunk)]
    end = next(m for m in msgs if isinstance(m, TtsEnd))
    assert len(text.split()) >= 3
    audio = pcm16_to_float(b"".join(c.payload for c in chunks))
    assert chunks[0].sample_rate == 16000 and audio.size == end.total_samples
    assert 0.5 < audio.size / 16000 < 30 and rms_db(audio) > -35
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(url + "/metrics")).text
    assert "parley_first_audio_seconds_count" in metrics


async def test_the_llm_deployment_streams_clauses_and_stops_when_cancelled(
        tier: tuple[str, CloudSettings]) -> None:
    from ray import serve

    from cloud.deployments import HandleReplySource

    llm = HandleReplySource(serve.get_deployment_handle("LanguageModelDeployment", "parley"))
    messages = (ChatMessage("system", "You are helpful."),
                ChatMessage("user", "Tell me a long story about a brave little fox."))
    request = ReplyRequest("deploy-test", 1, messages, max_tokens=120)
    stream = llm.reply(request)
    first = await anext(stream)
    assert isinstance(first, Clause) and first.index == 0 and first.text
    await stream.aclose()  # cancels the generation in the replica
    short = ReplyRequest("deploy-test", 2, (messages[0], ChatMessage("user", "Say hi.")),
                         max_tokens=12)
    events = [e async for e in llm.reply(short)]
    assert isinstance(events[-1], ReplyDone) and events[-1].generated_tokens <= 12


async def test_the_speech_deployment_speaks_at_the_rate_asked(
        tier: tuple[str, CloudSettings]) -> None:
    from ray import serve

    from cloud.deployments import HandleSpeechSource

    tts = HandleSpeechSource(serve.get_deployment_handle("SpeechDeployment", "parley"))
    audio = {rate: await tts.speak(SpeechRequest("s", 1, "Good morning to you.",
                                                 sample_rate=rate, first=True))
             for rate in (16000, 24000)}
    seconds = [audio[r].samples / r for r in (16000, 24000)]
    # The same words last as long at either rate (piper's timing varies a little per run).
    assert 0.6 < seconds[0] < 3 and abs(seconds[0] - seconds[1]) < 0.25 * seconds[0]
    samples = np.frombuffer(audio[16000].pcm16, dtype="<i2")
    assert np.abs(samples).max() > 1000


async def test_barge_in_stops_the_audio_and_the_context_keeps_the_heard_words(
        tier: tuple[str, CloudSettings]) -> None:
    from cloud.deployments import session_vault

    url, _ = tier
    link = await open_link(url, "barge-edge")
    try:
        await link.send(TranscriptFinal(turn_id=1, text="Tell me about the history of Rome."))
        async for msg in link:
            if isinstance(msg, TtsChunk):
                break
        await link.send(BargeIn(turn_id=1, samples_played=800, heard_text="Rome was"))
        interrupted = time.monotonic()
        late: list[float] = []
        after = await collect_turn(link, 2, "Thanks, never mind.", arrivals=late)
        # Audio already in flight may still land; nothing of turn 1 is produced afterwards.
        turn1 = [t - interrupted for m, t in zip(after, late, strict=True)
                 if isinstance(m, TtsChunk | TtsEnd) and m.turn_id == 1]
        assert not any(isinstance(m, TtsEnd) and m.turn_id == 1 for m in after)
        assert all(dt < 0.3 for dt in turn1)
        session_id = link.session.session_id  # type: ignore[union-attr]
    finally:
        await link.close()
    state = await session_vault().load.remote(session_id)
    exchanges = state["context"]["exchanges"]
    assert exchanges[0]["assistant"] == "Rome was"
    assert exchanges[1]["user"] == "Thanks, never mind."


async def test_a_session_resumes_with_its_context(tier: tuple[str, CloudSettings]) -> None:
    from cloud.deployments import session_vault

    url, _ = tier
    link = await open_link(url, "resume-edge")
    await collect_turn(link, 1, "My name is Ada.")
    session = link.session
    await link.close()
    resumed = await open_link(url, "resume-edge", session=session)
    try:
        msgs = await collect_turn(resumed, 2, "What is my name?")
        assert any(isinstance(m, TtsEnd) for m in msgs)
    finally:
        await resumed.close()
    assert session is not None
    state = await session_vault().load.remote(session.session_id)
    users = [ex["user"] for ex in state["context"]["exchanges"]]
    assert users == ["My name is Ada.", "What is my name?"]


async def test_the_cloud_bench_answers_every_turn_of_sessions_started_together(
        tier: tuple[str, CloudSettings]) -> None:
    from cloud.bench import concurrent

    url, _ = tier
    results = await concurrent(url, SECRET.encode(), sessions=2, turns=2, tag="bench-test")
    assert [r.errors for r in results] == [[], []]
    assert all(len(r.first_audio_ms) == 2 and min(r.first_audio_ms) > 0 for r in results)
    assert all(len(r.metrics) == 2 for r in results)  # each turn's stage times came back


async def test_a_client_that_cannot_connect_releases_the_others(
        tier: tuple[str, CloudSettings]) -> None:
    from cloud.bench import run_client

    url, _ = tier
    start = asyncio.Barrier(2)
    good = run_client(url, issue_token(SECRET.encode(), "bench-good", 300), 1, start=start)
    bad = run_client(url, "not-a-token", 1, start=start)
    ok, failed = await asyncio.wait_for(asyncio.gather(good, bad), 30)
    assert failed.errors and failed.errors[0].startswith("connect:")
    assert ok.errors == ["another client could not connect"]
