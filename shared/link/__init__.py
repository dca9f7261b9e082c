"""The aiortc WebRTC link shared by edge and cloud (imports aiortc and httpx).

Edge: ``link = await connect(cloud_url, token)``; cloud: ``sdp, link = await answer_offer(offer,
store)``. Then ``await link.send(msg)`` and ``async for msg in link``. See docs/protocol.md.
"""

from shared.link.config import (
    IceServer,
    LinkClosedError,
    LinkConfig,
    OfferRejectedError,
    PeerError,
    PeerLostError,
    peer_failure,
)
from shared.link.link import Link
from shared.link.signaling import (
    CHANNEL_LABEL,
    OFFER_PATH,
    OfferRequest,
    Signal,
    answer_body,
    answer_offer,
    connect,
    open_link,
    parse_offer,
    rtc_configuration,
)

__all__ = [
    "CHANNEL_LABEL",
    "OFFER_PATH",
    "IceServer",
    "Link",
    "LinkClosedError",
    "LinkConfig",
    "OfferRejectedError",
    "OfferRequest",
    "PeerError",
    "PeerLostError",
    "Signal",
    "answer_body",
    "answer_offer",
    "connect",
    "open_link",
    "parse_offer",
    "peer_failure",
    "rtc_configuration",
]
