"""Settings of the cloud tier: environment ``PARLEY_*`` over a TOML file over the defaults.

``parley cloud serve --config cloud.toml`` reads a flat TOML table whose keys are the field
names below (``port = 8000``, ``llm_instances = 4``...); any field can be overridden by the
environment variable ``PARLEY_<FIELD>`` (``PARLEY_TOKEN_SECRET``, ``PARLEY_PORT``...).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from cloud.conversation.context import DEFAULT_SYSTEM_PROMPT, ContextPolicy
from shared.errors import ConfigError

DEFAULT_SECRET_FILE = Path("~/.config/parley/token_secret")


class CloudSettings(BaseSettings):
    """Every knob of the cloud tier."""

    model_config = SettingsConfigDict(env_prefix="PARLEY_", extra="forbid", frozen=True)

    # network
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # auth
    token_secret: SecretStr | None = None
    token_secret_file: Path = DEFAULT_SECRET_FILE
    token_ttl_s: int = Field(24 * 3600, gt=0)
    offers_per_minute: float = Field(30.0, gt=0)  # per device
    offer_burst: int = Field(10, ge=1)
    max_offer_bytes: int = Field(32 * 1024, ge=1024)
    max_sessions: int = Field(64, ge=1)  # per gateway replica
    # models
    llm_model_path: Path | None = None  # a GGUF; default: the registry's llm model
    llm_instances: int = Field(4, ge=1)  # session-sticky llama.cpp instances per replica
    llm_spares: int = Field(2, ge=1)  # extra instances for summaries / preparing prefixes
    llm_threads: int = Field(1, ge=1)
    # Threads for the steps of replies while other processes leave CPU cores idle (1: never
    # more than llm_threads). On an idle core two threads make a first clause ~1.7x faster,
    # but on 2 cores with 4 sessions they took the CPU from speech synthesis: first-audio p95
    # over 4 sessions was 2.75x the single-session p50 with 2 (4 runs), 2.35x with 1 (5 runs).
    llm_burst_threads: int = Field(1, ge=1)
    # A reply's generation rests this long after its first clause, leaving the CPU to that
    # clause's synthesis (0: never); see ReplyService.
    llm_rest_after_first_clause_ms: float = Field(100.0, ge=0.0, le=1000.0)
    llm_context_tokens: int = Field(1024, ge=256)
    tts_voice: str | None = None  # a registry tts model name; default: the registry's
    tts_threads: int = Field(1, ge=1)
    # First clauses on their own speech thread (and voice), later clauses on one of lower OS
    # priority, so a new turn takes the CPU from other sessions' later clauses.
    priority_lanes: bool = False
    # conversation
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_reply_tokens: int = Field(36, ge=4)
    max_reply_sentences: int = Field(2, ge=1)
    keep_recent_turns: int = Field(3, ge=1)
    fold_after_turns: int = Field(4, ge=2)
    max_prompt_tokens: int = Field(600, ge=64)
    chunk_ms: int = Field(80, ge=10, le=500)
    # "stream": speak each clause as soon as it is written; "naive": the whole reply, then one
    # synthesis of all of it (the baseline `parley bench e2e` compares against).
    reply_mode: Literal["stream", "naive"] = "stream"
    session_idle_s: float = Field(600.0, gt=0)  # a disconnected session is forgotten after
    # Ray Serve
    ray_num_cpus: int | None = None
    llm_replicas: int = Field(1, ge=1)
    tts_replicas: int = Field(1, ge=1)
    gateway_replicas: int = Field(1, ge=1)
    llm_max_replicas: int = Field(1, ge=1)  # > llm_replicas enables autoscaling
    tts_max_replicas: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _context_holds_a_prompt_and_its_reply(self) -> CloudSettings:
        """A model instance's context holds the largest prompt plus the longest generation
        (a reply or a summary); otherwise those prompts would be refused at run time."""
        generation = max(self.max_reply_tokens, ContextPolicy().summary_max_tokens)
        needed = self.max_prompt_tokens + generation
        if self.llm_context_tokens < needed:
            raise PydanticCustomError(
                "context_too_small",
                "llm_context_tokens={context} cannot hold max_prompt_tokens={prompt} plus "
                "{generation} generated tokens; raise it to at least {needed}",
                {"context": self.llm_context_tokens, "prompt": self.max_prompt_tokens,
                 "generation": generation, "needed": needed})
        return self

    def secret(self) -> bytes:
        """The token signing secret: configured, else the secret file (created 0600)."""
        if self.token_secret is not None:
            value = self.token_secret.get_secret_value().encode()
            if len(value) < 16:
                raise ConfigError("PARLEY_TOKEN_SECRET must be at least 16 characters")
            return value
        return _secret_from_file(self.token_secret_file.expanduser())

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = settings_cls.model_config.get("toml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


def load_settings(path: str | Path | None = None, **overrides: Any) -> CloudSettings:
    """Settings from ``path`` (TOML), the environment and ``overrides`` (strongest first:
    overrides, environment, file, defaults); ``ConfigError`` with one line on a bad value."""
    cls: type[CloudSettings] = CloudSettings
    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise ConfigError(f"no such config file: {file}")
        config = SettingsConfigDict(**{**CloudSettings.model_config, "toml_file": file})
        cls = type("FileCloudSettings", (CloudSettings,), {"model_config": config})
    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        what = f"setting {where}" if where else "settings"
        raise ConfigError(f"invalid cloud {what}: {first['msg']}") from exc
    except ValueError as exc:  # a malformed TOML file
        raise ConfigError(f"cannot read the config file {path}: {exc}") from exc


def _secret_from_file(path: Path) -> bytes:
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
    value = path.read_text(encoding="utf-8").strip().encode()
    if len(value) < 16:
        raise ConfigError(f"the token secret in {path} is shorter than 16 characters")
    return value
