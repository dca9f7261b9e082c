"""The wire protocol between edge and cloud: messages, codec and session state (sans-IO).

Nothing here imports asyncio, aiortc or a model runtime; ``shared/link.py`` drives it over
WebRTC. The byte layout and the rules are written down in ``docs/protocol.md``.
"""

from shared.protocol.clock import ClockEstimate, ClockSample
from shared.protocol.codec import decode, encode
from shared.protocol.errors import (
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    ResumeRefusedError,
    VersionMismatchError,
)
from shared.protocol.messages import (
    MAX_MESSAGE_BYTES,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Ack,
    BargeIn,
    Cancel,
    Capabilities,
    Codec,
    Error,
    Hello,
    Message,
    Metrics,
    Ping,
    Pong,
    Prosody,
    ResponseText,
    Role,
    TranscriptFinal,
    TranscriptPartial,
    TtsChunk,
    TtsEnd,
    TtsStart,
    Unknown,
    WordTiming,
)
from shared.protocol.negotiation import choose_audio_format
from shared.protocol.phases import TRANSITIONS, Phase, Trigger
from shared.protocol.session import FLOW_WINDOW_BYTES, ResumeState, Session, Step
from shared.protocol.store import SessionStore

__all__ = [
    "FLOW_WINDOW_BYTES",
    "MAX_MESSAGE_BYTES",
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "TRANSITIONS",
    "Ack",
    "BargeIn",
    "Cancel",
    "Capabilities",
    "ClockEstimate",
    "ClockSample",
    "Codec",
    "Error",
    "Hello",
    "LocalProtocolError",
    "Message",
    "Metrics",
    "Phase",
    "Ping",
    "Pong",
    "Prosody",
    "ProtocolError",
    "RemoteProtocolError",
    "ResponseText",
    "ResumeRefusedError",
    "ResumeState",
    "Role",
    "Session",
    "SessionStore",
    "Step",
    "TranscriptFinal",
    "TranscriptPartial",
    "Trigger",
    "TtsChunk",
    "TtsEnd",
    "TtsStart",
    "Unknown",
    "VersionMismatchError",
    "WordTiming",
    "choose_audio_format",
    "decode",
    "encode",
]
