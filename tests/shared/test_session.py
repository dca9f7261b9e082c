"""Session state, pure: an edge and a cloud session joined by a fake link we can cut."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from shared.protocol import (
    FLOW_WINDOW_BYTES,
    PROTOCOL_VERSION,
    TRANSITIONS,
    Ack,
    Error,
    Hello,
    LocalProtocolError,
    Message,
    Metrics,
    Phase,
    Ping,
    RemoteProtocolError,
    ResponseText,
    ResumeRefusedError,
    Session,
    SessionStore,
    TranscriptFinal,
    TranscriptPartial,
    TtsChunk,
    VersionMismatchError,
    decode,
    encode,
)


@dataclass
class FakeLink:
    """Frames in flight each way; the applications take every message at once."""

    store: SessionStore = field(default_factory=SessionStore)
    edge: Session = field(default_factory=lambda: Session("edge"))
    cloud: Session | None = None
    to_cloud: list[bytes] = field(default_factory=list)
    to_edge: list[bytes] = field(default_factory=list)
    edge_got: list[Message] = field(default_factory=list)
    cloud_got: list[Message] = field(default_factory=list)
    now: float = 0.0
    cloud_fresh: bool = True  # the cloud side of this link has not seen a hello yet

    def connect(self) -> None:
        self.to_cloud.extend(self.edge.connect(self.now))
        self.cloud_fresh = True

    def edge_send(self, msg: Message) -> None:
        frame = self.edge.send(msg)
        if frame is not None:
            self.to_cloud.append(frame)

    def cloud_send(self, msg: Message) -> None:
        assert self.cloud is not None
        frame = self.cloud.send(msg)
        if frame is not None:
            self.to_edge.append(frame)

    def _to_cloud(self, frame: bytes) -> None:
        if self.cloud_fresh:
            hello = decode(frame)
            assert isinstance(hello, Hello)
            self.cloud = self.store.accept(hello)
            self.cloud.connect(self.now)
            self.cloud_fresh = False
        assert self.cloud is not None
        self._apply(self.cloud, self.cloud.receive(frame, self.now), self.to_edge, self.cloud_got)

    def _apply(self, side: Session, step: object, out: list[bytes], got: list[Message]) -> None:
        out.extend(step.outgoing)  # type: ignore[attr-defined]
        msg = step.deliver  # type: ignore[attr-defined]
        if msg is not None:
            got.append(msg)
            side.consumed(msg)
            ack = side.take_ack(force=True)
            if ack is not None:
                out.append(ack)

    def pump(self, limit: int | None = None) -> None:
        """Deliver frames both ways until none are left (or ``limit`` frames were moved)."""
        moved = 0
        while (self.to_cloud or self.to_edge) and (limit is None or moved < limit):
            if self.to_cloud:
                self._to_cloud(self.to_cloud.pop(0))
            if self.to_edge:
                frame = self.to_edge.pop(0)
                self._apply(
                    self.edge, self.edge.receive(frame, self.now), self.to_cloud, self.edge_got
                )
            moved += 1

    def cut(self, cloud_notices: bool = True) -> None:
        """The network drops: frames in flight are lost."""
        self.to_cloud.clear()
        self.to_edge.clear()
        self.edge.link_lost()
        if cloud_notices and self.cloud is not None:
            self.cloud.link_lost()


def final(turn: int, text: str = "hello") -> TranscriptFinal:
    return TranscriptFinal(turn_id=turn, text=text)


def chunk(turn: int, index: int) -> TtsChunk:
    return TtsChunk(
        turn_id=turn,
        chunk_index=index,
        sample_rate=22050,
        sample_offset=index * 441,
        payload=bytes([index % 256]) * 882,
    )


def opened() -> FakeLink:
    link = FakeLink()
    link.connect()
    link.pump()
    assert link.edge.phase is Phase.OPEN and link.cloud is not None
    assert link.cloud.phase is Phase.OPEN
    return link


def test_handshake_gives_the_edge_the_cloud_issued_session() -> None:
    link = opened()
    assert link.cloud is not None
    assert link.edge.session_id == link.cloud.session_id != ""
    assert link.edge.resume_token == link.cloud.resume_token != ""
    assert link.edge.peer_hello is not None and link.edge.peer_hello.role == "cloud"


def test_sequence_numbers_are_stamped_and_acks_release_the_outbox() -> None:
    link = opened()
    link.edge_send(TranscriptPartial(turn_id=1, text="hel"))
    link.edge_send(final(1))
    assert link.edge.unacked == 1
    link.pump()
    assert [m.seq for m in link.cloud_got] == [1, 2]  # type: ignore[attr-defined]
    assert link.edge.unacked == 0 and link.edge.in_flight_bytes == 0


@pytest.mark.parametrize("cloud_notices", [True, False])
def test_resume_mid_turn_loses_and_duplicates_nothing(cloud_notices: bool) -> None:
    link = opened()
    link.edge_send(final(1, "first"))
    link.pump()
    link.cloud_send(ResponseText(turn_id=1, delta="Sure."))
    for i in range(6):
        link.cloud_send(chunk(1, i))
    link.edge_send(final(2, "second"))
    link.pump(limit=3)  # part of the turn arrives, the rest (and some acks) is lost
    link.cut(cloud_notices)
    link.edge_send(final(3, "during the outage"))  # kept for the next link
    link.connect()
    link.pump()
    assert link.cloud is not None
    for i in range(6, 9):
        link.cloud_send(chunk(1, i))
    link.pump()
    assert [m.text for m in link.cloud_got] == ["first", "second", "during the outage"]  # type: ignore[attr-defined]
    audio = [m for m in link.edge_got if isinstance(m, TtsChunk)]
    assert [m.chunk_index for m in audio] == list(range(9))
    assert isinstance(link.edge_got[0], ResponseText)
    assert link.edge.unacked == 0 and link.cloud.unacked == 0
    assert len(link.store) == 1


def test_duplicates_are_dropped() -> None:
    link = opened()
    frame = link.edge.send(final(1))
    assert frame is not None and link.cloud is not None
    assert link.cloud.receive(frame, 0.0).deliver is not None
    assert link.cloud.receive(frame, 0.0).deliver is None


def test_ephemeral_messages_are_not_resent() -> None:
    link = opened()
    link.edge_send(TranscriptPartial(turn_id=1, text="hel"))
    link.edge_send(Metrics(turn_id=1, stages_ms={"asr": 12.0}))
    link.cut()
    assert link.edge.unacked == 0 and link.edge.in_flight_bytes == 0
    link.connect()
    link.pump()
    assert link.cloud_got == []


def test_messages_sent_before_the_handshake_go_out_after_it() -> None:
    link = FakeLink()
    link.connect()
    assert link.edge.send(final(1, "early")) is None  # queued until the cloud's hello
    link.pump()
    assert [m.text for m in link.cloud_got] == ["early"]  # type: ignore[attr-defined]


def test_resume_with_a_wrong_token_is_refused_and_the_session_survives() -> None:
    link = opened()
    assert link.cloud is not None
    forged = Hello(role="edge", session_id=link.edge.session_id, resume_token="guess")
    with pytest.raises(ResumeRefusedError):
        link.store.accept(forged)
    with pytest.raises(ResumeRefusedError):
        link.store.accept(Hello(role="edge", session_id="nope", resume_token="x"))
    assert link.cloud.phase is Phase.OPEN


def test_a_cloud_that_lost_the_session_answers_with_another_one() -> None:
    link = opened()
    link.cut()
    link.store = SessionStore()  # the cloud restarted
    link.connect()
    with pytest.raises(ResumeRefusedError):
        link.pump()


def test_major_version_mismatch_raises_and_produces_a_fatal_error() -> None:
    cloud = Session("cloud", session_id="s", resume_token="t")
    cloud.connect(0.0)
    hello = Hello(protocol_version="2.0", role="edge")
    with pytest.raises(VersionMismatchError) as caught:
        cloud.receive(encode(hello), 0.0)
    with pytest.raises(VersionMismatchError):
        SessionStore().accept(hello)
    error = decode(cloud.error_frame(caught.value))
    assert error == Error(code="version", message=str(caught.value), fatal=True)
    assert cloud.phase is Phase.CLOSED


def test_a_newer_minor_version_and_its_unknown_messages_are_accepted() -> None:
    cloud = SessionStore().accept(Hello(protocol_version="1.9", role="edge"))
    cloud.connect(0.0)
    cloud.receive(encode(Hello(protocol_version="1.9", role="edge")), 0.0)
    assert cloud.phase is Phase.OPEN
    assert cloud.receive(b'{"type":"vision.frame","w":1}', 0.0).deliver is None
    assert cloud.receive(b"\xbe" + bytes(8), 0.0).deliver is None
    assert cloud.phase is Phase.OPEN


@pytest.mark.parametrize("version", ["1", "x.y", "1.0.0", "", "01.0a"])
def test_malformed_versions_are_refused(version: str) -> None:
    with pytest.raises(RemoteProtocolError):
        SessionStore().accept(Hello(protocol_version=version, role="edge"))


def test_illegal_local_actions_raise_local_errors() -> None:
    edge = Session("edge")
    with pytest.raises(LocalProtocolError):
        edge.send(TranscriptPartial(turn_id=1, text="x"))  # no link: nothing to send on
    with pytest.raises(LocalProtocolError):
        edge.send(Ack(last_seq=0))  # acks belong to the session
    edge.connect(0.0)
    with pytest.raises(LocalProtocolError):
        edge.connect(0.0)
    edge.close()
    with pytest.raises(LocalProtocolError):
        edge.send(final(1))


def test_illegal_peer_behaviour_raises_remote_errors() -> None:
    link = FakeLink()
    link.connect()
    with pytest.raises(RemoteProtocolError):  # a transcript before the handshake
        link.edge.receive(encode(TranscriptFinal(turn_id=1, seq=1, text="x")), 0.0)
    link.pump()
    with pytest.raises(RemoteProtocolError):  # a second hello
        link.edge.receive(encode(Hello(role="cloud", session_id=link.edge.session_id)), 0.0)
    with pytest.raises(RemoteProtocolError):  # an ack of something never sent
        link.edge.receive(encode(Ack(last_seq=99)), 0.0)
    with pytest.raises(RemoteProtocolError):  # a sequenced message without a number
        link.edge.receive(encode(ResponseText(turn_id=1, delta="x")), 0.0)
    other = Session("edge")
    other.connect(0.0)
    with pytest.raises(RemoteProtocolError):  # both sides claim the edge role
        other.receive(encode(Hello(role="edge")), 0.0)


def test_a_fatal_error_from_the_peer_closes_the_session() -> None:
    link = opened()
    step = link.edge.receive(encode(Error(code="overloaded", message="later", fatal=True)), 0.0)
    assert isinstance(step.deliver, Error)
    assert link.edge.phase is Phase.CLOSED


def test_the_send_window_closes_until_the_peer_acknowledges() -> None:
    link = opened()
    sent = 0
    while link.cloud is not None and link.cloud.window_open():
        link.cloud_send(chunk(1, sent))
        sent += 1
    assert link.cloud is not None
    assert FLOW_WINDOW_BYTES <= link.cloud.in_flight_bytes < FLOW_WINDOW_BYTES + 1000
    link.pump()
    assert link.cloud.window_open() and link.cloud.in_flight_bytes == 0
    assert len(link.edge_got) == sent


def test_acks_are_batched_unless_forced() -> None:
    link = opened()
    assert link.cloud is not None
    for i in range(3):
        frame = link.edge.send(final(i))
        assert frame is not None
        msg = link.cloud.receive(frame, 0.0).deliver
        assert msg is not None
        link.cloud.consumed(msg)
    assert link.cloud.take_ack() is None
    assert decode(link.cloud.take_ack(force=True) or b"") == Ack(last_seq=3)
    assert link.cloud.take_ack(force=True) is None


def test_pings_are_answered_and_feed_the_clock_estimate() -> None:
    link = opened()
    assert link.cloud is not None
    ping = link.edge.ping(10.0)
    assert isinstance(decode(ping), Ping)
    (pong,) = link.cloud.receive(ping, 110.0).outgoing  # the cloud's clock is 100 s ahead
    link.edge.receive(pong, 10.02)
    assert link.edge.clock.rtt_s == pytest.approx(0.02)
    assert link.edge.clock.offset_s == pytest.approx(99.99)
    assert link.edge.last_heard == 10.02


def test_the_transition_table_covers_both_roles_and_ends_in_closed() -> None:
    roles = {role for role, _, _ in TRANSITIONS}
    assert roles == {"edge", "cloud"}
    assert all(
        TRANSITIONS[(role, phase, trigger)] is Phase.CLOSED
        for (role, phase, trigger) in TRANSITIONS
        if trigger.value == "close"
    )
    assert PROTOCOL_VERSION.startswith("1.")


def test_a_session_revived_from_saved_state_resumes_where_the_edge_left_off() -> None:
    link = opened()
    assert link.cloud is not None
    link.edge_send(final(1))
    link.pump()
    saved = link.cloud.resume_state()
    for i in range(3):
        link.cloud_send(chunk(1, i))  # sent after the save: the saved state lags behind
    link.pump()
    link.cut()
    link.store = SessionStore()  # another replica
    link.store.adopt(Session.revive("cloud", saved))
    link.connect()
    link.pump()
    link.cloud_send(chunk(1, 3))
    link.edge_send(final(2, "again"))
    link.pump()
    assert [m.chunk_index for m in link.edge_got] == [0, 1, 2, 3]  # type: ignore[attr-defined]
    assert [m.text for m in link.cloud_got] == ["hello", "again"]  # type: ignore[attr-defined]
    with pytest.raises(LocalProtocolError):
        link.store.adopt(Session("edge", session_id="x"))
