"""Edge settings: defaults here, overridden by ``PARLEY_EDGE_*`` environment variables or a
TOML file (``parley edge run --config edge.toml``), then by command-line options."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from edge.vad import QUIET_DB
from shared.errors import ConfigError


class EdgeSettings(BaseSettings):
    """Everything the edge agent can be tuned with (see README, "Tuning the edge")."""

    model_config = SettingsConfigDict(env_prefix="PARLEY_EDGE_", extra="forbid")

    cloud_url: str = "http://127.0.0.1:8000"
    token: str = ""
    # echo cancellation
    aec: Literal["auto", "livekit", "numpy", "off"] = "auto"
    aec_delay_ms: float | None = Field(default=None, ge=0, le=1000)  # known: a starting point
    aec_max_delay_ms: float = Field(default=500.0, ge=50, le=1000)  # the estimator's search
    # Where a live run keeps the learned echo path across restarts (edge/aec/memory.py): a
    # file, "auto" ($XDG_STATE_HOME/parley/echo-path.npz) or "off". Offline runs use only
    # their --echo-memory option, so processing recordings never touches a device's file.
    aec_memory: str = "auto"
    # A live start with no echo path kept yet (the device's first, or after a failed
    # calibration) learns the room first, as `parley edge calibrate` does (6 s of noise
    # through the speaker), so the user talking over the very first reply is heard as after
    # a restart (edge/live.py). Off: the echo is learned from the first reply.
    calibrate_first: bool = True
    # A final over speech from before the canceller settled (talking over the first seconds
    # of far end after a start) is cancelled again with what it learned since, and the VAD
    # looks again there for where the speech began (edge/aec/replay.py): a pass of the
    # canceller over the stretch, in the recognizer's thread.
    aec_replay: bool = True
    # voice activity detection
    vad_threshold: float = Field(default=0.5, gt=0, lt=1)
    vad_min_silence_s: float = Field(default=0.03, ge=0.03, le=2.0)
    vad_min_speech_s: float = Field(default=0.03, ge=0.0, le=1.0)
    # speech also ends when the level stays this many dB under its peak (None: model only)
    vad_quiet_db: float | None = Field(default=QUIET_DB, ge=6.0, le=60.0)
    # speech recognition
    asr_engine: Literal["whisper", "streaming"] = "whisper"
    asr_model: str = ""  # a manifest name; empty = the default of the engine
    asr_threads: int = Field(default=1, ge=1, le=16)  # 2 collapse when the CPU is shared
    partial_interval_s: float = Field(default=1.0, ge=0.0, le=10.0)  # 0 = no partials
    # Decode each pause speculatively as it starts (off: only once the turn has ended, as a
    # naive cascade does; the end-to-end benchmark's baseline).
    speculative_asr: bool = True
    # end of turn
    endpointing: Literal["detector", "timeout"] = "detector"
    timeout_ms: float = Field(default=500.0, ge=50, le=5000)
    continuation_window_s: float = Field(default=1.5, ge=0.0, le=10.0)
    # playback
    prebuffer_ms: float = Field(default=40.0, ge=0, le=1000)
    barge_in: bool = True

    def echo_memory_file(self) -> Path | None:
        """The file :attr:`aec_memory` names (None: off)."""
        value = self.aec_memory.strip()
        if value.lower() in ("", "off", "none"):
            return None
        if value.lower() != "auto":
            return Path(value).expanduser()
        state = Path(os.environ.get("XDG_STATE_HOME") or "")
        if not state.is_absolute():  # unset, or relative: the XDG spec says ignore it
            state = Path.home() / ".local" / "state"
        return state / "parley" / "echo-path.npz"


def load_settings(path: Path | None = None, **overrides: object) -> EdgeSettings:
    """Settings from defaults, environment, an optional TOML file and explicit overrides."""
    values: dict[str, object] = {}
    if path is not None:
        try:
            values.update(tomllib.loads(Path(path).read_text(encoding="utf-8")))
        except FileNotFoundError as exc:
            raise ConfigError(f"no such config file: {path}") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not valid TOML ({exc})") from exc
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return EdgeSettings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"invalid edge setting '{where}': {first['msg']}") from exc
