"""``parley edge run``: this machine's microphone and speaker, against a cloud tier."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from edge.aec import EchoCanceller
from edge.aec.memory import keep_echo_path, recall_echo_path
from edge.audio_io import DuplexDevice
from edge.calibrate import SECONDS, CalibrationError, calibrate, calibration_sound
from edge.config import EdgeSettings
from edge.factory import build_stages, echo_canceller
from edge.pipeline import EdgeAgent
from edge.uplink import ResilientUplink
from shared.errors import ConfigError

log = logging.getLogger(__name__)
# How often a live run writes the learned echo path down (besides when it stops): a power
# cut loses at most this much of it.
KEEP_ECHO_PATH_EVERY_S = 300.0


async def run_live(settings: EdgeSettings, input_device: str | int | None,
                   output_device: str | int | None) -> None:
    """Run until Ctrl-C; the link reconnects by itself after network drops."""
    from edge.sounddevice_io import SoundDeviceDuplex

    if not settings.token:
        raise ConfigError("a device token is needed: --token TOKEN "
                          "(issue one on the cloud with: parley cloud token --device ID)")
    def open_device() -> DuplexDevice:
        return SoundDeviceDuplex(input_device, output_device)

    device = open_device()
    stages = build_stages(settings)
    memory = settings.echo_memory_file()
    uplink = await ResilientUplink.open(settings.cloud_url, settings.token)
    keeper = None
    try:
        await start_echo_canceller(stages.aec, settings, open_device)
        agent = EdgeAgent(device, stages, link=uplink)
        if memory is not None:
            keeper = asyncio.create_task(_keep_echo_path(stages.aec, memory))
        log.warning("listening; speak to the agent (Ctrl-C to stop)")
        await agent.run()
    finally:
        if keeper is not None:
            keeper.cancel()
        keep_echo_path(stages.aec, memory)
        await uplink.close()


async def start_echo_canceller(canceller: object, settings: EdgeSettings,
                               open_device: Callable[[], DuplexDevice]) -> None:
    """Start ``canceller`` from the echo path kept in the ``aec_memory`` file. With none
    kept there yet (the device's first start, or an earlier calibration failed) and
    ``calibrate_first``, learn the room first, as ``parley edge calibrate`` does, through a
    device from ``open_device``, and start from that. From a cold start the canceller learns
    the room from the first reply, and a user who talks over it loses words (README,
    "The first start: calibrate"). A calibration that fails costs one log line and a cold
    start."""
    memory = settings.echo_memory_file()
    if (memory is None or not isinstance(canceller, EchoCanceller)  # echo cancellation off
            or recall_echo_path(canceller, memory)):
        return
    if not settings.calibrate_first:
        if not memory.exists():
            log.warning("no echo path kept in %s yet: the echo is learned from the first "
                        "reply ('parley edge calibrate' learns it beforehand)", memory)
        return
    log.warning("no echo path kept in %s yet: learning the room first (%.0f s of noise "
                "through the speaker; quiet, please)", memory, SECONDS)
    try:
        found = await calibrate(open_device(), echo_canceller(settings), calibration_sound(),
                                memory)
    except CalibrationError as exc:
        log.warning("%s; the echo is learned from the first reply instead", exc)
        return
    log.warning("learned the room: %s", found.summary())
    recall_echo_path(canceller, memory)


async def _keep_echo_path(canceller: object, path: Path) -> None:
    while True:
        await asyncio.sleep(KEEP_ECHO_PATH_EVERY_S)
        keep_echo_path(canceller, path)
