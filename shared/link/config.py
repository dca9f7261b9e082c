"""Settings and exception types of the WebRTC link (no aiortc import here)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.errors import NetworkError
from shared.protocol import Error, ResumeRefusedError, VersionMismatchError


class LinkClosedError(NetworkError):
    """The link is closed (by us, by the peer, or superseded by a newer link)."""


class PeerLostError(NetworkError):
    """The peer stopped answering heartbeats, or the transport failed."""


class PeerError(NetworkError):
    """The peer sent a fatal ``error`` message and closed the link; ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"the peer closed the link: {code}: {message}")
        self.code = code


class OfferRejectedError(NetworkError):
    """The cloud refused our SDP offer (bad token, overloaded, malformed answer...)."""


@dataclass(frozen=True, slots=True)
class IceServer:
    """A STUN or TURN server, as in RTCIceServer."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """How a link behaves. The defaults suit loopback and a LAN; none needs an ICE server.

    ``ping_interval_s``: heartbeat period. ``dead_after_s``: silence after which the peer is
    declared lost (checked every ``ping_interval_s / 4``, so a vanished peer is noticed within
    ``dead_after_s + ping_interval_s / 4`` of its last word). ``high_water_bytes``: ``send``
    waits while the data channel buffers more than this, until it drains to ``low_water_bytes``.
    ``tolerate_malformed``: on an open session, answer an undecodable frame or a stray hello
    with a non-fatal ``error`` and go on, instead of closing the link (a lenient cloud).
    """

    ice_servers: tuple[IceServer, ...] = ()
    ping_interval_s: float = 1.0
    dead_after_s: float = 2.5
    open_timeout_s: float = 15.0
    close_timeout_s: float = 1.0
    high_water_bytes: int = 256 * 1024
    low_water_bytes: int = 64 * 1024
    tolerate_malformed: bool = False
    clock: Callable[[], float] = field(default=time.monotonic)


_FATAL_CODES: dict[str, type[NetworkError]] = {
    VersionMismatchError.error_code: VersionMismatchError,
    ResumeRefusedError.error_code: ResumeRefusedError,
}


def peer_failure(error: Error) -> NetworkError:
    """The exception that a fatal ``error`` from the peer becomes on this side."""
    known = _FATAL_CODES.get(error.code)
    if known is not None:
        return known(f"the peer closed the link: {error.message}")
    return PeerError(error.code, error.message)
