"""``parley tts ...``: speak text to a WAV file with the embedded piper voice, and time it."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from shared.audio import write_wav
from shared.errors import ConfigError

if TYPE_CHECKING:
    from cloud.engines.tts import SpeechSynthesizer

app = typer.Typer(no_args_is_help=True, help="Speech synthesis.")

# Short clauses and a reply, as the cloud sends them (the first clause decides first audio).
BENCH_TEXTS: tuple[str, ...] = (
    "Sure,",
    "The museum opens at nine.",
    "The museum opens at nine tomorrow morning. Tickets cost twelve dollars for adults, "
    "and children under six get in free. Would you like me to book a visit?",
)


@app.callback()
def main() -> None:
    """Speech synthesis with the embedded piper voice (sherpa-onnx)."""


@app.command()
def say(
    text: Annotated[str, typer.Argument(help="What to say.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The WAV file to write.")],
    speed: Annotated[float, typer.Option(help="Speaking speed; 1.0 is the voice's own.")] = 1.0,
    threads: Annotated[int, typer.Option(min=1, max=16, help="Inference threads.")] = 2,
    warm_up: Annotated[bool, typer.Option(help="Warm the engine up before timing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Speak TEXT into a WAV file at the voice's sample rate (22.05 kHz)."""
    from cloud.engines import espeak
    from cloud.engines.tts import PiperSynthesizer, check_speed, check_text

    if not text.strip():
        raise ConfigError("nothing to say: the text is empty")
    check_text(text)
    check_speed(speed)
    _check_writable(out)
    if not espeak.phonemize(text):
        raise ConfigError("nothing to say: the text has no speakable words")
    engine = PiperSynthesizer.from_registry(num_threads=threads)
    if warm_up:
        engine.warm_up()
    started = time.perf_counter()
    first_audio_ms: float | None = None
    chunks = []
    for chunk in engine.stream(text, speed=speed):
        if first_audio_ms is None:
            first_audio_ms = (time.perf_counter() - started) * 1000
        chunks.append(chunk)
    compute_s = time.perf_counter() - started
    if not chunks:
        raise ConfigError("nothing to say: the text has no speakable words")
    audio = np.concatenate(chunks)
    _write(out, audio, engine.sample_rate)
    report = {"audio_s": round(audio.size / engine.sample_rate, 3),
              "compute_s": round(compute_s, 3),
              "first_audio_ms": round(first_audio_ms or 0.0, 1),
              "sample_rate": engine.sample_rate}
    if as_json:
        typer.echo(json.dumps(report))
    else:
        typer.echo(f"wrote {out}: {report['audio_s']} s of speech in {report['compute_s']} s "
                   f"(first audio after {report['first_audio_ms']} ms)")


@app.command()
def bench(
    repeats: Annotated[int, typer.Option(min=1, max=50, help="Runs per text.")] = 5,
    threads: Annotated[int, typer.Option(min=1, max=16, help="Inference threads.")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Load time, warm-up cost, first-audio latency and real-time factor (medians)."""
    from cloud.engines.tts import PiperSynthesizer

    started = time.perf_counter()
    engine = PiperSynthesizer.from_registry(num_threads=threads)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    engine.warm_up()
    warm_up_ms = (time.perf_counter() - started) * 1000
    cases = []
    for text in BENCH_TEXTS:
        runs = [_timed(engine, text) for _ in range(repeats)]
        audio_s = statistics.median(r[0] for r in runs)
        compute_s = statistics.median(r[1] for r in runs)
        cases.append({
            "text": text, "audio_s": round(audio_s, 3),
            "first_audio_ms": round(statistics.median(r[2] for r in runs), 1),
            "compute_ms": round(compute_s * 1000, 1), "rtf": round(compute_s / audio_s, 3)})
    report = {"load_s": round(load_s, 3), "warm_up_ms": round(warm_up_ms, 1),
              "threads": threads, "repeats": repeats, "cases": cases}
    typer.echo(json.dumps(report, indent=None if as_json else 2))


def _timed(engine: SpeechSynthesizer, text: str) -> tuple[float, float, float]:
    """(audio seconds, compute seconds, first-audio ms) of one synthesis."""
    started = time.perf_counter()
    first = 0.0
    samples = 0
    for chunk in engine.stream(text):
        first = first or (time.perf_counter() - started) * 1000
        samples += chunk.size
    return samples / engine.sample_rate, time.perf_counter() - started, first


def _check_writable(out: Path) -> None:
    if out.suffix.lower() != ".wav":
        raise ConfigError(f"--out must name a .wav file, not '{out}'")
    if out.is_dir():
        raise ConfigError(f"--out '{out}' is a directory")
    existed = out.exists()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("ab"):
            pass
        if not existed:
            out.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write '{out}': {exc.strerror or exc}") from exc


def _write(out: Path, audio: np.ndarray, rate: int) -> None:
    try:
        write_wav(out, audio, rate)
    except (OSError, RuntimeError) as exc:
        raise ConfigError(f"cannot write '{out}': {exc}") from exc
