"""Every message that crosses the link between edge and cloud.

Messages are frozen, slotted, keyword-only dataclasses; constructing one validates it (types,
ranges, string lengths) and raises :class:`LocalProtocolError` when it is invalid. ``TYPE`` is the
name on the wire. Sequenced messages carry ``seq``: leave it 0 and the session stamps it.
Turn ids are integers chosen by the edge, one per user turn; the cloud's reply reuses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal

from shared.protocol.fields import (
    U32,
    U63,
    Fraction,
    Hertz,
    MaxLen,
    Millis,
    Name,
    Range,
    Seconds,
    Text,
    Timestamp,
    Token,
    validate,
)

PROTOCOL_VERSION = "1.1"
"""``MAJOR.MINOR``: another MAJOR is refused; a newer MINOR only adds messages and fields."""

MAX_MESSAGE_BYTES = 65536
"""No encoded message is larger; bigger input is refused before parsing (WebRTC's safe size)."""

Codec = Literal["pcm16", "opus"]
Role = Literal["edge", "cloud"]
Version = Annotated[str, MaxLen(16)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Base of every wire message."""

    TYPE: ClassVar[str] = ""
    SEQUENCED: ClassVar[bool] = False  # carries a session sequence number (``seq``)
    RESEND: ClassVar[bool] = False  # kept until acknowledged and resent after a resume

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Capabilities:
    """What a peer can play or produce: sample rates in Hz and audio codecs."""

    sample_rates: Annotated[tuple[Annotated[int, Range(8000, 192000)], ...], MaxLen(16)] = (
        16000,
        22050,
        24000,
        48000,
    )
    codecs: Annotated[tuple[Codec, ...], MaxLen(4)] = ("pcm16",)

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello(Message):
    """First message each way on a new link. The edge sends it with empty ``session_id`` to
    start a conversation, or with the cloud-issued ``session_id`` + ``resume_token`` to resume
    one; ``last_seq_seen`` is the highest sequence number this side received from the peer."""

    TYPE: ClassVar[str] = "hello"
    protocol_version: Version = PROTOCOL_VERSION
    role: Role
    session_id: Token = ""
    resume_token: Token = ""
    capabilities: Capabilities = field(default_factory=Capabilities)
    last_seq_seen: U63 = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class WordTiming:
    """One recognised word and where it lies in the turn's audio, in seconds."""

    word: Annotated[str, MaxLen(64)]
    start_s: Seconds
    end_s: Seconds

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Prosody:
    """How the turn was said; ``None`` where the edge could not measure it."""

    f0_mean_hz: Hertz | None = None
    f0_range_hz: Hertz | None = None
    f0_final_slope_hz_per_s: Annotated[float, Range(-1e5, 1e5)] | None = None
    energy_db: Annotated[float, Range(-200.0, 200.0)] | None = None
    speaking_rate_wps: Annotated[float, Range(0.0, 100.0)] | None = None
    pause_before_ms: Millis | None = None

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptPartial(Message):
    """An interim hypothesis of the user's words; superseded by the next one, never resent."""

    TYPE: ClassVar[str] = "transcript.partial"
    SEQUENCED: ClassVar[bool] = True
    turn_id: U32
    seq: U63 = 0
    text: Text
    stability: Fraction = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptFinal(Message):
    """The user's finished turn, with word timings when known and how it was said."""

    TYPE: ClassVar[str] = "transcript.final"
    SEQUENCED: ClassVar[bool] = True
    RESEND: ClassVar[bool] = True
    turn_id: U32
    seq: U63 = 0
    text: Text
    words: Annotated[tuple[WordTiming, ...], MaxLen(256)] = ()
    prosody: Prosody = field(default_factory=Prosody)
    eou_confidence: Fraction = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseText(Message):
    """A piece of the reply text, in order; ``final`` marks the last piece of the turn.

    ``sample_offset`` is where this text's speech begins in the turn's reply audio (samples
    at the ``tts.start`` rate), so the edge can tell which words the user actually heard."""

    TYPE: ClassVar[str] = "response.text"
    SEQUENCED: ClassVar[bool] = True
    RESEND: ClassVar[bool] = True
    turn_id: U32
    seq: U63 = 0
    delta: Text
    final: bool = False
    sample_offset: U63 = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class TtsStart(Message):
    """Reply audio for ``turn_id`` begins, in this codec and sample rate."""

    TYPE: ClassVar[str] = "tts.start"
    SEQUENCED: ClassVar[bool] = True
    RESEND: ClassVar[bool] = True
    turn_id: U32
    seq: U63 = 0
    codec: Codec = "pcm16"
    sample_rate: Annotated[int, Range(8000, 192000)]


@dataclass(frozen=True, slots=True, kw_only=True)
class TtsChunk(Message):
    """A piece of reply audio, binary on the wire. ``sample_offset`` counts samples from the
    start of the turn's audio; ``payload`` is little-endian PCM16 mono or one Opus packet."""

    TYPE: ClassVar[str] = "tts.chunk"
    SEQUENCED: ClassVar[bool] = True
    RESEND: ClassVar[bool] = True
    turn_id: U32
    seq: U63 = 0
    chunk_index: U32
    codec: Codec = "pcm16"
    sample_rate: Annotated[int, Range(8000, 192000)]
    sample_offset: U63
    payload: Annotated[bytes, MaxLen(MAX_MESSAGE_BYTES - 32)]


@dataclass(frozen=True, slots=True, kw_only=True)
class TtsEnd(Message):
    """Reply audio for ``turn_id`` is complete: ``total_samples`` were sent."""

    TYPE: ClassVar[str] = "tts.end"
    SEQUENCED: ClassVar[bool] = True
    RESEND: ClassVar[bool] = True
    turn_id: U32
    seq: U63 = 0
    total_samples: U63


@dataclass(frozen=True, slots=True, kw_only=True)
class BargeIn(Message):
    """The user spoke over the reply: how much of it was played and which words were heard."""

    TYPE: ClassVar[str] = "barge_in"
    SEQUENCED: ClassVar[bool] = True
    RESEND: ClassVar[bool] = True
    turn_id: U32
    seq: U63 = 0
    samples_played: U63
    heard_text: Text = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel(Message):
    """Abandon ``turn_id`` (either side): stop producing or playing it."""

    TYPE: ClassVar[str] = "cancel"
    SEQUENCED: ClassVar[bool] = True
    RESEND: ClassVar[bool] = True
    turn_id: U32
    seq: U63 = 0
    reason: Annotated[str, MaxLen(256)] = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack(Message):
    """Everything up to and including ``last_seq`` was received and consumed."""

    TYPE: ClassVar[str] = "ack"
    last_seq: U63


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(Message):
    """Heartbeat; ``t0`` is the sender's clock (seconds) when it was sent."""

    TYPE: ClassVar[str] = "ping"
    ping_id: U32
    t0: Timestamp


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong(Message):
    """Answer to a ping: ``t0`` echoed, ``t1`` receive and ``t2`` send time on the answerer's
    clock. RTT = (t3 - t0) - (t2 - t1); clock offset = ((t1 - t0) + (t2 - t3)) / 2."""

    TYPE: ClassVar[str] = "pong"
    ping_id: U32
    t0: Timestamp
    t1: Timestamp
    t2: Timestamp


@dataclass(frozen=True, slots=True, kw_only=True)
class Metrics(Message):
    """Per-stage timings of a turn, stage name -> milliseconds."""

    TYPE: ClassVar[str] = "metrics"
    SEQUENCED: ClassVar[bool] = True
    turn_id: U32
    seq: U63 = 0
    stages_ms: Annotated[dict[Name, Millis], MaxLen(64)] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Error(Message):
    """Something went wrong; ``fatal`` errors are followed by a close of the link."""

    TYPE: ClassVar[str] = "error"
    code: Name
    message: Annotated[str, MaxLen(1024)] = ""
    fatal: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Unknown(Message):
    """What ``decode`` returns for a message type it does not know (a newer MINOR version):
    receivers skip it. It cannot be encoded."""

    TYPE: ClassVar[str] = "unknown"
    type_name: Name


MESSAGE_TYPES: tuple[type[Message], ...] = (
    Hello,
    TranscriptPartial,
    TranscriptFinal,
    ResponseText,
    TtsStart,
    TtsChunk,
    TtsEnd,
    BargeIn,
    Cancel,
    Ack,
    Ping,
    Pong,
    Metrics,
    Error,
)
"""Every encodable message class (``Unknown`` is decode-only)."""
