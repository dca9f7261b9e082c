"""``parley edge run``: this machine's microphone and speaker, against a cloud tier."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from edge.aec.memory import keep_echo_path, recall_echo_path
from edge.config import EdgeSettings
from edge.factory import build_stages
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
    device = SoundDeviceDuplex(input_device, output_device)
    stages = build_stages(settings)
    memory = settings.echo_memory_file()
    if not recall_echo_path(stages.aec, memory) and memory is not None and not memory.exists():
        log.warning("no echo path kept in %s yet: the echo is learned from the first reply "
                    "('parley edge calibrate' learns it beforehand)", memory)
    uplink = await ResilientUplink.open(settings.cloud_url, settings.token)
    agent = EdgeAgent(device, stages, link=uplink)
    keeper = None if memory is None else asyncio.create_task(_keep_echo_path(stages.aec, memory))
    log.warning("listening; speak to the agent (Ctrl-C to stop)")
    try:
        await agent.run()
    finally:
        if keeper is not None:
            keeper.cancel()
        keep_echo_path(stages.aec, memory)
        await uplink.close()


async def _keep_echo_path(canceller: object, path: Path) -> None:
    while True:
        await asyncio.sleep(KEEP_ECHO_PATH_EVERY_S)
        keep_echo_path(canceller, path)
