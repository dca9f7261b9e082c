"""The ``parley`` console script: the root of every subcommand.

Each area owns its commands in its own module (``models/cli.py``, ``edge/cli.py``,
``cloud/cli.py``...). They are imported lazily, only when invoked, so an edge device without
the cloud extra (no Ray, no llama.cpp) runs ``parley edge ...`` fine and ``parley --help``
is instant. Expected failures (``ParleyError``) print one line, never a traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import typer
from typer.core import TyperGroup

from shared.errors import ParleyError

# name -> (module, attribute, help). The attribute is a typer.Typer app.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("edge.demo", "demo_app", "Speak to a local cloud tier through a file-mode edge."),
    "models": ("models.cli", "app", "Build, list and fetch the models."),
    "asr": ("edge.asr_cli", "app", "Speech recognition on files."),
    "edge": ("edge.cli", "app", "The edge agent: live, or offline over files."),
    "tts": ("cloud.tts_cli", "app", "Speech synthesis."),
    "llm": ("cloud.llm_cli", "app", "The language model."),
    "cloud": ("cloud.cli", "app", "The cloud tier on Ray Serve."),
    "bench": ("shared.cli", "bench_group", "Benchmarks that print numbers."),
}

# bench subcommands: name -> (module, attribute, help); each attribute is a typer.Typer app.
BENCH_COMMANDS: dict[str, tuple[str, str, str]] = {
    "models": ("models.bench", "bench_app", "ASR / TTS / LLM speed on this machine."),
    "protocol": ("shared.link_bench", "bench_app", "Codec speed and loopback link RTT."),
    "edge": ("edge.bench", "bench_app", "Edge front-end cost per stage."),
    "aec": ("edge.aec.bench", "bench_app", "Echo cancellation on the room-echo test."),
    "cloud": ("cloud.bench", "bench_app", "First audio over WebRTC, 1 vs N sessions."),
    "e2e": ("edge.e2e_bench", "bench_app", "End-to-end latency against a naive cascade."),
    "talk": ("edge.talk_bench", "bench_app", "The user over the agent, whole edge pipeline."),
    "endpointing": ("edge.endpointing.bench", "bench_app", "End-of-turn detector vs timeouts."),
}


class LazyGroup(TyperGroup):
    """A click group whose subcommands are imported on first use."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str, str]], **kw: Any) -> None:
        # Plain (non-rich) help: rich help would import every command's module to list it.
        super().__init__(*args, rich_markup_mode=None, **kw)
        self._lazy = lazy

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self._lazy)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        # Listing help must not import the modules (one may need an extra that is absent).
        rows = [(name, help_text) for name, (_, _, help_text) in self._lazy.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self._lazy:
            return None
        module_name, attr, help_text = self._lazy[cmd_name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] in {"shared", "edge", "cloud", "models"}:
                raise ParleyError(f"'parley {cmd_name}' is not available in this build") from exc
            extra = "cloud" if module_name.startswith("cloud") else "edge"
            raise ParleyError(
                f"'parley {cmd_name}' needs a package that is not installed ({exc.name}); "
                f"install it with: pip install 'parley[{extra}]'"
            ) from exc
        obj = getattr(module, attr)
        if isinstance(obj, TyperGroup):
            return obj
        command = typer.main.get_command(obj)
        command.name = cmd_name
        command.help = command.help or help_text
        command.short_help = help_text
        return command


bench_group = LazyGroup(name="bench", lazy=BENCH_COMMANDS, help="Benchmarks that print numbers.")
root = LazyGroup(
    name="parley",
    lazy=COMMANDS,
    help="Parley: a real-time voice agent split between an edge device and a cloud tier.",
)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    # standalone mode: usage errors print click's message and exit 2.
    run_reporting(lambda: root.main(args=argv, prog_name="parley", standalone_mode=True))


def run_reporting(command: Callable[[], object], name: str = "parley") -> None:
    """Run a command line; expected failures (``ParleyError``) and Ctrl-C end in one line."""
    try:
        command()
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(130)
    except ParleyError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Ray's processes print to the driver's stdout; keep stdout for our own output."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
