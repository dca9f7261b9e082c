"""The edge's offer over HTTP with a bearer token, against a tiny loopback aiohttp server."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from shared.errors import NetworkError
from shared.link import (
    OFFER_PATH,
    Link,
    OfferRejectedError,
    answer_body,
    answer_offer,
    connect,
    parse_offer,
)
from shared.protocol import RemoteProtocolError, ResponseText, SessionStore, TranscriptFinal

TOKEN = "s3cret-token"


@dataclass
class Cloud:
    url: str
    store: SessionStore
    links: list[Link] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)


@pytest.fixture
async def cloud() -> AsyncIterator[Cloud]:
    store = SessionStore()
    state = Cloud(url="", store=store)

    async def offer(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.Response(status=401, text="bad token")
        try:
            req = parse_offer(await request.json())
        except RemoteProtocolError as exc:
            return web.Response(status=400, text=str(exc))
        sdp, link = await answer_offer(req.sdp, store)
        state.links.append(link)
        state.session_ids.append(req.session_id)
        return web.json_response(answer_body(sdp))

    async def garbage(request: web.Request) -> web.Response:
        return web.json_response({"type": "answer", "sdp": "not sdp"})

    app = web.Application()
    app.router.add_post(OFFER_PATH, offer)
    app.router.add_post("/garbage" + OFFER_PATH, garbage)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}"
    yield state
    for link in state.links:
        await link.close()
    await runner.cleanup()


async def test_an_edge_with_the_right_token_talks_to_the_cloud(cloud: Cloud) -> None:
    edge = await connect(cloud.url, TOKEN)
    try:
        (cloud_link,) = cloud.links
        await cloud_link.wait_open()
        await edge.send(TranscriptFinal(turn_id=1, text="hi"))
        assert [m.text async for m in _first(cloud_link)] == ["hi"]  # type: ignore[attr-defined]
        await cloud_link.send(ResponseText(turn_id=1, delta="hello", final=True))
        assert [m.delta async for m in _first(edge)] == ["hello"]  # type: ignore[attr-defined]
        assert edge.session is not None and cloud_link.session is not None
        assert edge.session.session_id == cloud_link.session.session_id
    finally:
        await edge.close()


async def test_a_resume_over_http_names_its_session(cloud: Cloud) -> None:
    edge = await connect(cloud.url, TOKEN)
    session = edge.session
    await edge.close()
    edge2 = await connect(cloud.url, TOKEN, session=session)
    await edge2.close()
    assert session is not None
    assert cloud.session_ids == ["", session.session_id]
    assert len(cloud.store) == 1


async def test_a_wrong_token_is_refused(cloud: Cloud) -> None:
    with pytest.raises(OfferRejectedError, match="HTTP 401"):
        await connect(cloud.url, "wrong")


async def test_a_malformed_answer_is_refused(cloud: Cloud) -> None:
    with pytest.raises(OfferRejectedError):
        await connect(cloud.url + "/garbage", TOKEN)


async def test_an_unreachable_cloud_is_a_network_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens here once the socket is closed
    with pytest.raises(NetworkError, match="cannot reach"):
        await connect(f"http://127.0.0.1:{port}", TOKEN)


@pytest.mark.parametrize(
    "sdp", ["v=0\r\nnonsense", "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"]
)
async def test_a_malformed_offer_is_refused_by_the_cloud(sdp: str) -> None:
    with pytest.raises(OfferRejectedError):
        await answer_offer(sdp, SessionStore())


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"type": "answer", "sdp": "x"},
        {"type": "offer"},
        {"type": "offer", "sdp": ""},
        {"type": "offer", "sdp": "x", "session_id": 5},
    ],
)
def test_offer_bodies_are_validated(body: Any) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_offer(body)


async def _first(link: Link) -> AsyncIterator[Any]:
    async for msg in link:
        yield msg
        return
