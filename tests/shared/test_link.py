"""The WebRTC link between two real aiortc peers on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from shared.link import Link, LinkClosedError, PeerLostError
from shared.protocol import (
    FLOW_WINDOW_BYTES,
    MAX_MESSAGE_BYTES,
    Hello,
    Message,
    Metrics,
    Phase,
    ResponseText,
    Session,
    SessionStore,
    TranscriptFinal,
    TranscriptPartial,
    TtsChunk,
    TtsEnd,
    TtsStart,
    VersionMismatchError,
)

MakePair = Callable[..., Awaitable[tuple[Link, Link]]]


def audio_chunk(turn: int, index: int, size: int = 4096) -> TtsChunk:
    return TtsChunk(
        turn_id=turn,
        chunk_index=index,
        sample_rate=22050,
        sample_offset=index * size // 2,
        payload=bytes([index % 251]) * size,
    )


async def take(link: Link, count: int) -> list[Message]:
    got: list[Message] = []
    async for msg in link:
        got.append(msg)
        if len(got) == count:
            break
    return got


def strip_seq(msgs: list[Message]) -> list[Message]:
    import dataclasses

    return [dataclasses.replace(m, seq=0) if m.SEQUENCED else m for m in msgs]  # type: ignore[call-arg]


async def test_a_thousand_messages_with_a_megabyte_of_audio_arrive_in_order(
    link_pair: MakePair,
) -> None:
    edge, cloud = await link_pair()
    uplink: list[Message] = []
    for turn in range(100):
        uplink += [TranscriptPartial(turn_id=turn, text=f"word {turn}", stability=0.5)] * 3
        uplink += [TranscriptFinal(turn_id=turn, text=f"turn {turn}"), Metrics(turn_id=turn)]
    downlink: list[Message] = [TtsStart(turn_id=1, sample_rate=22050)]
    for i in range(256):  # 256 x 4 KiB = 1 MiB of audio, with the reply text interleaved
        downlink.append(audio_chunk(1, i))
        if i < 242:
            downlink.append(ResponseText(turn_id=1, delta=f"w{i} "))
    downlink.append(TtsEnd(turn_id=1, total_samples=256 * 2048))
    assert len(uplink) + len(downlink) >= 1000

    async def send_all(link: Link, msgs: list[Message]) -> None:
        for msg in msgs:
            await link.send(msg)

    results = await asyncio.gather(
        send_all(edge, uplink),
        send_all(cloud, downlink),
        take(cloud, len(uplink)),
        take(edge, len(downlink)),
    )
    assert strip_seq(results[2]) == uplink
    assert strip_seq(results[3]) == downlink
    audio = b"".join(m.payload for m in results[3] if isinstance(m, TtsChunk))
    assert len(audio) == 1 << 20


async def test_the_link_survives_a_drop_mid_turn_without_loss_or_duplicates(
    link_pair: MakePair, vanish: Callable[[Link], None]
) -> None:
    store = SessionStore()
    fast = _fast_heartbeat()
    edge, cloud = await link_pair(store=store, config=fast)
    session = edge.session
    assert session is not None
    await edge.send(TranscriptFinal(turn_id=1, text="tell me a story"))
    heard = await take(cloud, 1)
    for i in range(10):
        await cloud.send(audio_chunk(1, i, 1000))
    edge_got = await take(edge, 4)  # the edge has played a little when the network drops
    vanish(edge)
    for i in range(10, 14):
        await cloud.send(audio_chunk(1, i, 1000))  # into the void: kept until acknowledged
    await edge.send(TranscriptFinal(turn_id=2, text="and then?"))  # accepted for the resume
    edge_got += await _drain(edge)  # what arrived before the drop, then the failure
    assert isinstance(edge.failure, PeerLostError)
    assert session.phase is Phase.DISCONNECTED

    edge2, cloud2 = await link_pair(store=store, session=session, config=fast)
    assert cloud2.session is cloud.session
    for i in range(14, 16):
        await cloud2.send(audio_chunk(1, i, 1000))
    edge_got += await take(edge2, 16 - len(edge_got))
    heard += await take(cloud2, 1)
    assert [m.chunk_index for m in edge_got] == list(range(16))  # type: ignore[attr-defined]
    assert [m.text for m in heard] == ["tell me a story", "and then?"]  # type: ignore[attr-defined]
    await asyncio.sleep(0.2)  # acks travel
    assert session.unacked == 0


async def _drain(link: Link) -> list[Message]:
    got: list[Message] = []
    try:
        async for msg in link:
            got.append(msg)
    except PeerLostError:
        pass
    return got


def _fast_heartbeat() -> object:
    from shared.link import LinkConfig

    return LinkConfig(ping_interval_s=0.5, dead_after_s=1.5)


async def test_a_vanished_peer_is_noticed_within_three_seconds(
    link_pair: MakePair, vanish: Callable[[Link], None]
) -> None:
    edge, cloud = await link_pair()
    await edge.send(TranscriptFinal(turn_id=1, text="hello"))
    await take(cloud, 1)
    vanish(cloud)
    start = time.monotonic()
    with pytest.raises(PeerLostError):
        async for _ in edge:
            pass
    elapsed = time.monotonic() - start
    # Functional bound 3 s (default heartbeat: 1 s pings, dead after 2.5 s of silence); the
    # extra second is for a loaded CI machine, not part of the promise.
    assert elapsed < 3.0 + 1.0
    with pytest.raises(PeerLostError):
        await edge.send(TranscriptPartial(turn_id=2, text="anyone?"))


async def test_a_clean_close_ends_the_peer_iteration_and_keeps_the_session(
    link_pair: MakePair,
) -> None:
    edge, cloud = await link_pair()
    await cloud.send(ResponseText(turn_id=1, delta="bye", final=True))
    await edge.close()
    got = [m async for m in cloud]
    assert got == []
    assert edge.session is not None and edge.session.phase is Phase.DISCONNECTED
    with pytest.raises(LinkClosedError):
        await edge.send(TranscriptPartial(turn_id=1, text="x"))


async def test_sends_wait_until_the_handshake_is_done(link_pair: MakePair) -> None:
    store = SessionStore()
    early: list[asyncio.Task[None]] = []
    from shared.link import answer_offer, open_link

    async def signal(offer_sdp: str, session_id: str) -> str:
        sdp, cloud = await answer_offer(offer_sdp, store)
        early.append(asyncio.ensure_future(cloud.send(ResponseText(turn_id=0, delta="hi"))))
        early_links.append(cloud)
        return sdp

    early_links: list[Link] = []
    edge = await open_link(signal)
    try:
        await early[0]
        assert await take(edge, 1) == [ResponseText(turn_id=0, seq=1, delta="hi")]
    finally:
        await edge.close()
        await early_links[0].close()


async def test_a_slow_reader_holds_the_sender_back_instead_of_growing_memory(
    link_pair: MakePair,
) -> None:
    edge, cloud = await link_pair()
    total = 1200  # ~4.9 MB of audio, several flow-control windows

    async def produce() -> None:
        for i in range(total):
            await cloud.send(audio_chunk(1, i))

    producer = asyncio.ensure_future(produce())
    await asyncio.sleep(1.5)  # the edge does not read at all meanwhile
    assert not producer.done()
    assert cloud.session is not None
    assert cloud.session.in_flight_bytes <= FLOW_WINDOW_BYTES + MAX_MESSAGE_BYTES
    assert len(edge._inbox) * 4128 <= FLOW_WINDOW_BYTES + MAX_MESSAGE_BYTES
    got = await take(edge, total)
    await producer
    assert [m.chunk_index for m in got] == list(range(total))  # type: ignore[attr-defined]


async def test_a_major_version_mismatch_gets_an_error_and_a_clean_close(
    link_pair: MakePair,
) -> None:
    class FutureEdge(Session):
        def _hello(self) -> Hello:
            return Hello(protocol_version="2.0", role="edge")

    with pytest.raises(VersionMismatchError):
        await link_pair(session=FutureEdge("edge"))


async def test_round_trip_and_clock_offset_are_estimated(link_pair: MakePair) -> None:
    edge, cloud = await link_pair()
    for _ in range(50):
        if edge.rtt_s is not None and cloud.rtt_s is not None:
            break
        await asyncio.sleep(0.05)
    assert edge.rtt_s is not None and 0 <= edge.rtt_s < 1.0
    assert edge.clock_offset_s is not None and abs(edge.clock_offset_s) < 0.5  # same clock


async def test_a_new_link_for_the_same_session_supersedes_the_old_one(link_pair: MakePair) -> None:
    store = SessionStore()
    old_edge, old_cloud = await link_pair(store=store)
    new_edge, new_cloud = await link_pair(store=store, session=old_edge.session)
    assert new_cloud.session is old_cloud.session
    await new_edge.send(TranscriptFinal(turn_id=1, text="on the new link"))
    assert [m.text for m in await take(new_cloud, 1)] == ["on the new link"]  # type: ignore[attr-defined]
    with pytest.raises(LinkClosedError):
        async for _ in old_edge:
            pass
    with pytest.raises(LinkClosedError):
        async for _ in old_cloud:
            pass


@pytest.mark.parametrize("tolerant", [False, True])
async def test_a_garbage_frame_closes_a_strict_link_and_not_a_tolerant_one(
    link_pair: MakePair, tolerant: bool
) -> None:
    from shared.link import LinkConfig, PeerError
    from shared.protocol import Error

    edge, cloud = await link_pair(config=LinkConfig(tolerate_malformed=tolerant))
    edge._write(b"\xff not a frame")  # a buggy edge
    if not tolerant:
        with pytest.raises(PeerError) as caught:
            await take(edge, 1)
        assert caught.value.code == "protocol"
        return
    (reply,) = await take(edge, 1)
    assert isinstance(reply, Error) and not reply.fatal
    await edge.send(TranscriptFinal(turn_id=1, text="still here"))
    assert [m.text for m in await take(cloud, 1)] == ["still here"]  # type: ignore[attr-defined]
