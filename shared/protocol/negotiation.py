"""Choosing the reply audio format from the edge's capabilities (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from shared.protocol.errors import RemoteProtocolError
from shared.protocol.messages import Capabilities, Codec


def choose_audio_format(
    peer: Capabilities, native_rate: int, codecs: Sequence[Codec] = ("pcm16",)
) -> tuple[Codec, int]:
    """The codec and sample rate to send the peer audio in.

    ``codecs`` are the ones this side can produce, most preferred first; the first the peer
    lists wins. The rate is ``native_rate`` when the peer plays it, else the lowest peer rate at
    or above it, else the peer's highest (the sender resamples). PCM16 is always understood,
    so a peer that lists no codec or rate gets PCM16 at ``native_rate``.
    """
    offered = peer.codecs or ("pcm16",)
    codec = next((c for c in codecs if c in offered), None)
    if codec is None:
        raise RemoteProtocolError(f"no common audio codec (peer: {list(offered)})")
    rates = sorted(peer.sample_rates)
    if not rates or native_rate in rates:
        return codec, native_rate
    higher = [r for r in rates if r >= native_rate]
    return codec, higher[0] if higher else rates[-1]
