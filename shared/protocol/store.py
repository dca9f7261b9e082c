"""The cloud's table of live conversations: start a new session or resume one from a hello."""

from __future__ import annotations

import hmac
import secrets
import uuid

from shared.protocol.errors import LocalProtocolError, RemoteProtocolError, ResumeRefusedError
from shared.protocol.messages import Capabilities, Hello
from shared.protocol.phases import Phase
from shared.protocol.session import Session, check_version


class SessionStore:
    """Cloud-side sessions by id. ``accept`` turns an edge hello into the session to use.

    Sessions stay until ``forget``; the caller (the gateway) decides when an idle or closed
    conversation expires. The store lives in one process: a resume must reach the process (Ray
    replica) that holds the session.
    """

    def __init__(self, capabilities: Capabilities | None = None) -> None:
        self._capabilities = capabilities or Capabilities()
        self._sessions: dict[str, Session] = {}

    def accept(self, hello: Hello) -> Session:
        """A new session for an empty ``session_id``, else the one named, if the token matches.

        Raises VersionMismatchError, ResumeRefusedError or RemoteProtocolError. A session that
        still had a link is detached from it (``link_lost``): the new link supersedes it.
        """
        check_version(hello.protocol_version)
        if hello.role != "edge":
            raise RemoteProtocolError("only an edge may open a session")
        if not hello.session_id:
            return self._create()
        session = self._sessions.get(hello.session_id)
        if session is None or not hmac.compare_digest(
            session.resume_token.encode(), hello.resume_token.encode()
        ):
            raise ResumeRefusedError(f"cannot resume session {hello.session_id!r}")
        if session.phase is Phase.CLOSED:
            raise ResumeRefusedError(f"session {hello.session_id!r} was closed")
        if session.phase is not Phase.DISCONNECTED:
            session.link_lost()
        return session

    def _create(self) -> Session:
        session = Session(
            "cloud",
            session_id=uuid.uuid4().hex,
            resume_token=secrets.token_urlsafe(32),
            capabilities=self._capabilities,
        )
        self._sessions[session.session_id] = session
        return session

    def adopt(self, session: Session) -> None:
        """Host ``session`` (e.g. one revived from saved state) so its edge can resume it."""
        if session.role != "cloud" or not session.session_id:
            raise LocalProtocolError("only a cloud session with an id can be adopted")
        self._sessions[session.session_id] = session

    def get(self, session_id: str) -> Session | None:
        """The session with this id, if any."""
        return self._sessions.get(session_id)

    def forget(self, session_id: str) -> None:
        """Drop a session; a later resume of it is refused."""
        self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)
