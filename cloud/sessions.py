"""The sessions a gateway replica hosts: their WebRTC links and conversations.

``SessionHub.open(offer)`` answers an edge's SDP offer; the link's hello then names a new session
or one to resume. A session resumes on this replica from memory, or, after a replica restart or
on another replica, from the ``ContextStore`` (its context, resume token and sequence numbers).
Malformed frames and stray hellos on an open link get a non-fatal ``error`` reply; the session
goes on (violations of the session protocol itself still close the link).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from cloud.conversation.context import ConversationContext
from cloud.conversation.ports import ContextStore, ReplySource, SpeechSource
from cloud.conversation.session import Conversation, ConversationSettings
from cloud.conversation.turn import TurnRecord
from shared.errors import NetworkError
from shared.link import Link, LinkConfig, OfferRejectedError, rtc_configuration
from shared.protocol import (
    Hello,
    Message,
    ResumeState,
    Session,
    SessionStore,
)

log = logging.getLogger(__name__)


class SessionsFullError(NetworkError):
    """This replica hosts as many sessions as it may (HTTP 503)."""


class GatewaySessions(SessionStore):
    """The protocol's session table, able to revive a session saved by another replica."""

    def __init__(self) -> None:
        super().__init__()
        self._revivable: dict[str, dict[str, Any]] = {}

    def offer_revival(self, session_id: str, state: dict[str, Any]) -> None:
        """Saved resume state of ``session_id``, used if its hello arrives here."""
        self._revivable[session_id] = state

    def accept(self, hello: Hello) -> Session:
        saved = self._revivable.pop(hello.session_id, None)
        if hello.session_id and self.get(hello.session_id) is None and saved:
            self._revive(hello, saved)
        return super().accept(hello)

    def _revive(self, hello: Hello, saved: dict[str, Any]) -> None:
        # Sequence numbers continue where the old replica left them (what it sent unacked is
        # lost with it) and above what the edge says it has seen.
        state = ResumeState(session_id=hello.session_id,
                            resume_token=str(saved.get("resume_token", "")),
                            next_seq=max(int(saved.get("next_seq", 1)), hello.last_seq_seen + 1),
                            last_received=int(saved.get("last_received", 0)))
        self.adopt(Session.revive("cloud", state))


def resume_state(session: Session) -> dict[str, Any]:
    """What a new replica needs to revive ``session``."""
    return dataclasses.asdict(session.resume_state())


@dataclasses.dataclass
class _Hosted:
    conversation: Conversation
    link: Link
    last_link_end: float | None = None


class SessionHub:
    """Links and conversations of one gateway replica."""

    def __init__(self, replies: ReplySource, speech: SpeechSource, store: ContextStore,
                 settings: ConversationSettings, *, max_sessions: int = 64,
                 idle_s: float = 600.0, link_config: LinkConfig | None = None,
                 on_turn: Callable[[TurnRecord], None] | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        self._replies = replies
        self._speech = speech
        self._store = store
        self._settings = settings
        self._max_sessions = max_sessions
        self._idle_s = idle_s
        # An open session answers a malformed frame with a non-fatal error and goes on.
        self._link_config = dataclasses.replace(link_config or LinkConfig(),
                                                tolerate_malformed=True)
        self._on_turn = on_turn
        self._on_error = on_error or (lambda _kind: None)
        self.sessions = GatewaySessions()
        self._hosted: dict[str, _Hosted] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> int:
        return sum(1 for h in self._hosted.values() if h.last_link_end is None)

    async def open(self, offer_sdp: str, session_id: str = "") -> str:
        """Answer an SDP offer; the link is then served in the background."""
        if "m=application" not in offer_sdp:
            raise OfferRejectedError("malformed SDP offer (no data channel)")
        if self.connected >= self._max_sessions:
            raise SessionsFullError("this gateway hosts its maximum number of sessions")
        if session_id and self.sessions.get(session_id) is None:
            saved = await self._store.load(session_id)
            if saved is not None:
                self.sessions.offer_revival(session_id, saved)
        from aiortc import RTCPeerConnection, RTCSessionDescription

        pc = RTCPeerConnection(rtc_configuration(self._link_config))
        link = Link(pc, self._link_config, store=self.sessions)
        pc.on("datachannel", link.attach)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            await pc.close()
            raise OfferRejectedError(f"malformed SDP offer ({type(exc).__name__})") from exc
        self._spawn(self._serve(link))
        return str(pc.localDescription.sdp)

    async def _serve(self, link: Link) -> None:
        try:
            await link.wait_open()
        except NetworkError as exc:
            log.info("a link never opened: %s", exc)
            return
        session = link.session
        assert session is not None
        hosted = await self._host(session, link)
        try:
            async for msg in link:
                await hosted.conversation.handle(msg)
        except NetworkError as exc:
            log.info("session %s link ended: %s", session.session_id, exc)
            self._on_error("link")
        finally:
            if hosted.link is link:
                hosted.last_link_end = time.monotonic()
                self._spawn(self._expire(session.session_id))

    async def _host(self, session: Session, link: Link) -> _Hosted:
        hosted = self._hosted.get(session.session_id)
        if hosted is not None:
            hosted.link, hosted.last_link_end = link, None
            return hosted
        saved = await self._store.load(session.session_id)
        context = None
        if saved and "context" in saved:
            context = ConversationContext.restore(saved["context"], self._settings.context)
        hosted = _Hosted(conversation=None, link=link)  # type: ignore[arg-type]

        async def send(msg: Message) -> None:
            await hosted.link.send(msg)

        hosted.conversation = Conversation(
            session.session_id, self._replies, self._speech, send, settings=self._settings,
            sample_rate=_sample_rate(session), store=self._store, context=context,
            on_turn=self._on_turn, on_error=self._on_error,
            extras=lambda: resume_state(session))
        self._hosted[session.session_id] = hosted
        await hosted.conversation.persist()
        return hosted

    async def _expire(self, session_id: str) -> None:
        await asyncio.sleep(self._idle_s)
        hosted = self._hosted.get(session_id)
        if hosted is None or hosted.last_link_end is None:
            return  # resumed meanwhile
        if time.monotonic() - hosted.last_link_end >= self._idle_s:
            await self._drop(session_id)
            await self._store.forget(session_id)  # the conversation is over

    async def _drop(self, session_id: str) -> None:
        hosted = self._hosted.pop(session_id, None)
        if hosted is not None:
            await hosted.conversation.close()
        self.sessions.forget(session_id)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Close every link and conversation (replica shutdown); saved state stays, so the
        sessions can resume elsewhere."""
        for session_id in list(self._hosted):
            hosted = self._hosted[session_id]
            with contextlib.suppress(Exception):
                await hosted.link.close()
            await self._drop(session_id)
        for task in list(self._tasks):
            task.cancel()


def _sample_rate(session: Session) -> int:
    """The edge's preferred playback rate: the first it lists (16 kHz by default)."""
    hello = session.peer_hello
    rates = hello.capabilities.sample_rates if hello is not None else ()
    return int(rates[0]) if rates else 16000
