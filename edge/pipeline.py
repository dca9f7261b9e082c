"""The edge agent: the whole data path of the device, top-down.

Every 10 ms the duplex device gives one mic frame and the speaker frame played meanwhile:

    mic -> aec (far-end reference = the speaker frame) -> vad -> turn-taking
        -> asr (on the aec's unsuppressed copy of the same frames; worker thread; partials while
           speaking, a speculative final at each pause, started when the level first falls;
           a final over speech from before the aec settled is cancelled again first)
        -> prosody -> end-of-turn policy -> uplink (transcript.final / cancel / barge_in)
    downlink (tts.start / tts.chunk / tts.end / response.text / metrics)
        -> playout (jitter buffer, ledger) -> speaker -> back to the aec as far end

Turn-taking decisions live in ``edge/turns.py`` (sans-IO); this module only executes them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edge.aec.base import Cancelled
from edge.aec.replay import EchoReplay
from edge.asr_worker import Decoded, NewestFirstWorker
from edge.audio_io import FRAME, DuplexDevice, DuplexFrame
from edge.barge_in import OnsetGate
from edge.history import AudioHistory, Stretch
from edge.playout import Playout
from edge.turns import (
    Action,
    Decode,
    Release,
    SendCancel,
    SendFinal,
    SendPartial,
    StopReply,
    TurnTaker,
)
from edge.vad import SpeechEnded, SpeechPausing, SpeechStarted, VoiceActivityDetector
from shared import protocol as p
from shared.audio import (
    PROCESSING_RATE,
    Samples,
    StreamResampler,
    frame_levels_db,
    pcm16_to_float,
)

log = logging.getLogger(__name__)
TICK_FRAMES = 5  # the end-of-turn policy runs every 50 ms
END_LOOKBACK = int(0.3 * PROCESSING_RATE)  # where to look for the last sound before a VAD end
# The cloud's stage times (``metrics``) that belong on the latency waterfall.
CLOUD_MARKS = {"llm_first_token": "cloud_llm_first_token", "first_clause": "cloud_first_clause",
               "first_audio": "cloud_tts_first_audio"}


class EchoCanceller(Protocol):
    def cancel(self, mic: Samples, far: Samples) -> Cancelled: ...  # .clean, .for_asr


class Recognizer(Protocol):
    def transcribe(self, samples: Samples) -> object: ...  # -> Transcript(text, words)


class ProsodyMeter(Protocol):
    """Returns features the end-of-turn policy reads; ``to_message()`` gives the wire form."""

    def measure(self, audio: Samples, text: str, pause_before_ms: float | None) -> object: ...


class Uplink(Protocol):
    """What the agent needs of the link to the cloud (``shared.link`` provides it)."""

    async def send(self, msg: p.Message) -> None: ...

    def __aiter__(self) -> AsyncIterator[p.Message]: ...


@dataclass
class TurnRecord:
    """What happened in one user turn, on the mic timeline (samples) — the latency waterfall."""

    turn_id: int
    user_text: str = ""
    reply_text: str = ""
    start: int = 0
    speech_end: int = 0
    vad_end: int | None = None
    asr_final: int | None = None
    final_sent: int | None = None
    committed: int | None = None
    first_chunk: int | None = None
    first_played: int | None = None
    cancelled: bool = False
    barged_in: bool = False
    samples_heard: int = 0
    heard_text: str = ""
    prosody: p.Prosody | None = None
    eou_confidence: float = 0.0
    cloud_ms: dict[str, float] = field(default_factory=dict)

    def latency_ms(self) -> dict[str, float]:
        """Each stage's time after the end of speech, in ms."""
        marks = {"vad_end": self.vad_end, "asr_final": self.asr_final,
                 "final_sent": self.final_sent, "end_of_turn": self.committed,
                 "first_chunk_received": self.first_chunk, "first_sample_played": self.first_played}
        out = {k: (v - self.speech_end) * 1000.0 / PROCESSING_RATE
               for k, v in marks.items() if v is not None}
        if self.final_sent is not None:  # the cloud's times count from receiving the final
            sent_ms = out["final_sent"]
            out.update({mark: sent_ms + self.cloud_ms[k] for k, mark in CLOUD_MARKS.items()
                        if k in self.cloud_ms})
        return out


@dataclass(frozen=True, slots=True)
class Heard:
    """One decode's result and the audio the recognizer heard (prosody reads the same)."""

    transcript: object
    audio: Samples
    start: int  # where ``audio`` begins on the mic timeline
    replay_s: float  # the part of its compute time spent cancelling the echo again


