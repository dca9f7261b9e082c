"""``parley demo``: a local cloud tier, and a file-mode edge talking to it over WebRTC.

It starts Ray Serve with the cloud tier on loopback, issues a device token, connects an edge
agent in file mode (the mic is the input WAV, paced in real time; the speaker is recorded on
the mic's timeline, and by default its sound comes back into the mic through a simulated
room, so the echo canceller has real work), and prints one row per user turn with the
latency waterfall. ``--live`` uses this machine's microphone and speaker instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from edge.config import EdgeSettings, load_settings
from edge.session import DemoResult, run_file_session
from shared.cli import stdout_to_stderr

demo_app = typer.Typer(help="Speak to a local cloud tier through a file-mode edge.")

WATERFALL = ("vad_end", "asr_final", "end_of_turn", "cloud_llm_first_token",
             "cloud_first_clause", "cloud_tts_first_audio", "first_chunk_received",
             "first_sample_played")


@demo_app.command()
def demo(
    input: Annotated[Path | None, typer.Option("--input", help="The user's side (a WAV); "
                                                "default: the bundled sample question.")] = None,
    out_wav: Annotated[Path | None, typer.Option(help="Write the speaker track here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    live: Annotated[bool, typer.Option(help="Use this machine's mic and speaker.")] = False,
    room: Annotated[bool, typer.Option(help="Put the speaker's echo back into the mic.")]
    = True,
    port: Annotated[int, typer.Option(help="Port of the local cloud tier.")] = 8000,
    config: Annotated[Path | None, typer.Option(help="Edge settings (TOML).")] = None,
) -> None:
    """Start the cloud tier locally and talk to it through the edge (see README)."""
    from edge.scenes import sample_path

    settings = load_settings(config)
    wav = input if input is not None else sample_path()
    with stdout_to_stderr(), local_cloud(port) as (url, token):
        settings = settings.model_copy(update={"cloud_url": url, "token": token})
        if live:
            from edge.live import run_live

            asyncio.run(run_live(settings, None, None))
            return
        result = asyncio.run(run_file_session(settings, wav, out_wav, room=room))
    if as_json:
        typer.echo(json.dumps(result.as_json()))
    else:
        print_rows(result)


class local_cloud:
    """The embedded cloud tier for the length of a ``with`` block: (url, device token)."""

    def __init__(self, port: int, overrides: dict[str, Any] | None = None) -> None:
        self.port = port
        self.overrides = overrides or {}

    def __enter__(self) -> tuple[str, str]:
        from cloud.auth import issue_token
        from cloud.cli import prepare, start_embedded
        from cloud.config import load_settings as cloud_settings

        quiet_ray_logs()
        settings = cloud_settings(None, host="127.0.0.1", port=self.port, **self.overrides)
        prepare(settings)
        print(f"starting the cloud tier (Ray Serve) on 127.0.0.1:{self.port} ...",
              file=sys.stderr)
        start_embedded(settings)
        token = issue_token(settings.secret(), "demo-edge", 3600)
        return f"http://127.0.0.1:{self.port}", token

    def __exit__(self, *exc: object) -> None:
        from cloud import deployments

        deployments.stop()


def quiet_ray_logs() -> None:
    for name in ("ray", "ray.serve", "aiortc", "aioice"):
        logging.getLogger(name).setLevel(logging.ERROR)


def print_rows(result: DemoResult) -> None:
    """One row per user turn: what was said, the reply, and where the time went."""
    for turn in result.turns:
        typer.echo(f"\nyou:    {turn['user_text']}")
        typer.echo(f"parley: {turn['reply_text'] or '(no reply)'}")
        lat = turn["latency_ms"]
        steps = [f"{name} {lat[name]:.0f}" for name in WATERFALL if name in lat]
        typer.echo("  ms after end of speech: " + " -> ".join(steps))
        if turn.get("from_files_ms") is not None:
            typer.echo(f"  first reply sample on the speaker track: "
                       f"{turn['from_files_ms']:.0f} ms after the end of speech (from the files)")
        if turn.get("barged_in"):
            typer.echo(f"  interrupted after {turn['heard_s']:.2f} s: heard "
                       f"'{turn['heard_text']}'")
    if result.speaker_wav:
        typer.echo(f"\nspeaker track: {result.speaker_wav}")


def summary(values: list[float]) -> dict[str, Any]:
    import numpy as np

    if not values:
        return {"p50": None, "p95": None, "n": 0}
    return {"p50": round(float(np.percentile(values, 50)), 1),
            "p95": round(float(np.percentile(values, 95)), 1), "n": len(values)}


__all__ = ["EdgeSettings", "demo_app", "local_cloud", "summary"]
