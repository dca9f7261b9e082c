"""``parley edge run``: this machine's microphone and speaker, against a cloud tier."""

from __future__ import annotations

import logging

from edge.config import EdgeSettings
from edge.factory import build_stages
from edge.pipeline import EdgeAgent
from edge.uplink import ResilientUplink
from shared.errors import ConfigError

log = logging.getLogger(__name__)


async def run_live(settings: EdgeSettings, input_device: str | int | None,
                   output_device: str | int | None) -> None:
    """Run until Ctrl-C; the link reconnects by itself after network drops."""
    from edge.sounddevice_io import SoundDeviceDuplex

    if not settings.token:
        raise ConfigError("a device token is needed: --token TOKEN "
                          "(issue one on the cloud with: parley cloud token --device ID)")
    device = SoundDeviceDuplex(input_device, output_device)
    stages = build_stages(settings)
    uplink = await ResilientUplink.open(settings.cloud_url, settings.token)
    agent = EdgeAgent(device, stages, link=uplink)
    log.warning("listening; speak to the agent (Ctrl-C to stop)")
    try:
        await agent.run()
    finally:
        await uplink.close()
