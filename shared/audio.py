"""Audio formats: PCM conversion, WAV files and resampling (soxr).

Everything inside Parley is float32 mono in [-1, 1]; the edge processes at 16 kHz.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from shared.errors import AudioInputError

Samples = npt.NDArray[np.float32]

PROCESSING_RATE = 16_000
# Files longer than this are refused rather than read whole (bounded memory).
DEFAULT_MAX_SECONDS = 15 * 60.0


def pcm16_to_float(data: bytes) -> Samples:
    """Little-endian signed 16-bit PCM -> float32 in [-1, 1)."""
    if len(data) % 2:
        raise AudioInputError(f"PCM16 payload has an odd byte count ({len(data)})")
    return (np.frombuffer(data, dtype="<i2").astype(np.float32)) / 32768.0


def float_to_pcm16(samples: Samples) -> bytes:
    """float32 in [-1, 1] -> little-endian signed 16-bit PCM (clipped, rounded)."""
    scaled = np.clip(np.rint(np.asarray(samples, dtype=np.float32) * 32768.0), -32768, 32767)
    return bytes(scaled.astype("<i2").tobytes())


def resample(samples: Samples, from_rate: int, to_rate: int) -> Samples:
    """Resample a whole buffer (soxr, high quality)."""
    if from_rate == to_rate or samples.size == 0:
        return np.asarray(samples, dtype=np.float32)
    out = soxr.resample(np.asarray(samples, dtype=np.float32), from_rate, to_rate, quality="HQ")
    return np.asarray(out, dtype=np.float32)


class StreamResampler:
    """Chunk-by-chunk resampling with state carried across chunks (soxr.ResampleStream)."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._stream = (
            None
            if from_rate == to_rate
            else soxr.ResampleStream(from_rate, to_rate, 1, dtype="float32", quality="HQ")
        )

    def push(self, samples: Samples, last: bool = False) -> Samples:
        if self._stream is None:
            return np.asarray(samples, dtype=np.float32)
        out = self._stream.resample_chunk(np.asarray(samples, dtype=np.float32), last=last)
        return np.asarray(out, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class WavInfo:
    sample_rate: int
    channels: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def wav_info(path: str | Path) -> WavInfo:
    """Header facts of an audio file; ``AudioInputError`` if it is missing or not audio."""
    p = Path(path)
    if not p.is_file():
        raise AudioInputError(f"no such audio file: {p}")
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioInputError(f"{p} is not a readable audio file ({_short(exc)})") from exc
    return WavInfo(sample_rate=int(info.samplerate), channels=int(info.channels),
                   frames=int(info.frames))


def read_wav(
    path: str | Path,
    rate: int = PROCESSING_RATE,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> Samples:
    """Read any audio file soundfile understands as float32 mono at ``rate``.

    Channels are averaged; the sample rate is converted with soxr; non-finite samples are
    zeroed. Files longer than ``max_seconds`` are refused before being read.
    """
    info = wav_info(path)
    if info.frames == 0:
        raise AudioInputError(f"{path} holds no audio samples")
    if info.seconds > max_seconds:
        raise AudioInputError(
            f"{path} is {info.seconds:.0f} s long; the limit is {max_seconds:.0f} s"
        )
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioInputError(f"{path} could not be decoded ({_short(exc)})") from exc
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    mono = np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    return resample(mono, int(sr), rate)


def iter_wav_blocks(
    path: str | Path, block_seconds: float = 1.0, rate: int = PROCESSING_RATE
) -> Iterator[Samples]:
    """Stream a (possibly long) file as mono float32 blocks at ``rate``, in bounded memory."""
    info = wav_info(path)
    if info.frames == 0:
        raise AudioInputError(f"{path} holds no audio samples")
    resampler = StreamResampler(info.sample_rate, rate)
    block = max(1, int(block_seconds * info.sample_rate))
    with sf.SoundFile(str(path)) as f:
        while True:
            data = f.read(block, dtype="float32", always_2d=True)
            last = data.shape[0] < block
            mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
            mono = np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
            out = resampler.push(mono, last=last)
            if out.size:
                yield out
            if last:
                return


def write_wav(path: str | Path, samples: Samples, rate: int = PROCESSING_RATE) -> None:
    """Write float32 mono samples as a 16-bit PCM WAV file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(p), np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0), rate,
             subtype="PCM_16")


def rms_db(samples: Samples) -> float:
    """Root-mean-square level in dBFS (-120 for silence)."""
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20.0 * float(np.log10(max(rms, 1e-6)))


def frame_levels_db(samples: Samples, frame: int = 160) -> npt.NDArray[np.float64]:
    """The level (dBFS, -120 for silence) of each whole ``frame`` of ``samples``."""
    n = samples.size // frame
    frames = np.asarray(samples[: n * frame], dtype=np.float64).reshape(n, frame)
    levels: npt.NDArray[np.float64] = 10.0 * np.log10(
        np.maximum(np.mean(frames * frames, axis=1), 1e-12))
    return levels


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__

