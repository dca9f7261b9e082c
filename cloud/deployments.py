"""The Ray Serve deployments of the cloud tier (the only module that imports ray).

* ``LanguageModelDeployment`` — a ``ReplyService`` over the sequences of one llama.cpp
  context (stepped together in batches); streams *clauses* (never tokens) of each reply.
  Requests carry the session id as Serve's multiplexed model id, so with several replicas a
  session keeps going to the replica holding its cache.
* ``SpeechDeployment`` — a ``SpeechService`` over the piper voice; one clause per call.
* ``GatewayDeployment`` — the FastAPI ingress; hosts the sessions' aiortc peer connections and
  conversations, and reaches the two model deployments through handles.
* ``SessionVault`` — a named, detached actor holding each session's context and resume state,
  so a restarted (or another) gateway replica resumes a session with its context.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from typing import Any, cast

import ray
from ray import serve
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from cloud.config import CloudSettings
from cloud.conversation.ports import (
    ContextStore,
    ReplyEvent,
    ReplyRequest,
    ReplySource,
    SpeechAudio,
    SpeechRequest,
    SpeechSource,
)
from cloud.engines.llm import ChatMessage

log = logging.getLogger(__name__)

# The model replicas run their compute on a worker thread next to the replica's event loop.
# Each call into llama.cpp / onnxruntime releases the GIL; getting it back waits up to one
# switch interval (5 ms by default) whenever the event loop is busy: with a batch of several
# tokens (several calls per step) that doubled a step's time. 1 ms keeps the wait short.
MODEL_REPLICA_SWITCH_INTERVAL_S = 0.001

VAULT_NAME = "parley_session_vault"
WARM_UP_SESSION = "parley-warm-up"
VAULT_NAMESPACE = "parley"


def _settings(values: dict[str, Any]) -> CloudSettings:
    return CloudSettings(**values)


@serve.deployment(max_ongoing_requests=128, ray_actor_options={"num_cpus": 1})
class LanguageModelDeployment:
    """Clause streams from a session-sticky pool of llama.cpp instances."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from cloud.engines.llama import LlamaEngine
        from cloud.engines.reply import ReplyService

        s = _settings(settings)
        sys.setswitchinterval(MODEL_REPLICA_SWITCH_INTERVAL_S)
        self.engine = LlamaEngine(s.llm_model_path, sequences=s.llm_instances + s.llm_spares,
                                  n_ctx=s.llm_context_tokens, n_threads=s.llm_threads)
        self.service = ReplyService(self.engine.models, spares=s.llm_spares,
                                    burst_threads=s.llm_burst_threads,
                                    rest_after_first_clause_s=s.llm_rest_after_first_clause_ms
                                    / 1000.0)
        # Every session's prompt starts with the system prompt and the opening of a user
        # message (the empty content and its end marker are not reused).
        self.service.warm_up([ChatMessage("system", s.system_prompt), ChatMessage("user", "")])

    @serve.multiplexed(max_num_models_per_replica=64)
    async def _session_slot(self, session_id: str) -> str:
        return session_id  # registers the session with this replica (routing affinity)

    async def reply(self, request: ReplyRequest) -> AsyncIterator[ReplyEvent]:
        await self._session_slot(serve.get_multiplexed_model_id() or request.session_id)
        async for event in self.service.reply(request):
            yield event

    async def summarize(self, session_id: str, messages: tuple[ChatMessage, ...],
                        max_tokens: int) -> str:
        return await self.service.summarize(session_id, messages, max_tokens)

    async def warm(self, session_id: str, messages: tuple[ChatMessage, ...],
                   version: int) -> None:
        await self.service.warm(session_id, messages, version)

    async def prefill(self, session_id: str, messages: tuple[ChatMessage, ...],
                      version: int) -> None:
        await self.service.prefill(session_id, messages, version)

    async def end_session(self, session_id: str) -> None:
        """Free the session's model instance for other sessions."""
        self.service.end_session(session_id)

    def __del__(self) -> None:
        # __init__ may have stopped part-way. The llama.cpp context is freed only once the
        # worker thread has left its last step (it may still be inside llama_decode).
        service = getattr(self, "service", None)
        if service is not None and not service.close():
            log.warning("the reply worker is still in a step; its llama.cpp context stays open")
            return
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()


