"""Opening a link: the edge POSTs its SDP offer over HTTP(S); the cloud answers it.

Request ``POST {cloud_url}/v1/sessions`` with ``Authorization: Bearer <token>`` and the JSON body
``{"type": "offer", "sdp": "...", "session_id": "..."}`` (``session_id`` empty for a new
conversation; a gateway may use it to route a resume to the process that holds the session).
Response ``200`` with ``{"type": "answer", "sdp": "..."}``; 401/403 when the token is refused.
aiortc gathers every ICE candidate before the offer/answer is produced, so one round trip suffices.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from shared.errors import NetworkError
from shared.link.config import LinkClosedError, LinkConfig, OfferRejectedError
from shared.link.link import Link
from shared.protocol import Capabilities, Phase, RemoteProtocolError, Session, SessionStore

OFFER_PATH = "/v1/sessions"
CHANNEL_LABEL = "parley"
MAX_SDP_CHARS = 65536


@dataclass(frozen=True, slots=True)
class OfferRequest:
    """The body of an offer POST, validated."""

    sdp: str
    session_id: str = ""


def parse_offer(body: Any) -> OfferRequest:
    """Validate a decoded JSON offer body; raises RemoteProtocolError (answer HTTP 400)."""
    if not isinstance(body, Mapping) or body.get("type") != "offer":
        raise RemoteProtocolError('an offer body is {"type": "offer", "sdp": ...}')
    sdp, session_id = body.get("sdp"), body.get("session_id", "")
    if not isinstance(sdp, str) or not 0 < len(sdp) <= MAX_SDP_CHARS:
        raise RemoteProtocolError("the offer's sdp is missing or too long")
    if not isinstance(session_id, str) or len(session_id) > 128:
        raise RemoteProtocolError("the offer's session_id is not a short string")
    return OfferRequest(sdp=sdp, session_id=session_id)


def answer_body(sdp: str) -> dict[str, str]:
    """The JSON body of the answer response."""
    return {"type": "answer", "sdp": sdp}


def rtc_configuration(config: LinkConfig) -> RTCConfiguration:
    """aiortc's configuration; with no ICE servers configured, none is contacted."""
    servers = [
        RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
        for s in config.ice_servers
    ]
    return RTCConfiguration(iceServers=servers)


async def answer_offer(
    offer_sdp: str, store: SessionStore, config: LinkConfig | None = None
) -> tuple[str, Link]:
    """Cloud side: the answer SDP for an edge's offer, and the link that will carry the session.

    The session is known once the edge's hello arrives on the link (new or resumed from
    ``store``). Run ``await link.wait_open()`` afterwards: it raises (and closes the peer
    connection) when the edge never completes the handshake.
    """
    if "\nm=application " not in offer_sdp.replace("\r\n", "\n"):
        raise OfferRejectedError("the SDP offer has no data channel (m=application) section")
    config = config or LinkConfig()
    pc = RTCPeerConnection(rtc_configuration(config))
    link = Link(pc, config, store=store)
    pc.on("datachannel", link.attach)
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as exc:  # aiortc's SDP parser raises anything (AssertionError too)
        await pc.close()
        raise OfferRejectedError(f"malformed SDP offer ({type(exc).__name__})") from exc
    return pc.localDescription.sdp, link


Signal = Callable[[str, str], Awaitable[str]]
"""``(offer_sdp, session_id) -> answer_sdp``: how an edge's offer reaches the cloud."""


async def open_link(
    signal: Signal,
    *,
    session: Session | None = None,
    capabilities: Capabilities | None = None,
    config: LinkConfig | None = None,
) -> Link:
    """Edge side: create the peer connection and its data channel, exchange SDP through
    ``signal`` and complete the hello handshake. :func:`connect` is this over HTTP(S).

    Pass the ``session`` of a previous link to resume that conversation (what the cloud never
    received is resent); omit it to start a new one (``link.session`` is then the new session:
    keep it for later resumes). Raises NetworkError (OfferRejectedError, PeerLostError...).
    """
    config = config or LinkConfig()
    session = session or Session("edge", capabilities=capabilities)
    if session.phase is Phase.CLOSED:
        raise LinkClosedError("this session was closed; start a new one")
    if session.phase is not Phase.DISCONNECTED:
        session.link_lost()  # the session's current link is superseded by this one
    pc = RTCPeerConnection(rtc_configuration(config))
    link = Link(pc, config, session=session)
    try:
        link.attach(pc.createDataChannel(CHANNEL_LABEL, ordered=True))
        await pc.setLocalDescription(await pc.createOffer())
        answer = await signal(pc.localDescription.sdp, session.session_id)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        except Exception as exc:  # aiortc's SDP parser raises anything (AssertionError too)
            raise OfferRejectedError(f"malformed SDP answer ({type(exc).__name__})") from exc
        await link.wait_open()
    except BaseException:
        await link.close()
        raise
    return link


async def connect(
    cloud_url: str,
    token: str,
    *,
    session: Session | None = None,
    capabilities: Capabilities | None = None,
    config: LinkConfig | None = None,
    http: httpx.AsyncClient | None = None,
) -> Link:
    """Edge side: open a link to ``cloud_url`` (POST {cloud_url}/v1/sessions with the bearer
    ``token``); see :func:`open_link` for ``session`` (resume) and the errors raised."""
    config = config or LinkConfig()
    timeout_s = config.open_timeout_s

    async def over_http(offer_sdp: str, session_id: str) -> str:
        offer = {"type": "offer", "sdp": offer_sdp, "session_id": session_id}
        return await _post_offer(cloud_url, token, offer, http, timeout_s)

    return await open_link(over_http, session=session, capabilities=capabilities, config=config)


async def _post_offer(
    cloud_url: str,
    token: str,
    offer: dict[str, str],
    http: httpx.AsyncClient | None,
    timeout_s: float,
) -> str:
    url = cloud_url.rstrip("/") + OFFER_PATH
    headers = {"Authorization": f"Bearer {token}"}
    try:
        if http is None:
            async with httpx.AsyncClient(timeout=timeout_s) as client:
                response = await client.post(url, json=offer, headers=headers)
        else:
            response = await http.post(url, json=offer, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise NetworkError(f"cannot reach the cloud at {url}: {exc or type(exc).__name__}") from exc
    return _answer_sdp(response)


def _answer_sdp(response: httpx.Response) -> str:
    if response.status_code in (401, 403):
        raise OfferRejectedError(f"the cloud refused the token (HTTP {response.status_code})")
    if response.status_code != 200:
        detail = " ".join(response.text.split())[:200]
        raise OfferRejectedError(
            f"the cloud refused the offer: HTTP {response.status_code} {detail}"
        )
    try:
        body = response.json()
    except ValueError as exc:
        raise OfferRejectedError("the cloud's answer is not JSON") from exc
    if not isinstance(body, dict) or body.get("type") != "answer":
        raise OfferRejectedError("the cloud's answer lacks type 'answer'")
    sdp = body.get("sdp")
    if not isinstance(sdp, str) or not sdp:
        raise OfferRejectedError("the cloud's answer lacks an sdp")
    return sdp
