"""``parley asr transcribe FILE``: speech recognition of an audio file of any rate or length.

The file is streamed in blocks (resampled to 16 kHz mono), so memory stays bounded. With
Whisper, the silero VAD finds the speech and only speech chunks are decoded (silence and
noise give empty text instead of Whisper's invented "Thank you."); the streaming engine
takes the audio as it comes and cuts utterances with its own endpointing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from edge.asr import ENGINES, SpeechRecognizer, StreamingRecognizer
from edge.vad import VoiceActivityDetector
from shared.audio import PROCESSING_RATE, Samples, iter_wav_blocks, wav_info
from shared.errors import ConfigError

app = typer.Typer(no_args_is_help=True, help="Speech recognition on files.")
BLOCK_S = 0.5


@app.callback()
def asr() -> None:
    """Speech recognition on files."""


@app.command()
def transcribe(
    path: Annotated[Path, typer.Argument(help="An audio file (WAV, FLAC...), any rate/channels.")],
    engine: Annotated[str, typer.Option(help="whisper (embedded) or streaming.")] = "whisper",
    model: Annotated[str, typer.Option(help="A manifest model name (default: the engine's).")]
    = "",
    threads: Annotated[int, typer.Option(min=1, max=16, help="Inference threads.")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Transcribe FILE and print the text (or engine, text, audio_s, compute_s, rtf)."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine '{engine}' (choose from: {', '.join(ENGINES)})")
    info = wav_info(path)
    blocks = iter_wav_blocks(path, BLOCK_S)
    if engine == "streaming":
        from edge.asr import load_streaming_recognizer

        streaming = load_streaming_recognizer(model, threads)
        name = streaming.engine
        started = time.perf_counter()
        text = transcribe_streaming(streaming, blocks)
    else:
        from edge.asr import load_recognizer
        from edge.vad import SileroVad, VadConfig

        recognizer = load_recognizer(engine, model, threads)
        vad = SileroVad(VadConfig(min_silence_s=0.3))
        name = recognizer.engine
        started = time.perf_counter()
        text = transcribe_speech_chunks(recognizer, vad, blocks)
    compute_s = time.perf_counter() - started
    audio_s = info.seconds
    if not as_json:
        typer.echo(text)
        return
    typer.echo(json.dumps({
        "engine": name, "text": text, "audio_s": round(audio_s, 3),
        "compute_s": round(compute_s, 3),
        "rtf": round(compute_s / audio_s, 4) if audio_s > 0 else 0.0,
    }))


def transcribe_speech_chunks(recognizer: SpeechRecognizer, vad: VoiceActivityDetector,
                             blocks: Iterator[Samples]) -> str:
    """VAD-gated offline recognition: decode each speech chunk as it completes."""
    from edge.asr.chunking import SpeechChunker

    chunker = SpeechChunker()
    texts: list[str] = []
    for block in blocks:
        for chunk in chunker.push(block, vad.push(block)):
            texts.append(recognizer.transcribe(chunk).text)
    tail = vad.push(_silence(0.5))  # let the VAD close a region still open at the end
    for chunk in chunker.push(_silence(0.5), tail) + chunker.finish():
        texts.append(recognizer.transcribe(chunk).text)
    return " ".join(t for t in texts if t)


def transcribe_streaming(recognizer: StreamingRecognizer, blocks: Iterator[Samples]) -> str:
    """Streaming recognition; an utterance is closed at each endpoint the engine detects."""
    texts: list[str] = []
    recognizer.restart()
    for block in blocks:
        recognizer.accept_waveform(block)
        if recognizer.endpoint_detected():
            texts.append(recognizer.final().text)
            recognizer.reset()
    texts.append(recognizer.final().text)
    recognizer.reset()
    return " ".join(t for t in texts if t)


def _silence(seconds: float) -> Samples:
    import numpy as np

    return np.zeros(int(seconds * PROCESSING_RATE), dtype=np.float32)


BENCH_PHRASES = {
    1.0: "What time is it?",
    2.0: "Set a timer for fifteen minutes.",
    3.0: "Can you tell me the weather forecast for tomorrow morning?",
    5.0: "I would like to book a table for two people at seven, near the window if you can.",
}


@app.command()
def bench(
    engine: Annotated[str, typer.Option(help="whisper or streaming.")] = "whisper",
    threads: Annotated[int, typer.Option(min=1, max=16, help="Inference threads.")] = 2,
    repeat: Annotated[int, typer.Option(min=1, max=50, help="Decodes per utterance.")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Decode cost of a 1, 2, 3 and 5 s utterance (eSpeak NG, en-us): median ms and RTF."""
    import statistics

    from edge.asr import load_recognizer

    try:
        from models.corpus import espeak_utterance
    except ImportError as exc:  # the eSpeak NG wheel comes with the cloud and dev extras
        raise ConfigError(f"the benchmark needs eSpeak NG ({exc.name}); "
                          "install it with: pip install 'parley[dev]'") from exc
    recognizer = load_recognizer(engine, "", threads)
    rows = []
    for target, phrase in BENCH_PHRASES.items():
        audio = espeak_utterance(phrase, voice="en-us", rate_wpm=170).audio
        recognizer.transcribe(audio)  # warm-up
        costs = [recognizer.transcribe(audio).compute_s for _ in range(repeat)]
        median = statistics.median(costs)
        seconds = audio.size / PROCESSING_RATE
        rows.append({"target_s": target, "audio_s": round(seconds, 2),
                     "median_ms": round(1000 * median, 1),
                     "min_ms": round(1000 * min(costs), 1), "rtf": round(median / seconds, 4)})
    report = {"engine": recognizer.engine, "threads": threads, "repeat": repeat,
              "utterances": rows}
    if as_json:
        typer.echo(json.dumps(report))
        return
    for row in rows:
        typer.echo(f"{row['audio_s']:5.2f} s audio: median {row['median_ms']:7.1f} ms  "
                   f"(min {row['min_ms']:.1f})  RTF {row['rtf']:.3f}")