@serve.deployment(max_ongoing_requests=128, ray_actor_options={"num_cpus": 1})
class SpeechDeployment:
    """Clause -> PCM16 at the edge's rate, first clauses of a turn first."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from cloud.engines.speech import SpeechService
        from cloud.engines.tts import PiperSynthesizer
        from cloud.engines.worker import split_lanes

        s = _settings(settings)
        sys.setswitchinterval(MODEL_REPLICA_SWITCH_INTERVAL_S)
        lanes = split_lanes(s.priority_lanes)
        voices = [PiperSynthesizer.from_registry(s.tts_voice, num_threads=s.tts_threads)
                  for _ in lanes]
        self.service = SpeechService(voices, lanes=lanes)
        self.service.warm_up()

    async def ready(self) -> bool:
        """A no-op: a caller's first request sets up its route to this replica."""
        return True

    async def speak(self, request: SpeechRequest) -> SpeechAudio:
        return await self.service.speak(request)

    def __del__(self) -> None:
        service = getattr(self, "service", None)  # None when __init__ stopped part-way
        if service is not None:
            service.close()


@ray.remote(num_cpus=0)
class SessionVault:
    """Session id -> saved state (context snapshot + resume state), bounded in size."""

    def __init__(self, max_sessions: int = 10_000) -> None:
        self._states: dict[str, dict[str, Any]] = {}
        self._max = max_sessions

    def save(self, session_id: str, state: dict[str, Any]) -> None:
        self._states.pop(session_id, None)
        self._states[session_id] = state
        while len(self._states) > self._max:
            del self._states[next(iter(self._states))]  # the least recently saved

    def load(self, session_id: str) -> dict[str, Any] | None:
        return self._states.get(session_id)

    def forget(self, session_id: str) -> None:
        self._states.pop(session_id, None)

    def count(self) -> int:
        return len(self._states)


def session_vault() -> Any:
    """The cluster's one vault actor (created on first use, outlives gateway replicas)."""
    return _decorated(SessionVault).options(name=VAULT_NAME, namespace=VAULT_NAMESPACE,
                                            lifetime="detached", get_if_exists=True).remote()