@dataclass
class EdgeStages:
    """The stages of the front end (real adapters in production, fakes in unit tests)."""

    aec: EchoCanceller
    vad: VoiceActivityDetector
    asr: Recognizer
    prosody: ProsodyMeter
    turns: TurnTaker
    replay: EchoReplay | None = None  # of aec: finals over speech from before it settled


class EdgeAgent:
    """Runs the device loop and the downlink until the input ends or ``stop()``."""

    def __init__(self, device: DuplexDevice, stages: EdgeStages, link: Uplink | None = None,
                 playout: Playout | None = None, keep_clean: bool = False,
                 lockstep: bool = False) -> None:
        self.device = device
        self.s = stages
        self.link = link
        self.playout = playout or Playout()
        self.history = AudioHistory()
        self.worker: NewestFirstWorker[Callable[[], Stretch], Heard] = NewestFirstWorker(
            self._hear)
        self.onset = OnsetGate()
        self.records: dict[int, TurnRecord] = {}
        self.clean: list[Samples] | None = [] if keep_clean else None
        self.stage_s: dict[str, float] = {"aec": 0.0, "vad": 0.0, "asr": 0.0, "prosody": 0.0}
        self._outbox: asyncio.Queue[p.Message] = asyncio.Queue()
        self._cancelled: set[int] = set()
        self._resamplers: dict[int, StreamResampler] = {}
        self._rates: dict[int, int] = {}  # reply audio rate per turn (tts.start)
        self._clock = (0, time.perf_counter())
        # lockstep (offline runs): the device waits for each decode, so recognition takes no
        # time on the mic timeline and results do not depend on this machine's speed.
        self.lockstep = lockstep
        self._pending: list[asyncio.Future[Decoded[Heard]]] = []

    # -- the device loop: mic -> aec -> vad -> turns -------------------------------------
    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            if self.link is not None:
                sender = tg.create_task(self._send_loop())
                receiver = tg.create_task(self._downlink())
            try:
                async for frame in self.device.frames(self.playout.pull):
                    self._on_frame(frame)
                    await self._settle()
                await self._finish_input()
            finally:
                await self._drain_worker()
                self.worker.close()
                if self.link is not None:
                    await self._outbox.join()
                    sender.cancel()
                    receiver.cancel()
                self.device.close()

    def stop(self) -> None:
        self.device.stop()

    def idle(self) -> bool:
        """True when no user turn is open and no reply is awaited or playing."""
        t = self.s.turns
        return t.current is None and t.committed is None and not self.playout.active

    async def _settle(self) -> None:
        if self.lockstep and self._pending:
            pending, self._pending = self._pending, []
            await asyncio.gather(*pending, return_exceptions=True)
            await asyncio.sleep(0)  # let the done-callbacks run

    async def _finish_input(self) -> None:
        """The input ended: close the open turn as if the user stopped talking there."""
        end = self.history.end
        if self.s.turns.current is not None and self.s.vad.speaking:
            self._on_speech_end(SpeechEnded(sample=end, decided_at=end))
            self.lockstep = True
            await self._settle()
        if self.s.turns.current is not None:
            far_future = end + 60 * PROCESSING_RATE  # past any maximum pause: commit
            self._execute(self.s.turns.tick(far_future, speaking=False))

    def _on_frame(self, frame: DuplexFrame) -> None:
        self._clock = (frame.sample + FRAME, time.perf_counter())
        cancelled = self._timed("aec", self.s.aec.cancel, frame.mic, frame.speaker)
        clean = cancelled.clean
        self.history.append(cancelled.for_asr)  # what the recognizer and prosody read
        if self.s.replay is not None:
            self.s.replay.push(frame.mic, frame.speaker)
        if self.clean is not None:
            self.clean.append(clean)
        self._watch_barge_in(clean, frame)
        for event in self._timed("vad", self.s.vad.push, clean):
            if isinstance(event, SpeechStarted):
                self._execute(self.s.turns.speech_started(event.sample))
            elif isinstance(event, SpeechPausing):
                self._execute(self.s.turns.speech_pausing(event.sample, event.decided_at))
            elif isinstance(event, SpeechEnded):
                self._on_speech_end(event)
        self._follow_reply(frame)
        if frame.index % TICK_FRAMES == 0:
            self._execute(self.s.turns.tick(frame.sample + FRAME, self.s.vad.speaking))

    def _on_speech_end(self, event: SpeechEnded) -> None:
        actions = self.s.turns.speech_ended(event.sample, event.decided_at)
        turn = self.s.turns.current
        if turn is not None:
            rec = self._record(turn.turn_id)
            rec.start, rec.speech_end, rec.vad_end = turn.start, event.sample, event.decided_at
        self._execute(actions)

    # -- barge-in: duck at once on an onset, stop when the VAD confirms ------------------
    def _watch_barge_in(self, clean: Samples, frame: DuplexFrame) -> None:
        playing = bool(np.any(frame.speaker))
        verdict = self.onset.push(clean, playing=playing, speech=self.s.vad.speaking)
        if verdict == "duck":
            self.playout.pause()
        elif verdict == "resume":
            self.playout.resume()

    def _follow_reply(self, frame: DuplexFrame) -> None:
        turn = self.s.turns.committed
        if turn is None:
            return
        status = self.playout.status(turn.turn_id)
        rec = self._record(turn.turn_id)
        if status.first_played_at is not None and rec.first_played is None:
            rec.first_played = status.first_played_at
            self.s.turns.reply_started(turn.turn_id)
        if status.finished and status.samples_played > 0:
            self.s.turns.reply_finished(turn.turn_id)

    # -- actions ------------------------------------------------------------------------
    def _execute(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Decode):
                self._decode(action)
            elif isinstance(action, SendFinal):
                self._send_final(action)
            elif isinstance(action, SendCancel):
                self._cancel(action)
            elif isinstance(action, Release):
                self.playout.release(action.turn_id)
                self._record(action.turn_id).committed = self._now()
            elif isinstance(action, StopReply):
                self._stop_reply(action.turn_id)
            elif isinstance(action, SendPartial):
                self._post(p.TranscriptPartial(turn_id=action.turn_id, text=action.text[:4000],
                                               stability=0.5))

    def _decode(self, action: Decode) -> None:
        replay = self.s.replay if action.final else None
        job = (None if replay is None
               else replay.job(action.start, action.upto, self.s.turns.answered_until))
        if job is None:
            stretch = Stretch(action.start, self.history.slice(action.start, action.upto))
            job = lambda: stretch  # noqa: E731
        future = self.worker.submit(job, action.upto, final=action.final)
        future.add_done_callback(lambda f: self._on_decoded(action, f))
        if self.lockstep:
            self._pending.append(future)

    def _hear(self, audio_for: Callable[[], Stretch]) -> Heard:
        """The recognizer thread's job: the audio (cancelled again, for a replay), then
        the transcript."""
        t0 = time.perf_counter()
        stretch = audio_for()
        replay_s = time.perf_counter() - t0
        return Heard(self.s.asr.transcribe(stretch.audio), stretch.audio, stretch.start,
                     replay_s)

    def _on_decoded(self, action: Decode, future: asyncio.Future[Decoded[Heard]]) -> None:
        if future.cancelled():
            return
        if future.exception() is not None:
            log.error("speech recognition failed: %s", future.exception())
            return
        decoded = future.result()
        heard = decoded.result
        self.stage_s["aec"] += heard.replay_s
        self.stage_s["asr"] += decoded.compute_s - heard.replay_s
        text = str(getattr(heard.transcript, "text", "")).strip()
        words = tuple(getattr(heard.transcript, "words", ()) or ())
        prosody = None
        if action.final:
            prosody = self._timed("prosody", self.s.prosody.measure, heard.audio, text, None)
            self._record(action.turn_id).asr_final = self._now()
        self._execute(self.s.turns.decoded(action.turn_id, action.upto, text, words, prosody,
                                           action.final, now=self._now(), start=heard.start))

    def _sound_end(self, vad_end: int) -> int:
        """The VAD's end of speech may trail the last sound (its windows and hangover); the
        waterfall of a turn sent to the cloud counts from the last sound, as a listener
        hears it."""
        lookback = max(self.history.start, vad_end - END_LOOKBACK)
        end = last_sound(self.history.slice(lookback, vad_end))
        return vad_end if end is None else lookback + end

    def _send_final(self, a: SendFinal) -> None:
        rec = self._record(a.turn_id)
        rec.user_text, rec.final_sent, rec.eou_confidence = a.text, self._now(), a.eou_confidence
        rec.prosody = wire_prosody(a.prosody)
        rec.start, rec.speech_end = a.start, self._sound_end(a.end)
        words = tuple(w for w in a.words if isinstance(w, p.WordTiming))[:256]
        self._post(p.TranscriptFinal(turn_id=a.turn_id, text=a.text[:4000], words=words,
                                     prosody=rec.prosody or p.Prosody(),
                                     eou_confidence=min(1.0, max(0.0, a.eou_confidence))))

    def _cancel(self, a: SendCancel) -> None:
        self._cancelled.add(a.turn_id)
        self.playout.discard(a.turn_id)
        self._record(a.turn_id).cancelled = True
        self._post(p.Cancel(turn_id=a.turn_id, reason=a.reason))

    def _stop_reply(self, turn_id: int) -> None:
        status = self.playout.discard(turn_id)
        self.playout.resume()
        self._cancelled.add(turn_id)
        rec = self._record(turn_id)
        rec.barged_in, rec.samples_heard = True, status.samples_played
        rec.heard_text = self.playout.heard_text(turn_id)
        self._post(p.BargeIn(turn_id=turn_id, samples_played=status.samples_played,
                             heard_text=rec.heard_text[:4000]))

    # -- uplink / downlink --------------------------------------------------------------
    def _post(self, msg: p.Message) -> None:
        if self.link is not None:
            self._outbox.put_nowait(msg)

    async def _send_loop(self) -> None:
        assert self.link is not None
        while True:
            msg = await self._outbox.get()
            try:
                await self.link.send(msg)
            finally:
                self._outbox.task_done()

    async def _downlink(self) -> None:
        assert self.link is not None
        async for msg in self.link:
            self._on_message(msg)

    def _on_message(self, msg: p.Message) -> None:
        turn_id = getattr(msg, "turn_id", None)
        if turn_id is not None and turn_id in self._cancelled:
            return
        if isinstance(msg, p.TtsChunk):
            self._on_chunk(msg)
        elif isinstance(msg, p.TtsStart):
            self._rates[msg.turn_id] = msg.sample_rate
        elif isinstance(msg, p.ResponseText):
            rec = self._record(msg.turn_id)
            rate = self._rates.get(msg.turn_id, PROCESSING_RATE)
            offset = msg.sample_offset * PROCESSING_RATE // rate
            self.playout.push_text(msg.turn_id, offset, msg.delta)
            rec.reply_text += msg.delta
        elif isinstance(msg, p.TtsEnd):
            self.playout.end(msg.turn_id)
        elif isinstance(msg, p.Metrics):
            self._record(msg.turn_id).cloud_ms.update(msg.stages_ms)
        elif isinstance(msg, p.Error):
            log.warning("cloud error %s: %s", msg.code, msg.message)

    def _on_chunk(self, msg: p.TtsChunk) -> None:
        rec = self._record(msg.turn_id)
        if rec.first_chunk is None:
            rec.first_chunk = self._now()
        samples = pcm16_to_float(msg.payload)
        offset = msg.sample_offset
        if msg.sample_rate != PROCESSING_RATE:
            rs = self._resamplers.setdefault(msg.turn_id,
                                             StreamResampler(msg.sample_rate, PROCESSING_RATE))
            samples = rs.push(samples)
            offset = int(offset * PROCESSING_RATE / msg.sample_rate)
        self.playout.push(msg.turn_id, offset, samples)

    # -- helpers ------------------------------------------------------------------------
    def _record(self, turn_id: int) -> TurnRecord:
        rec = self.records.get(turn_id)
        if rec is None:
            rec = self.records[turn_id] = TurnRecord(turn_id)
        return rec

    def _now(self) -> int:
        """The current position on the mic timeline (samples)."""
        sample, at = self._clock
        if self.lockstep:  # offline: the timeline only moves with the frames
            return sample
        return sample + int((time.perf_counter() - at) * PROCESSING_RATE)

    def _timed(self, stage: str, fn, *args):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        out = fn(*args)
        self.stage_s[stage] += time.perf_counter() - t0
        return out

    async def _drain_worker(self) -> None:
        for _ in range(200):
            if not self.worker.busy:
                return
            await asyncio.sleep(0.01)

    @property
    def clean_track(self) -> Samples:
        return np.concatenate(self.clean) if self.clean else np.zeros(0, np.float32)



def wire_prosody(features: object | None) -> p.Prosody | None:
    """The protocol's ``Prosody`` of whatever the prosody stage measured."""
    if features is None or isinstance(features, p.Prosody):
        return features
    to_message = getattr(features, "to_message", None)
    message = to_message() if callable(to_message) else None
    return message if isinstance(message, p.Prosody) else None


def last_sound(audio: Samples, frame: int = 160, below_peak_db: float = 30.0,
               floor_db: float = -55.0) -> int | None:
    """One past the last 10 ms frame of ``audio`` within ``below_peak_db`` of its loudest
    frame (and above ``floor_db`` dBFS); None when nothing in it is that loud."""
    level = frame_levels_db(audio, frame)
    if level.size == 0:
        return None
    loud = np.flatnonzero(level >= max(float(level.max()) - below_peak_db, floor_db))
    return int(loud[-1] + 1) * frame if loud.size else None

