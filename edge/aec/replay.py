"""Speech over the first reply, cancelled again for the recognizer with what was learned since.

From a cold start the linear filter learns the room while the agent talks. A user who talks
over the first second or two of the first reply reaches the recognizer behind a filter that
has barely started (and that learns slowly through their voice), and the suppressor, told
that much echo may be left, cuts into their words. By the time their turn is decoded, at the
end of their speech, the filter has learned much more. So a final decode of speech that
started before the canceller :attr:`~edge.aec.base.EchoCanceller.settled` gets the
recognizer's copy of that stretch cancelled again, from the raw mic and far end, by a
:meth:`~edge.aec.base.EchoCanceller.replica` of the canceller as it stands then, run from
``LEAD_S`` before the speech (the far end its filter reads, the suppressor's smoothing).

It costs a pass of the canceller over the stretch (~0.7 ms per 10 ms frame here) in the
recognizer's thread, and only where it can help: for speech that started before the
canceller settled (3 s of far end after a cold start, or when a remembered path took over)
and overlapped the far end. ``parley bench aec`` reports what it gives as ``aec``
(``aec_streamed``: without it); the README has the figures.

The same cold filter hides the start of such speech from the VAD, which runs on the live
clean output: it finds the user up to a second late, in pieces. So, given ``find_onset`` (the
pipeline's is :func:`edge.vad.speech_onset` with a VAD of its own), a replay also looks up to
``ONSET_S`` before the stretch: where the replayed clean signal shows that the speech the live
VAD heard begin (``preroll`` into the stretch) began earlier, the recognizer gets the audio from
there (and ``preroll`` before). So with ``find_onset`` speech the VAD heard begin up to
``ONSET_S`` after the canceller settled is replayed too (unless it was settled from the start,
as over a recording whose room was learned first): a remembered path that takes over
while the user talks (see :meth:`edge.aec.linear.LinearEchoStage.remember`) settles it in the
middle of their words, and the VAD may hear them only after (on the bench's saved audio, room
33's first sentence was heard 1.0 s after the takeover and lost without this).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edge.aec.base import EchoCanceller, cancel_recording
from edge.history import AudioHistory, Stretch
from shared.audio import PROCESSING_RATE, Samples

LEAD_S = 1.0
LONGEST_S = 20.0  # a longer stretch is not replayed (bounded cost; speech that long is rare)
ONSET_S = 1.5  # how far before the stretch its speech may have begun

# (clean audio, a sample in it) -> where the speech going on there began, or None
FindOnset = Callable[[Samples, int], int | None]


class EchoReplay:
    """The raw mic and far end of the last ``seconds`` that went into ``canceller``, and
    since when it has settled.

    Positions are on the canceller's output timeline (the pipeline's: the mic's, plus the
    canceller's ``latency_samples``).
    """

    def __init__(self, canceller: EchoCanceller, seconds: float = 60.0,
                 find_onset: FindOnset | None = None, preroll: int = 0) -> None:
        self.canceller = canceller
        self.find_onset, self.preroll = find_onset, preroll
        self._mic, self._far = AudioHistory(seconds), AudioHistory(seconds)
        self._settled_at: int | None = None
        self._hid = False  # some audio went through the canceller before it settled

    def push(self, mic: Samples, far: Samples) -> None:
        """One frame as it went into the canceller (call after ``cancel``)."""
        self._mic.append(np.asarray(mic, dtype=np.float32))
        self._far.append(np.asarray(far, dtype=np.float32))
        if not self.canceller.settled:  # a cold start, or a reset
            self._settled_at = None
            self._hid = True
        elif self._settled_at is None:
            self._settled_at = self._mic.end + self.canceller.latency_samples

    def job(self, start: int, end: int,
            not_before: int = 0) -> Callable[[], Stretch] | None:
        """What computes the recognizer's copy of ``[start, end)`` again (to run off the
        event loop), or None when the copy already streamed is as good: the canceller had
        settled before ``start`` (with ``find_onset``, and audio that went through it
        before it settled: ``ONSET_S`` before ``start``), or no far end
        played in the stretch or the seconds before it (or it is longer than ``LONGEST_S``).
        With ``find_onset``, the copy begins earlier where the speech did (never before
        ``not_before``, e.g. the end of a turn already answered). Jobs run one at a time
        (``find_onset`` may hold state)."""
        onset_s = ONSET_S if self.find_onset is not None and self._hid else 0.0
        if ((self._settled_at is not None
             and start - int(onset_s * PROCESSING_RATE) >= self._settled_at)
                or end - start > LONGEST_S * PROCESSING_RATE):
            return None
        lat = self.canceller.latency_samples
        first, last = max(self._mic.start, start - lat), end - lat
        search = first
        if self.find_onset is not None:
            search = min(first, max(self._mic.start, not_before - lat,
                                    first - int(ONSET_S * PROCESSING_RATE)))
        lead = max(self._mic.start, search - int(LEAD_S * PROCESSING_RATE))
        far = self._far.slice(lead, last)
        if not far.any():
            return None
        mic = self._mic.slice(lead, last)
        replica = self.canceller.replica(back=self._mic.end - lead)
        find_onset = self.find_onset

        def replay() -> Stretch:
            out = cancel_recording(replica, mic, far)
            begin = first
            heard_at = min(first + self.preroll, last) - search  # the VAD's onset, live
            onset = (None if find_onset is None
                     else find_onset(out.clean[search - lead:], heard_at))
            if onset is not None:
                begin = min(first, max(search, search + onset - self.preroll))
            return Stretch(begin + lat, out.for_asr[begin - lead:])

        return replay
