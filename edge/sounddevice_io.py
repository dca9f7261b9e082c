"""Live audio through sounddevice (PortAudio): the only module that imports sounddevice.

One duplex stream at the device's native rate; the PortAudio callback only moves samples
(resampling with soxr streams and two FIFOs); the pipeline runs on the asyncio side.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from edge.audio_io import FRAME, DuplexDevice, DuplexFrame, SpeakerSource
from shared.audio import PROCESSING_RATE, Samples, StreamResampler
from shared.errors import AudioDeviceError

FILE_MODE_HINT = ("or run without devices in file mode: 'parley edge process --mic FILE.wav' "
                  "or 'parley demo --input FILE.wav'")


def _import_sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as exc:  # the PortAudio shared library is missing
        raise AudioDeviceError(
            "PortAudio library not found: install it with 'sudo apt-get install libportaudio2', "
            + FILE_MODE_HINT
        ) from exc
    return sounddevice


def _device_rate(sd: Any, device: str | int | None, kind: str) -> int:
    try:
        info = sd.query_devices(device, kind)
    except (ValueError, sd.PortAudioError) as exc:
        which = f"'{device}'" if device is not None else "default"
        raise AudioDeviceError(
            f"no {which} audio {kind} device ({exc}); list devices with "
            f"'python -m sounddevice', {FILE_MODE_HINT}"
        ) from exc
    return int(info["default_samplerate"])


class SoundDeviceDuplex(DuplexDevice):
    """Microphone + speaker of this machine (or the named devices)."""

    def __init__(self, input_device: str | int | None = None,
                 output_device: str | int | None = None) -> None:
        self._sd = _import_sounddevice()
        self.input_device = input_device
        self.output_device = output_device
        self.rate = _device_rate(self._sd, input_device, "input")
        _device_rate(self._sd, output_device, "output")
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    async def frames(self, speaker: SpeakerSource) -> AsyncIterator[DuplexFrame]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[Samples, Samples]] = asyncio.Queue(maxsize=200)
        bridge = _CallbackBridge(self.rate, speaker)

        def deliver(pair: tuple[Samples, Samples]) -> None:
            if queue.full():  # the pipeline fell behind: drop the oldest frame, never block
                queue.get_nowait()
            queue.put_nowait(pair)

        def callback(indata: Any, outdata: Any, frames: int, _t: Any, _status: Any) -> None:
            outdata[:, 0] = bridge.render(frames)
            for pair in bridge.capture(indata[:, 0].astype(np.float32)):
                loop.call_soon_threadsafe(deliver, pair)

        try:
            stream = self._sd.Stream(
                samplerate=self.rate, blocksize=self.rate // 100, channels=1, dtype="float32",
                device=(self.input_device, self.output_device), latency="low",
                callback=callback,
            )
        except self._sd.PortAudioError as exc:
            raise AudioDeviceError(f"cannot open the audio devices ({exc}), {FILE_MODE_HINT}") \
                from exc
        index = 0
        with stream:
            while not self._stop.is_set():
                mic, far = await queue.get()
                yield DuplexFrame(index=index, mic=mic, speaker=far)
                index += 1


class _CallbackBridge:
    """Rate conversion between the device and the 16 kHz pipeline (runs in the callback)."""

    def __init__(self, rate: int, speaker: SpeakerSource) -> None:
        self.speaker = speaker
        self.up = StreamResampler(PROCESSING_RATE, rate)
        self.down = StreamResampler(rate, PROCESSING_RATE)
        self.out_fifo = np.zeros(0, np.float32)
        self.mic_fifo = np.zeros(0, np.float32)
        self.far_frames: deque[Samples] = deque()
        self.played = 0

    def render(self, n: int) -> Samples:
        while self.out_fifo.size < n:
            far = self.speaker(FRAME, self.played)
            self.played += FRAME
            self.far_frames.append(far)
            self.out_fifo = np.concatenate([self.out_fifo, self.up.push(far)])
        out, self.out_fifo = self.out_fifo[:n], self.out_fifo[n:]
        return out

    def capture(self, block: Samples) -> list[tuple[Samples, Samples]]:
        self.mic_fifo = np.concatenate([self.mic_fifo, self.down.push(block)])
        pairs = []
        while self.mic_fifo.size >= FRAME:
            mic, self.mic_fifo = self.mic_fifo[:FRAME], self.mic_fifo[FRAME:]
            far = self.far_frames.popleft() if self.far_frames else np.zeros(FRAME, np.float32)
            pairs.append((mic, far))
        return pairs
