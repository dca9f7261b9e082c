"""The protocol's exception types: our misuse vs the peer's misbehaviour (as in h11).

Both are ``NetworkError``s, so a caller that only cares "the link is unusable" catches one type.
"""

from __future__ import annotations

from shared.errors import NetworkError


class ProtocolError(NetworkError):
    """The wire protocol was broken; ``decode`` raises nothing else, for any input."""

    #: The ``Error.code`` to send to the peer when this error closes a link.
    error_code = "protocol"


class LocalProtocolError(ProtocolError):
    """This side tried something the protocol forbids (an invalid message, an illegal send)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes or a message sequence that the protocol forbids."""


class VersionMismatchError(RemoteProtocolError):
    """The peer speaks a different MAJOR protocol version; the link must close."""

    error_code = "version"


class ResumeRefusedError(RemoteProtocolError):
    """A resume named an unknown session or a wrong resume token."""

    error_code = "resume_refused"
