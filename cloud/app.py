"""Builds the cloud tier's Ray Serve application from the settings.

``serve deploy cloud/serve_config.yaml`` uses ``cloud.app:build_app`` as its import path: the
YAML's ``args`` are setting overrides (plus ``config``: a TOML settings file), environment
variables ``PARLEY_*`` apply too. ``parley cloud serve`` builds the same application.
"""

from __future__ import annotations

from typing import Any

from cloud.config import CloudSettings, load_settings
from cloud.conversation.clauses import ClausePolicy
from cloud.conversation.context import ContextPolicy
from cloud.conversation.prosody import ProsodyPolicy
from cloud.conversation.session import ConversationSettings


def conversation_settings(s: CloudSettings) -> ConversationSettings:
    """The conversation policies a gateway replica applies."""
    return ConversationSettings(
        context=ContextPolicy(system_prompt=s.system_prompt, keep_recent=s.keep_recent_turns,
                              fold_after=s.fold_after_turns,
                              max_prompt_tokens=s.max_prompt_tokens),
        prosody=ProsodyPolicy(max_sentences=s.max_reply_sentences,
                              max_tokens=s.max_reply_tokens),
        clauses=ClausePolicy(max_sentences=s.max_reply_sentences),
        chunk_ms=s.chunk_ms, reply_mode=s.reply_mode,
    )


def check_models(s: CloudSettings) -> None:
    """Fail fast (one-line ModelNotReadyError) before any replica tries to load a model."""
    from cloud.engines.llm import default_model_path
    from models import registry
    from shared.errors import ModelNotReadyError

    if s.llm_model_path is not None:
        if not s.llm_model_path.is_file():
            raise ModelNotReadyError(f"no GGUF model at {s.llm_model_path}")
    else:
        default_model_path()
    registry.model_files(s.tts_voice or registry.default_spec("tts").name)


def build_app(args: dict[str, Any] | None = None) -> Any:
    """The Serve application (``serve run cloud.app:build_app``); ``args`` override settings."""
    from cloud.deployments import bind_app

    overrides = dict(args or {})
    settings = load_settings(overrides.pop("config", None), **overrides)
    check_models(settings)
    settings.secret()  # the gateway needs it: fail here, in one line, if it is unusable
    return bind_app(settings)
