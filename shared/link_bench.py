"""``parley bench protocol``: codec speed, and RTT and audio throughput over a loopback link.

Two real aiortc peers in this process, on 127.0.0.1, no HTTP. Numbers are medians of a few
runs; the machine is shared, so read them as orders of magnitude.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable

import typer

from shared.link import Link, LinkConfig, answer_offer, open_link
from shared.protocol import (
    Message,
    Prosody,
    ResponseText,
    SessionStore,
    TranscriptFinal,
    TtsChunk,
    WordTiming,
    decode,
    encode,
)

bench_app = typer.Typer(add_completion=False)

SAMPLE_WORDS = "what time does the pharmacy on main street close tonight"
SAMPLE_FINAL = TranscriptFinal(
    turn_id=7,
    seq=42,
    text=SAMPLE_WORDS,
    words=tuple(
        WordTiming(word=w, start_s=0.3 * i, end_s=0.3 * i + 0.25)
        for i, w in enumerate(SAMPLE_WORDS.split(" "))
    ),
    prosody=Prosody(f0_mean_hz=182.0, f0_final_slope_hz_per_s=-35.0, energy_db=-21.5),
    eou_confidence=0.93,
)
SAMPLE_TEXT = ResponseText(turn_id=7, seq=43, delta="The pharmacy closes at nine.")
CHUNK_BYTES = 1764  # 40 ms of 22.05 kHz PCM16 mono, what the TTS streams
SAMPLE_CHUNK = TtsChunk(
    turn_id=7,
    seq=44,
    chunk_index=3,
    sample_rate=22050,
    sample_offset=3 * 882,
    payload=bytes(CHUNK_BYTES),
)


def codec_rate(msg: Message, seconds: float) -> float:
    """encode+decode round trips of ``msg`` per second (median of three runs)."""
    rates = []
    for _ in range(3):
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 3:
            for _ in range(100):
                decode(encode(msg))
            count += 100
        rates.append(count / elapsed)
    return statistics.median(rates)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def loopback_pair() -> tuple[Link, Link, float]:
    """Edge and cloud links on loopback, and the time the edge took to open, in seconds."""
    store, answered = SessionStore(), []

    async def signal(offer_sdp: str, session_id: str) -> str:
        sdp, link = await answer_offer(offer_sdp, store)
        answered.append(link)
        return sdp

    start = time.perf_counter()
    edge = await open_link(signal, config=LinkConfig())
    opened = time.perf_counter() - start
    await answered[0].wait_open()
    return edge, answered[0], opened


async def audio_throughput(edge: Link, cloud: Link, total_bytes: int) -> float:
    """Payload MB/s of TTS chunks from the cloud to a reading edge."""
    count = total_bytes // CHUNK_BYTES

    async def produce() -> None:
        for i in range(count):
            await cloud.send(
                TtsChunk(
                    turn_id=1,
                    chunk_index=i,
                    sample_rate=22050,
                    sample_offset=i * 882,
                    payload=bytes(CHUNK_BYTES),
                )
            )

    start = time.perf_counter()
    producer = asyncio.ensure_future(produce())
    received = 0
    async for msg in edge:
        if isinstance(msg, TtsChunk):
            received += len(msg.payload)
            if msg.chunk_index == count - 1:
                break
    await producer
    return received / (time.perf_counter() - start) / 1e6


async def link_numbers(pings: int, audio_mb: float) -> dict[str, float]:
    """Open time, ping RTT percentiles and audio throughput over a fresh loopback pair."""
    edge, cloud, opened = await loopback_pair()
    try:
        rtts = [await edge.ping() for _ in range(pings)]
        runs = [await audio_throughput(edge, cloud, int(audio_mb * 1e6)) for _ in range(3)]
    finally:
        await edge.close()
        await cloud.close()
    return {
        "link_open_ms": opened * 1e3,
        "ping_rtt_ms_p50": percentile(rtts, 0.5) * 1e3,
        "ping_rtt_ms_p95": percentile(rtts, 0.95) * 1e3,
        "audio_mb_per_s": statistics.median(runs),
    }


def run(seconds: float, pings: int, audio_mb: float) -> dict[str, float]:
    """Every number of the benchmark."""
    numbers = {
        "codec_final_msgs_per_s": codec_rate(SAMPLE_FINAL, seconds),
        "codec_text_msgs_per_s": codec_rate(SAMPLE_TEXT, seconds),
        "codec_audio_msgs_per_s": codec_rate(SAMPLE_CHUNK, seconds),
    }
    numbers.update(asyncio.run(link_numbers(pings, audio_mb)))
    return numbers


def _print_table(numbers: dict[str, float], echo: Callable[[str], None]) -> None:
    for name, value in numbers.items():
        echo(f"{name:28s} {value:14,.2f}")


@bench_app.command()
def protocol(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    seconds: float = typer.Option(1.5, help="Time spent on each codec measurement."),
    pings: int = typer.Option(500, help="Ping round trips over the loopback link."),
    audio_mb: float = typer.Option(4.0, help="MB of audio per throughput run (3 runs)."),
) -> None:
    """Codec messages/s, loopback ping RTT p50/p95, audio MB/s over a real aiortc link."""
    numbers = run(seconds, pings, audio_mb)
    if as_json:
        typer.echo(json.dumps({k: round(v, 3) for k, v in numbers.items()}))
    else:
        _print_table(numbers, typer.echo)
