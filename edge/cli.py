"""``parley edge ...``: the agent live against a cloud tier, or offline over files."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from edge.calibrate import LEVEL_DB, SECONDS
from edge.config import load_settings
from shared.errors import ConfigError

app = typer.Typer(no_args_is_help=True, help="The edge agent: live, or offline over files.")

# Options several commands take.
InputDevice = Annotated[str | None, typer.Option(help="Input device name or index.")]
OutputDevice = Annotated[str | None, typer.Option(help="Output device name or index.")]
ConfigFile = Annotated[Path | None, typer.Option(help="Edge settings (TOML).")]


@app.command()
def process(
    mic: Annotated[Path, typer.Option(help="What the microphone recorded (any WAV).")],
    far: Annotated[Path | None, typer.Option(help="What the speaker played meanwhile.")] = None,
    clean_out: Annotated[Path | None, typer.Option(help="Write the echo-cancelled mic here.")]
    = None,
    config: ConfigFile = None,
    echo_memory: Annotated[Path | None, typer.Option(
        help="Start the echo canceller from the echo path kept in this file (if it is there) "
             "and keep what it learned there afterwards.")] = None,
    causal: Annotated[bool, typer.Option(
        "--causal", help="Cancel the echo as the live agent does from a cold start: no "
                         "first pass over the recording to learn the room.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run AEC, VAD, ASR and prosody over files, offline (no cloud)."""
    from edge.offline import process_files

    settings = load_settings(config)
    result = process_files(mic, far, clean_out, settings, echo_memory, causal)
    if as_json:
        typer.echo(json.dumps(result))
        return
    for seg in result["segments"]:
        typer.echo(f"{seg['start_s']:7.2f} - {seg['end_s']:7.2f}  {seg['text']}")
    typer.echo(f"rtf {result['rtf']:.3f}  stages (ms) {result['stage_ms']}")


@app.command()
def run(
    cloud: Annotated[str, typer.Option(help="The cloud tier's URL.")] = "",
    token: Annotated[str, typer.Option(help="Device token (parley cloud token).",
                                       envvar="PARLEY_EDGE_TOKEN")] = "",
    input_device: InputDevice = None,
    output_device: OutputDevice = None,
    config: ConfigFile = None,
    echo_memory: Annotated[str | None, typer.Option(
        help="Where the learned echo path is kept across restarts: a file, 'auto' "
             "($XDG_STATE_HOME/parley/echo-path.npz) or 'off'.")] = None,
    calibrate_first: Annotated[bool | None, typer.Option(
        "--calibrate-first/--no-calibrate-first",
        help="With no echo path kept yet, learn the room first as 'parley edge calibrate' "
             "does (6 s of noise; the default), or learn it from the first reply.")] = None,
) -> None:
    """Talk to the cloud tier through this machine's microphone and speaker."""
    from edge.live import run_live

    settings = load_settings(config, cloud_url=cloud or None, token=token or None,
                             aec_memory=echo_memory, calibrate_first=calibrate_first)
    asyncio.run(run_live(settings, _device_id(input_device), _device_id(output_device)))


@app.command()
def calibrate(
    input_device: InputDevice = None,
    output_device: OutputDevice = None,
    config: ConfigFile = None,
    echo_memory: Annotated[str | None, typer.Option(
        help="Where to keep the learned echo path: a file, or 'auto' (the default: "
             "$XDG_STATE_HOME/parley/echo-path.npz, where 'parley edge run' looks).")] = None,
    seconds: Annotated[float, typer.Option(min=4.0, max=30.0,
                                           help="How long the noise plays.")] = SECONDS,
    level_db: Annotated[float, typer.Option(max=-6.0, help="Its level, dBFS RMS (about the "
                                            "level of the agent's voice).")] = LEVEL_DB,
) -> None:
    """Learn the room's echo before the first conversation: play a few seconds of noise
    through the speaker and keep the echo path where 'parley edge run' starts from."""
    from edge.calibrate import calibrate as learn
    from edge.calibrate import calibration_sound
    from edge.factory import echo_canceller
    from edge.sounddevice_io import SoundDeviceDuplex

    settings = load_settings(config, aec_memory=echo_memory)
    keep = settings.echo_memory_file()
    if keep is None:
        raise ConfigError("the echo memory is off (aec_memory): name a file with "
                          "--echo-memory FILE")
    canceller = echo_canceller(settings)
    device = SoundDeviceDuplex(_device_id(input_device), _device_id(output_device))
    found = asyncio.run(learn(device, canceller, calibration_sound(seconds, level_db), keep))
    typer.echo(f"kept the echo path in {keep}: {found.summary()}")


def _device_id(value: str | None) -> str | int | None:
    if value is None:
        return None
    return int(value) if value.isdigit() else value
