"""The phases of a session, and the table of which event is legal in which phase."""

from __future__ import annotations

import enum

from shared.protocol.messages import Role


class Phase(enum.Enum):
    """Where a session stands with respect to its current link."""

    DISCONNECTED = "disconnected"  # no link: before the first one, or after one was lost
    HELLO_SENT = "hello_sent"  # edge: our hello is out, waiting for the cloud's
    AWAIT_HELLO = "await_hello"  # cloud: a link is up, waiting for the edge's hello
    OPEN = "open"
    CLOSED = "closed"  # terminal: closed on purpose or after a fatal error


class Trigger(enum.Enum):
    """The events that move a session between phases."""

    CONNECT = "connect"
    RECV_HELLO = "recv_hello"
    RECV_DATA = "recv_data"  # a sequenced message or an ack
    RECV_CONTROL = "recv_control"  # ping, pong, error, unknown
    SEND = "send"
    QUEUE = "queue"  # a RESEND message while not open: kept and sent after the handshake
    HEARTBEAT = "heartbeat"
    LINK_LOST = "link_lost"
    CLOSE = "close"


_D, _HS, _AH, _O, _C = Phase
_T = Trigger
TRANSITIONS: dict[tuple[Role, Phase, Trigger], Phase] = {
    ("edge", _D, _T.CONNECT): _HS,
    ("cloud", _D, _T.CONNECT): _AH,
    ("edge", _HS, _T.RECV_HELLO): _O,
    ("cloud", _AH, _T.RECV_HELLO): _O,
    **{(r, _O, t): _O for r in ("edge", "cloud") for t in (_T.RECV_DATA, _T.SEND)},
    **{
        (r, p, t): p
        for r in ("edge", "cloud")
        for p in (_HS, _AH, _O)
        for t in (_T.RECV_CONTROL, _T.HEARTBEAT)
    },
    **{(r, p, _T.QUEUE): p for r in ("edge", "cloud") for p in (_D, _HS, _AH)},
    **{(r, p, _T.LINK_LOST): _D for r in ("edge", "cloud") for p in (_D, _HS, _AH, _O)},
    **{(r, p, _T.CLOSE): _C for r in ("edge", "cloud") for p in Phase},
}
"""(role, phase, trigger) -> next phase. A missing key is an illegal event."""
