"""One conversation's protocol state, kept across links (sans-IO, in the spirit of h11).

Feed it frames with :meth:`Session.receive`; it answers with a :class:`Step` (a message for the
application, frames to transmit). Ask it for the frames of your own messages with
:meth:`Session.send`. It stamps sequence numbers, keeps every ``RESEND`` message until the peer
acknowledges it, drops duplicates, answers pings, and on a new link (:meth:`Session.connect`)
resends what the peer never saw. Which event is legal in which phase is the table
``TRANSITIONS``; anything else raises (LocalProtocolError for our misuse, RemoteProtocolError
for the peer's). Time comes in as ``now`` arguments (seconds on any monotonic clock).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

from shared.protocol.clock import ClockEstimate
from shared.protocol.codec import decode, encode
from shared.protocol.errors import (
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    VersionMismatchError,
)
from shared.protocol.messages import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    Ack,
    Capabilities,
    Error,
    Hello,
    Message,
    Ping,
    Pong,
    Role,
    Unknown,
)
from shared.protocol.phases import TRANSITIONS, Phase, Trigger

FLOW_WINDOW_BYTES = 1 << 20
"""A sender sends no sequenced message while this many bytes of them are unacknowledged."""

ACK_EVERY = 8
"""Acknowledge at least every this many consumed messages (and whenever the reader is idle)."""


@dataclass(frozen=True, slots=True)
class Step:
    """What one received frame means: a message for the application (or None) and frames to
    transmit now, in order. ``acked`` is True when the send window may have opened;
    ``optional`` when the outgoing frames (a pong) may be skipped on a congested channel."""

    deliver: Message | None = None
    outgoing: tuple[bytes, ...] = ()
    acked: bool = False
    optional: bool = False


@dataclass(frozen=True, slots=True)
class ResumeState:
    """What another process needs to revive a session (see :meth:`Session.revive`)."""

    session_id: str
    resume_token: str
    next_seq: int
    last_received: int


@dataclass(slots=True)
class _Sent:
    seq: int
    size: int
    frame: bytes | None  # kept only for RESEND messages


def check_version(version: str) -> None:
    """Raise unless ``version`` ("MAJOR.MINOR") has our MAJOR."""
    major, dot, minor = version.partition(".")
    if not (dot and major.isdigit() and minor.isdigit() and len(version) <= 16):
        raise RemoteProtocolError(f"malformed protocol version {version[:16]!r}")
    if int(major) != int(PROTOCOL_VERSION.split(".")[0]):
        raise VersionMismatchError(
            f"peer speaks protocol {version}, this side speaks {PROTOCOL_VERSION}"
        )


class Session:
    """Sequence numbers, acks, resend and resume for one conversation, on either side."""

    def __init__(
        self,
        role: Role,
        *,
        session_id: str = "",
        resume_token: str = "",
        capabilities: Capabilities | None = None,
    ) -> None:
        self.role: Role = role
        self.session_id = session_id
        self.resume_token = resume_token
        self.capabilities = capabilities or Capabilities()
        self.phase = Phase.DISCONNECTED
        self.peer_hello: Hello | None = None
        self.clock = ClockEstimate()
        self.last_heard: float | None = None
        self.epoch = 0  # incremented by every connect(): a link knows whether it is current
        self._next_seq = 1
        self._in_flight: deque[_Sent] = deque()
        self._in_flight_bytes = 0
        self._last_received = 0
        self._last_consumed = 0
        self._last_acked_sent = 0
        self._unacked_consumed = 0
        self._unconsumed: deque[int] = deque()  # sizes of delivered, not yet consumed messages
        self._unconsumed_bytes = 0
        self._ping_id = 0
        self._revived = False

    @classmethod
    def revive(
        cls, role: Role, state: ResumeState, capabilities: Capabilities | None = None
    ) -> Session:
        """A session rebuilt from a saved :class:`ResumeState` (another process, a restart).
        What the old process sent unacknowledged is lost with it; numbering continues above
        both the saved ``next_seq`` and whatever the peer says it has seen."""
        session = cls(
            role,
            session_id=state.session_id,
            resume_token=state.resume_token,
            capabilities=capabilities,
        )
        session._next_seq = max(1, state.next_seq)
        session._last_received = session._last_consumed = state.last_received
        session._last_acked_sent = state.last_received
        session._revived = True
        return session

    def resume_state(self) -> ResumeState:
        """A snapshot to save, from which :meth:`revive` rebuilds this session elsewhere."""
        return ResumeState(
            session_id=self.session_id,
            resume_token=self.resume_token,
            next_seq=self._next_seq,
            last_received=self._last_received,
        )

    # ---- transitions -------------------------------------------------------------------

    def _move(self, trigger: Trigger, *, remote: bool = False) -> None:
        nxt = TRANSITIONS.get((self.role, self.phase, trigger))
        if nxt is None:
            cls = RemoteProtocolError if remote else LocalProtocolError
            raise cls(f"{trigger.value} is illegal for the {self.role} in phase {self.phase.value}")
        self.phase = nxt

    def connect(self, now: float) -> tuple[bytes, ...]:
        """A new link is up: the frames to send first (the edge's hello; nothing on the cloud)."""
        self._move(Trigger.CONNECT)
        self.epoch += 1
        self.last_heard = now
        if self.role == "cloud":
            return ()
        return (encode(self._hello()),)

    def link_lost(self) -> None:
        """The link died (or is being replaced): it stops being current (``epoch`` moves on).
        RESEND messages stay for the next link; the rest are forgotten."""
        if self.phase is Phase.CLOSED:
            return
        self._move(Trigger.LINK_LOST)
        self.epoch += 1
        kept = deque(s for s in self._in_flight if s.frame is not None)
        self._in_flight = kept
        self._in_flight_bytes = sum(s.size for s in kept)
        self._unconsumed.clear()  # what the old link still holds is not counted against the new
        self._unconsumed_bytes = 0

    def close(self) -> None:
        """End the conversation for good (idempotent)."""
        self.phase = Phase.CLOSED

    def error_frame(self, exc: ProtocolError) -> bytes:
        """Close the session and return the fatal ``error`` frame that tells the peer why."""
        self.close()
        return encode(Error(code=exc.error_code, message=str(exc)[:1024], fatal=True))

    # ---- sending -----------------------------------------------------------------------

    def send(self, msg: Message) -> bytes | None:
        """The frame to transmit for ``msg`` (sequence number stamped), or None when no link is
        open: a RESEND message is then kept and goes out after the next handshake."""
        if isinstance(msg, Hello | Ack | Ping | Pong | Unknown):
            raise LocalProtocolError(f"{msg.TYPE} is sent by the session itself")
        open_now = self.phase is Phase.OPEN
        self._move(Trigger.SEND if open_now or not msg.RESEND else Trigger.QUEUE)
        if msg.SEQUENCED:
            msg = replace(msg, seq=self._next_seq)  # type: ignore[call-arg]
            self._next_seq += 1
        frame = encode(msg)
        if msg.SEQUENCED:
            seq: int = msg.seq  # type: ignore[attr-defined]
            self._in_flight.append(_Sent(seq, len(frame), frame if msg.RESEND else None))
            self._in_flight_bytes += len(frame)
        return frame if open_now else None

    def window_open(self) -> bool:
        """Whether another message may be sent now: less than FLOW_WINDOW_BYTES in flight (so
        never more than the window plus one message)."""
        return self._in_flight_bytes < FLOW_WINDOW_BYTES

    @property
    def in_flight_bytes(self) -> int:
        """Bytes of sequenced messages sent (or queued) and not yet acknowledged."""
        return self._in_flight_bytes

    @property
    def unacked(self) -> int:
        """How many RESEND messages the peer has not acknowledged yet."""
        return sum(1 for s in self._in_flight if s.frame is not None)

    def ping(self, now: float) -> bytes:
        """A heartbeat frame carrying ``now``."""
        self._move(Trigger.HEARTBEAT)
        self._ping_id = (self._ping_id + 1) % 2**32
        return encode(Ping(ping_id=self._ping_id, t0=now))

    def take_ack(self, *, force: bool = False) -> bytes | None:
        """An ``ack`` frame when one is due (every ACK_EVERY messages, or any when ``force``)."""
        if self.phase is not Phase.OPEN or self._last_consumed == self._last_acked_sent:
            return None
        if not force and self._unacked_consumed < ACK_EVERY:
            return None
        self._last_acked_sent = self._last_consumed
        self._unacked_consumed = 0
        return encode(Ack(last_seq=self._last_consumed))

    def _hello(self) -> Hello:
        return Hello(
            role=self.role,
            session_id=self.session_id,
            resume_token=self.resume_token,
            capabilities=self.capabilities,
            last_seq_seen=self._last_received,
        )

    # ---- receiving ---------------------------------------------------------------------

    def receive(self, data: bytes | str, now: float) -> Step:
        """Process one frame from the peer."""
        return self.receive_message(decode(data), len(data), now)

    def receive_message(self, msg: Message, size: int, now: float) -> Step:
        """Process one already-decoded message of ``size`` bytes."""
        self.last_heard = now
        if isinstance(msg, Hello):
            return self._on_hello(msg)
        if isinstance(msg, Ack):
            self._move(Trigger.RECV_DATA, remote=True)
            self._on_ack(msg.last_seq)
            return Step(acked=True)
        if msg.SEQUENCED:
            self._move(Trigger.RECV_DATA, remote=True)
            return self._on_sequenced(msg, size)
        self._move(Trigger.RECV_CONTROL, remote=True)
        if isinstance(msg, Ping):
            pong = Pong(ping_id=msg.ping_id, t0=msg.t0, t1=now, t2=now)
            return Step(outgoing=(encode(pong),), optional=True)
        if isinstance(msg, Pong):
            self.clock.add(msg.t0, msg.t1, msg.t2, now)
            return Step()
        if isinstance(msg, Unknown):
            return Step()  # a newer minor version's message: skipped
        if isinstance(msg, Error) and msg.fatal:
            self.close()
        return self._deliver(msg, size)

    def _on_hello(self, hello: Hello) -> Step:
        check_version(hello.protocol_version)
        if hello.role == self.role:
            raise RemoteProtocolError(f"both peers claim the {self.role} role")
        self._move(Trigger.RECV_HELLO, remote=True)
        if self.role == "edge":
            if self.session_id and hello.session_id != self.session_id:
                raise RemoteProtocolError("the cloud answered a resume with another session")
            self.session_id, self.resume_token = hello.session_id, hello.resume_token
        self.peer_hello = hello
        if self._revived:  # the peer may have seen more of us than the saved state knows
            self._next_seq = max(self._next_seq, hello.last_seq_seen + 1)
            self._revived = False
        self._on_ack(hello.last_seq_seen)
        first = (encode(self._hello()),) if self.role == "cloud" else ()
        resend = tuple(s.frame for s in self._in_flight if s.frame is not None)
        return Step(outgoing=first + resend, acked=True)

    def _on_ack(self, last_seq: int) -> None:
        if last_seq >= self._next_seq:
            raise RemoteProtocolError(f"ack of {last_seq}, beyond the last message sent")
        while self._in_flight and self._in_flight[0].seq <= last_seq:
            self._in_flight_bytes -= self._in_flight.popleft().size

    def _on_sequenced(self, msg: Message, size: int) -> Step:
        seq: int = msg.seq  # type: ignore[attr-defined]
        if seq == 0:
            raise RemoteProtocolError(f"{msg.TYPE} without a sequence number")
        if seq <= self._last_received:
            return Step()  # a duplicate after a resume
        self._last_received = seq
        return self._deliver(msg, size)

    def _deliver(self, msg: Message, size: int) -> Step:
        self._unconsumed.append(size)
        self._unconsumed_bytes += size
        if self._unconsumed_bytes > FLOW_WINDOW_BYTES + 4 * MAX_MESSAGE_BYTES:
            raise RemoteProtocolError("the peer ignored flow control (too much unconsumed data)")
        return Step(deliver=msg)

    def consumed(self, msg: Message) -> None:
        """The application took ``msg`` (in delivery order); acks become due."""
        if self._unconsumed:
            self._unconsumed_bytes -= self._unconsumed.popleft()
        if msg.SEQUENCED:
            self._last_consumed = msg.seq  # type: ignore[attr-defined]
            self._unacked_consumed += 1
