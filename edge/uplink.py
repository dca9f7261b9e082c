"""The edge's connection to the cloud, kept alive across network drops.

Wraps ``shared.link``: when the link is lost it reconnects with backoff and resumes the same
session (the link resends what the cloud never acknowledged, and drops duplicates), so the
agent above it sees one uninterrupted stream. A cloud that forgot the session is joined anew.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from shared import protocol as p
from shared.errors import NetworkError
from shared.link import Link, OfferRejectedError, connect
from shared.protocol import ResumeRefusedError

log = logging.getLogger(__name__)


class ResilientUplink:
    """``send`` / ``async for`` like a ``Link``, reconnecting underneath."""

    def __init__(self, link: Link, cloud_url: str, token: str,
                 max_backoff_s: float = 5.0) -> None:
        self.link = link
        self.cloud_url = cloud_url
        self.token = token
        self.max_backoff_s = max_backoff_s
        self.reconnects = 0

    @classmethod
    async def open(cls, cloud_url: str, token: str) -> ResilientUplink:
        return cls(await connect(cloud_url, token), cloud_url, token)

    async def send(self, msg: p.Message) -> None:
        # A message sent while the link is down is accepted and delivered after the resume.
        await self.link.send(msg)

    async def __aiter__(self) -> AsyncIterator[p.Message]:
        while True:
            try:
                async for msg in self.link:
                    yield msg
                return  # the cloud closed cleanly
            except ResumeRefusedError:
                log.warning("the cloud no longer knows this session: starting a new one")
                self.link = await self._reconnect(resume=False)
            except NetworkError as exc:
                log.warning("link to the cloud lost (%s): reconnecting", exc)
                self.link = await self._reconnect(resume=True)

    async def _reconnect(self, resume: bool) -> Link:
        delay = 0.2
        session = self.link.session if resume else None
        while True:
            try:
                link = await connect(self.cloud_url, self.token, session=session)
                self.reconnects += 1
                return link
            except OfferRejectedError:
                raise  # a bad or expired token will not get better by retrying
            except NetworkError as exc:
                log.info("reconnect failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(self.max_backoff_s, delay * 2)

    async def close(self) -> None:
        await self.link.close()
