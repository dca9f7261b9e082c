"""Real aiortc peers on loopback, and a way to make one of them vanish."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from shared.link import Link, LinkConfig, answer_offer, open_link
from shared.protocol import Session, SessionStore

MakePair = Callable[..., Awaitable[tuple[Link, Link]]]


@pytest.fixture
async def link_pair() -> AsyncIterator[MakePair]:
    """``await link_pair(store=..., session=..., config=...) -> (edge_link, cloud_link)``."""
    made: list[Link] = []

    async def make(
        store: SessionStore | None = None,
        session: Session | None = None,
        config: LinkConfig | None = None,
    ) -> tuple[Link, Link]:
        store = store if store is not None else SessionStore()
        answered: list[Link] = []

        async def signal(offer_sdp: str, session_id: str) -> str:
            sdp, link = await answer_offer(offer_sdp, store, config)
            answered.append(link)
            made.append(link)
            return sdp

        edge = await open_link(signal, session=session, config=config)
        made.append(edge)
        await answered[0].wait_open()
        return edge, answered[0]

    yield make
    for link in made:
        await link.close()


def blackhole(link: Link) -> None:
    """The peer behind ``link`` vanishes: its UDP sockets neither send nor receive any more,
    and no goodbye (SCTP abort, channel close) is ever sent."""
    ice = link._pc.sctp.transport.transport  # type: ignore[union-attr]
    for protocol in ice._connection._protocols:
        protocol.datagram_received = _ignore
        protocol.transport.sendto = _ignore


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None


@pytest.fixture
def vanish() -> Callable[[Link], None]:
    return blackhole