class VaultContextStore(ContextStore):
    def __init__(self, vault: Any) -> None:
        self._vault = vault

    async def save(self, session_id: str, state: dict[str, Any]) -> None:
        await self._vault.save.remote(session_id, state)

    async def load(self, session_id: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self._vault.load.remote(session_id)
        return result

    async def forget(self, session_id: str) -> None:
        await self._vault.forget.remote(session_id)


class HandleReplySource(ReplySource):
    """The language model deployment seen through a Serve handle."""

    def __init__(self, handle: DeploymentHandle[Any]) -> None:
        self._handle = handle

    async def reply(self, request: ReplyRequest) -> AsyncIterator[ReplyEvent]:
        stream = cast("DeploymentResponseGenerator[ReplyEvent]", self._handle.options(
            stream=True, multiplexed_model_id=request.session_id).reply.remote(request))
        try:
            async for event in stream:
                yield event
        finally:
            stream.cancel()  # reaches the replica: the generation stops before its next step

    async def summarize(self, session_id: str, messages: tuple[ChatMessage, ...],
                        max_tokens: int) -> str:
        result: str = await self._handle.summarize.remote(session_id, messages, max_tokens)
        return result

    async def warm(self, session_id: str, messages: tuple[ChatMessage, ...],
                   version: int) -> None:
        response = self._handle.options(multiplexed_model_id=session_id).warm.remote(
            session_id, messages, version)
        try:
            await response
        finally:
            response.cancel()

    async def prefill(self, session_id: str, messages: tuple[ChatMessage, ...],
                      version: int) -> None:
        response = self._handle.options(multiplexed_model_id=session_id).prefill.remote(
            session_id, messages, version)
        try:
            await response
        finally:
            response.cancel()

    async def end_session(self, session_id: str) -> None:
        """Free the session's model instance (on the replica holding it)."""
        await self._handle.options(multiplexed_model_id=session_id).end_session.remote(
            session_id)


class HandleSpeechSource(SpeechSource):
    """The speech deployment seen through a Serve handle."""

    def __init__(self, handle: DeploymentHandle[Any]) -> None:
        self._handle = handle

    async def speak(self, request: SpeechRequest) -> SpeechAudio:
        response = self._handle.speak.remote(request)
        try:
            result: SpeechAudio = await response
            return result
        finally:
            response.cancel()


@serve.deployment(max_ongoing_requests=256, ray_actor_options={"num_cpus": 0})
@serve.ingress()
class GatewayDeployment:
    """FastAPI ingress hosting the WebRTC sessions of this replica."""

    async def __init__(  # type: ignore[misc]
            self, llm: DeploymentHandle[Any], tts: DeploymentHandle[Any],
            settings: dict[str, Any]) -> None:
        # (Serve awaits an async constructor; the replica is ready once it returns.)
        from cloud.app import conversation_settings
        from cloud.gateway import GatewayMetrics, GatewayPolicy
        from cloud.sessions import SessionHub

        s = _settings(settings)
        self.metrics = GatewayMetrics()
        self.policy = GatewayPolicy(secret=s.secret(), max_offer_bytes=s.max_offer_bytes,
                                    offers_per_minute=s.offers_per_minute,
                                    offer_burst=s.offer_burst)
        store = VaultContextStore(session_vault())
        self.hub = SessionHub(HandleReplySource(llm), HandleSpeechSource(tts), store,
                              conversation_settings(s), max_sessions=s.max_sessions,
                              idle_s=s.session_idle_s, on_turn=self.metrics.on_turn,
                              on_error=self.metrics.on_error)
        await _warm_routes(llm, tts, store)

    def __serve_build_asgi_app__(self) -> Any:
        from cloud.gateway import build_gateway_app

        return build_gateway_app(self.hub, self.policy, self.metrics)

    async def __del__(self) -> None:
        # Serve awaits this on shutdown: close the peer connections; the vault keeps the
        # sessions' state, so their edges resume on another replica.
        await self.hub.close()


async def _warm_routes(llm: DeploymentHandle[Any], tts: DeploymentHandle[Any],
                       store: VaultContextStore) -> None:
    """The first call through a handle (or to the vault) sets up its route and connection,
    tens of milliseconds that would otherwise land on the first user's first turn. Best
    effort: when it fails, the gateway serves all the same (its first turn pays for it)."""
    import aiortc  # noqa: F401 - imported now rather than at the first session's offer

    try:
        await store.load(WARM_UP_SESSION)
        await tts.ready.remote()
        await _warm_reply_route(HandleReplySource(llm))
    except Exception as exc:
        log.warning("warming the gateway's routes failed (the first turn pays): %s", exc)


async def _warm_reply_route(replies: HandleReplySource) -> None:
    """A one-token reply takes the streaming, session-routed path a turn takes; its session
    then ends, so it holds no model instance."""
    request = ReplyRequest(WARM_UP_SESSION, 0, (ChatMessage("user", "Hi"),), max_tokens=1)
    try:
        async for _ in replies.reply(request):
            pass
    finally:
        await replies.end_session(WARM_UP_SESSION)


def deployment_options(s: CloudSettings) -> dict[str, dict[str, Any]]:
    """Replica counts, autoscaling and CPU reservations from the settings."""
    def scaling(replicas: int, max_replicas: int) -> dict[str, Any]:
        if max_replicas > replicas:
            return {"autoscaling_config": {"min_replicas": replicas,
                                           "max_replicas": max_replicas,
                                           "target_ongoing_requests": 4}}
        return {"num_replicas": replicas}

    return {
        "llm": {**scaling(s.llm_replicas, s.llm_max_replicas),
                "ray_actor_options": {"num_cpus": s.llm_threads}},
        "tts": {**scaling(s.tts_replicas, s.tts_max_replicas),
                "ray_actor_options": {"num_cpus": s.tts_threads}},
        "gateway": {"num_replicas": s.gateway_replicas},
    }


def bind_app(s: CloudSettings) -> Any:
    """The bound Serve application (gateway -> llm, tts)."""
    values = s.model_dump()
    options = deployment_options(s)
    llm = _decorated(LanguageModelDeployment).options(**options["llm"]).bind(values)
    tts = _decorated(SpeechDeployment).options(**options["tts"]).bind(values)
    return _decorated(GatewayDeployment).options(**options["gateway"]).bind(llm, tts, values)


def _decorated(cls: type) -> Any:
    """What Ray's class decorator (``@serve.deployment``, ``@ray.remote``) made of ``cls``;
    mypy keeps the class type through a class decorator."""
    return cls


def start_ray(num_cpus: int) -> None:
    """A local Ray instance for the embedded tier (dashboard off, quiet: Serve's progress
    messages only when something goes wrong)."""
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    if not ray.is_initialized():
        ray.init(num_cpus=num_cpus, include_dashboard=False, namespace=VAULT_NAMESPACE,
                 log_to_driver=False, configure_logging=False)


def run_app(s: CloudSettings, app_name: str = "parley") -> None:
    """Start Serve's HTTP proxy on ``s.host:s.port`` and deploy the application."""
    serve.start(http_options={"host": s.host, "port": s.port})
    serve.run(bind_app(s), name=app_name, route_prefix="/", blocking=False)


def stop() -> None:
    """Shut Serve and Ray down (idempotent)."""
    if ray.is_initialized():
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
