"""A WebRTC data channel carrying one session's messages, on either side.

The link moves frames; the sans-IO :class:`~shared.protocol.Session` decides what they mean.
One ordered, reliable data channel carries everything (JSON control frames and binary audio
frames), so the session's sequence numbers arrive in order.

Backpressure: ``send`` awaits (it never drops and never buffers without bound) while the peer
has a full flow-control window unacknowledged or while the channel buffers more than
``high_water_bytes``. The peer acknowledges only what its application has *taken* from the
link, so a slow reader slows the sender down instead of growing memory anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection

from shared.errors import NetworkError
from shared.link.changes import Changes
from shared.link.config import LinkClosedError, LinkConfig, PeerLostError, peer_failure
from shared.protocol import (
    Error,
    Hello,
    Message,
    Phase,
    ProtocolError,
    RemoteProtocolError,
    Session,
    SessionStore,
    Step,
    VersionMismatchError,
    decode,
    encode,
)

_SUPERSEDED = "the session moved to a newer link"


def _refusal(code: str, message: str) -> Step:
    error = Error(code=code, message=message[:1024], fatal=False)
    return Step(outgoing=(encode(error),), optional=True)


class Link:
    """One peer connection. ``await send(msg)``; ``async for msg in link``; ``await close()``.

    Iteration yields application messages (transcripts, reply text, audio, barge-in, cancel,
    metrics, non-fatal errors); pings, pongs, acks, hellos and unknown types are handled here.
    It ends when either side closes the link and raises a NetworkError when the link fails
    (PeerLostError, PeerError, a ProtocolError...). Messages that arrived before a failure are
    still yielded first, so draining a dead link loses nothing.
    """

    def __init__(
        self,
        pc: RTCPeerConnection,
        config: LinkConfig,
        *,
        session: Session | None = None,
        store: SessionStore | None = None,
    ) -> None:
        if (session is None) == (store is None):
            raise ValueError("a link needs either a session (edge) or a session store (cloud)")
        self._pc = pc
        self._config = config
        self._session = session
        self._store = store
        self._epoch = -1
        self._connected = False
        self._channel: RTCDataChannel | None = None
        self._inbox: deque[Message] = deque()
        self._changes = Changes()
        self._send_lock = asyncio.Lock()
        self._failure: NetworkError | None = None
        self._down = False
        self._last_heard = config.clock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._beat: asyncio.Future[None] | None = None
        pc.on("connectionstatechange", self._on_connection_state)

    # ---- what the application sees -------------------------------------------------------

    @property
    def session(self) -> Session | None:
        """The conversation this link carries (None on the cloud until the edge's hello)."""
        return self._session

    @property
    def is_open(self) -> bool:
        """Whether the handshake is done and the link is alive."""
        return not self._down and self._current() and self._phase() is Phase.OPEN

    @property
    def failure(self) -> NetworkError | None:
        """Why the link failed, or None (open, or closed cleanly)."""
        return self._failure

    @property
    def rtt_s(self) -> float | None:
        """Median ping round trip in seconds (None before the first pong)."""
        return self._session.clock.rtt_s if self._session else None

    @property
    def clock_offset_s(self) -> float | None:
        """The peer's clock minus ours, in seconds (None before the first pong)."""
        return self._session.clock.offset_s if self._session else None

    async def wait_open(self, timeout_s: float | None = None) -> None:
        """Wait until the hello handshake is done; raise NetworkError if the link fails first."""
        limit = self._config.open_timeout_s if timeout_s is None else timeout_s
        try:
            await asyncio.wait_for(self._wait_until(lambda: self.is_open or self._down), limit)
        except TimeoutError:
            self._shut_down(PeerLostError(f"the link did not open within {limit:g} s"))
        if not self.is_open:
            raise self._failure or LinkClosedError("the link closed before it opened")

    async def ping(self) -> float:
        """Send a ping at once and wait for a pong: the round trip in seconds."""
        await self.wait_open()
        session = self._session
        assert session is not None
        before = session.clock.count
        self._write(session.ping(self._config.clock()))
        await self._wait_until(lambda: session.clock.count > before or self._down)
        if session.clock.count == before:
            raise self._failure or LinkClosedError("the link closed during a ping")
        return session.clock.samples[-1].rtt_s

    async def send(self, msg: Message) -> None:
        """Send ``msg``, waiting (never dropping) while the peer or the channel is behind.

        On a link that is down, a ``RESEND`` message is still accepted when the session can
        resume: it is kept and delivered by the next link of the session. Otherwise (and for
        every other message) send raises NetworkError: the message was not accepted.
        """
        async with self._send_lock:
            await self._wait_until(self._ready_to_send)
            if self._down or not self._current():
                self._keep_for_resume(msg)
                return
            assert self._session is not None
            frame = self._session.send(msg)
            if frame is not None:
                self._write(frame)

    def __aiter__(self) -> Link:
        return self

    async def __anext__(self) -> Message:
        await self._wait_until(lambda: bool(self._inbox) or self._down)
        if not self._inbox:
            if self._failure is not None:
                raise self._failure
            raise StopAsyncIteration
        msg = self._inbox.popleft()
        session = self._session
        if session is not None and not self._down and self._current():
            session.consumed(msg)
            ack = session.take_ack(force=not self._inbox)
            if ack is not None:
                self._write(ack)
        return msg

    async def close(self) -> None:
        """Close the link cleanly: queued frames are flushed first, the peer's iteration ends.
        The session stays resumable (a new link may carry it on)."""
        if not self._down:
            self._shut_down(None)
        await self._finish()

    # ---- wiring (called by shared.link.signaling) ------------------------------------------

    def attach(self, channel: RTCDataChannel) -> None:
        """Use ``channel`` (created by the edge, or announced to the cloud)."""
        self._channel = channel
        channel.bufferedAmountLowThreshold = self._config.low_water_bytes
        channel.on("message", self._on_frame)
        channel.on("close", self._on_channel_close)
        channel.on("bufferedamountlow", self._wake)
        if channel.readyState == "open":
            self._on_open()
        else:
            channel.on("open", self._on_open)

    # ---- events from aiortc ----------------------------------------------------------------

    def _on_open(self) -> None:
        self._last_heard = self._config.clock()
        if self._session is not None:
            try:
                self._connect_session(self._session)
            except ProtocolError as exc:  # the session was closed meanwhile
                self._shut_down(exc)
                return
        self._beat = asyncio.ensure_future(self._heartbeat())

    def _on_frame(self, data: bytes | str) -> None:
        if self._down:
            return
        self._last_heard = self._config.clock()
        try:
            step = self._receive(data)
        except ProtocolError as exc:
            self._fail_with_error(exc)
            return
        if not (step.optional and self._congested()):  # a ping flood cannot pile up pongs
            for frame in step.outgoing:
                self._write(frame)
        msg = step.deliver
        if isinstance(msg, Error) and msg.fatal:
            self._shut_down(peer_failure(msg))
        elif msg is not None:
            self._inbox.append(msg)
        self._wake()

    def _receive(self, data: bytes | str) -> Step:
        now = self._config.clock()
        if self._session is None:  # the cloud, before the edge's hello
            assert self._store is not None
            hello = decode(data)
            if not isinstance(hello, Hello):
                raise RemoteProtocolError(f"expected a hello first, got {hello.TYPE}")
            session = self._store.accept(hello)
            self._connect_session(session)
            return session.receive_message(hello, len(data), now)
        if not self._current():
            self._shut_down(LinkClosedError(_SUPERSEDED))
            return Step()
        if self._config.tolerate_malformed and self._session.phase is Phase.OPEN:
            return self._receive_tolerantly(self._session, data, now)
        return self._session.receive(data, now)

    def _receive_tolerantly(self, session: Session, data: bytes | str, now: float) -> Step:
        """An invalid frame or a stray hello on an open session gets a non-fatal error."""
        try:
            msg = decode(data)
        except VersionMismatchError:
            raise
        except ProtocolError as exc:
            return _refusal(exc.error_code, str(exc))
        if isinstance(msg, Hello):
            return _refusal("unexpected_hello", "the session is already open")
        return session.receive_message(msg, len(data), now)

    def _on_channel_close(self) -> None:
        if not self._down:
            superseded = self._connected and not self._current()
            self._shut_down(LinkClosedError(_SUPERSEDED) if superseded else None)
        self._wake()

    def _on_connection_state(self) -> None:
        if self._pc.connectionState == "failed" and not self._down:
            self._shut_down(PeerLostError("the WebRTC connection failed"))

    async def _heartbeat(self) -> None:
        period = self._config.ping_interval_s
        next_ping = 0.0
        while not self._down:
            now = self._config.clock()
            silent = now - self._last_heard
            if silent > self._config.dead_after_s:
                self._shut_down(PeerLostError(f"no word from the peer for {silent:.1f} s"))
                return
            if self._connected and not self._current():
                self._shut_down(LinkClosedError(_SUPERSEDED))
                return
            session = self._session
            live = session is not None and session.phase not in (Phase.DISCONNECTED, Phase.CLOSED)
            if now >= next_ping and session is not None and live and self._current():
                self._write(session.ping(now))
                ack = session.take_ack(force=True)
                if ack is not None:
                    self._write(ack)
                next_ping = now + period
            await asyncio.sleep(period / 4)

    # ---- internals ---------------------------------------------------------------------------

    def _connect_session(self, session: Session) -> None:
        self._session = session
        for frame in session.connect(self._config.clock()):
            self._write(frame)
        self._epoch = session.epoch
        self._connected = True

    def _current(self) -> bool:
        return self._session is not None and self._session.epoch == self._epoch

    def _phase(self) -> Phase | None:
        return self._session.phase if self._session else None

    def _ready_to_send(self) -> bool:
        if self._down or (self._connected and not self._current()):
            return True
        if not self._connected:
            return False
        assert self._session is not None and self._channel is not None
        return (
            self._session.phase is Phase.OPEN
            and self._session.window_open()
            and not self._congested()
        )

    def _congested(self) -> bool:
        channel = self._channel
        return channel is not None and channel.bufferedAmount > self._config.high_water_bytes

    def _keep_for_resume(self, msg: Message) -> None:
        session = self._session
        resumable = session is not None and session.phase is Phase.DISCONNECTED
        if not (msg.RESEND and resumable and session is not None and session.window_open()):
            raise self._failure or LinkClosedError("the link is closed")
        session.send(msg)  # kept (returns None): the next link of the session delivers it

    def _write(self, frame: bytes) -> None:
        channel = self._channel
        if channel is None or channel.readyState != "open":
            return  # the link is going down; the session keeps what must be resent
        channel.send(frame)

    def _fail_with_error(self, exc: ProtocolError) -> None:
        session = self._session
        if session is not None and self._current():
            self._write(session.error_frame(exc))
        else:
            self._write(encode(Error(code=exc.error_code, message=str(exc)[:1024], fatal=True)))
        self._shut_down(exc)

    def _shut_down(self, failure: NetworkError | None) -> None:
        """Mark the link down (once), tell the session, and close the transport gracefully."""
        if self._down:
            return
        self._down = True
        self._failure = failure
        session = self._session
        if session is not None and self._current() and session.phase is not Phase.CLOSED:
            session.link_lost()
        self._spawn(self._finish())
        self._wake()

    async def _finish(self) -> None:
        if self._beat is not None and self._beat is not asyncio.current_task():
            self._beat.cancel()
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            channel.close()  # a stream reset, sent after the frames already queued
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wait_until(lambda: channel.readyState == "closed"),
                    self._config.close_timeout_s,
                )
        await self._pc.close()
        self._wake()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _wake(self) -> None:
        self._changes.notify()

    async def _wait_until(self, ready: Callable[[], bool]) -> None:
        await self._changes.wait_until(ready)
