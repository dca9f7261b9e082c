"""Turn-taking on the edge, sans-IO: events in, actions out.

The agent (``edge/pipeline.py``) feeds VAD events, recognizer results and a clock; this
object decides when the user's turn is over, when to tell the cloud early, when a reply may
play, and when the user barged in. It does no I/O, so every timing rule is unit-tested with a
fake clock.

A user turn goes: speaking -> paused (a speculative decode of the audio so far runs; it
starts when the level first falls, one VAD window before the pause is confirmed) ->
 - the end-of-turn policy is confident enough to *speculate*: the final goes to the cloud
   early, while the edge keeps listening (the reply is held back);
 - confident enough to *commit* (or the hard maximum pause passed): the reply may play;
 - the user speaks again before the commit (or after it, before any reply was heard and
   within the continuation window): the early final is withdrawn with ``cancel`` and the
   turn goes on, so a wrong early guess costs compute, never a cut-off user;
 - the user speaks while the reply plays: barge-in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from shared.audio import PROCESSING_RATE


@dataclass(frozen=True, slots=True)
class TurnDecision:
    """The end-of-turn policy's view of the pause so far."""

    probability: float
    speculate: bool  # send the final now, hold the reply
    commit: bool  # the turn is over: the reply may play


class EndOfTurnPolicy(Protocol):
    def decide(self, pause_ms: float, text: str, prosody: object | None) -> TurnDecision: ...


# -- actions -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Decode:
    """Recognize the turn's audio from ``start`` to ``upto`` (samples on the mic timeline)."""

    turn_id: int
    start: int
    upto: int
    final: bool  # a speculative final (at a pause) rather than a partial


@dataclass(frozen=True, slots=True)
class SendFinal:
    turn_id: int
    text: str
    words: tuple[object, ...]
    eou_confidence: float
    start: int
    end: int  # estimated end of speech
    prosody: object | None


@dataclass(frozen=True, slots=True)
class SendCancel:
    turn_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Release:
    """The reply to ``turn_id`` may play."""

    turn_id: int


@dataclass(frozen=True, slots=True)
class StopReply:
    """The user talked over the reply to ``turn_id``: stop it and report what was heard."""

    turn_id: int


@dataclass(frozen=True, slots=True)
class SendPartial:
    turn_id: int
    text: str


Action = Decode | SendFinal | SendCancel | Release | StopReply | SendPartial


@dataclass
class UserTurn:
    """The user's turn being captured."""

    turn_id: int
    start: int
    speech_end: int | None = None  # set while paused
    pause_decided_at: int | None = None
    decoded_upto: int | None = None
    text: str = ""
    words: tuple[object, ...] = ()
    prosody: object | None = None
    final_sent: bool = False
    decode_requested: bool = False
    last_partial_at: int = 0
    history: list[str] = field(default_factory=list)
    # a decode started when the level fell, before the VAD confirmed the pause:
    early: tuple[int, int] | None = None  # (speech end, upto)
    early_result: tuple[str, tuple[object, ...], object | None] | None = None


@dataclass(frozen=True, slots=True)
class TurnTimings:
    """Samples (mic timeline) that decide the turn-taking rhythm."""

    preroll: int = int(0.25 * PROCESSING_RATE)
    partial_every: int = int(1.0 * PROCESSING_RATE)  # 0 disables partial hypotheses
    continuation_window: int = int(1.5 * PROCESSING_RATE)
    min_turn: int = int(0.2 * PROCESSING_RATE)  # shorter blips are not turns
    # a fall of the level the VAD has not confirmed after this long was not a pause
    early_expires: int = int(0.1 * PROCESSING_RATE)
    # The naive cascade (a baseline): recognize only once the pause has ended the turn,
    # instead of speculatively at the start of every pause.
    decode_at_end: bool = False


class TurnTaker:
    """The edge's turn-taking state machine."""

    def __init__(self, policy: EndOfTurnPolicy, timings: TurnTimings | None = None) -> None:
        self.policy = policy
        self.t = timings or TurnTimings()
        self.next_turn_id = 1
        self.current: UserTurn | None = None
        self.committed: UserTurn | None = None  # answered (or being answered) turn
        self.reply_heard = False  # some reply audio of ``committed`` reached the speaker
        self.answered_until = 0  # the end of speech of the last turn answered

    # -- events ----------------------------------------------------------------------------
    def speech_started(self, onset: int) -> list[Action]:
        if self.current is not None:  # resumed within the same turn
            return self._resume(self.current, "user continued")
        if self.committed is not None and self._may_continue(self.committed, onset):
            turn, self.committed = self.committed, None
            self.current = turn
            return self._resume(turn, "user continued after the end of turn")
        actions: list[Action] = []
        if self.committed is not None:
            actions.append(StopReply(self.committed.turn_id))
            self.committed = None
        self.current = UserTurn(turn_id=self._new_id(), start=max(0, onset - self.t.preroll))
        self.reply_heard = False
        return actions

    def speech_pausing(self, speech_end: int, decided_at: int) -> list[Action]:
        """The level fell (the VAD may confirm a pause at ``speech_end`` a window later):
        start the pause's speculative decode now. If the user goes on, it served as a
        partial."""
        turn = self.current
        if (turn is None or turn.speech_end is not None or self.t.decode_at_end
                or not self._long_enough(turn, speech_end)):
            return []
        turn.early, turn.early_result = (speech_end, decided_at), None
        turn.last_partial_at = decided_at
        return [Decode(turn.turn_id, turn.start, decided_at, final=True)]

    def speech_ended(self, speech_end: int, decided_at: int) -> list[Action]:
        turn = self.current
        if turn is None:
            return []
        early, early_result = turn.early, turn.early_result
        turn.early = turn.early_result = None
        turn.speech_end, turn.pause_decided_at = speech_end, decided_at
        if not self._long_enough(turn, speech_end):
            self.current = None  # a click or a cough: not a turn
            return []
        if self.t.decode_at_end:
            return []
        turn.decode_requested = True
        if early is not None and early[0] == speech_end:  # the pause the early decode saw
            turn.pause_decided_at = early[1]
            if early_result is None:
                return []  # on its way
            return self.decoded(turn.turn_id, early[1], *early_result, final=True, now=decided_at)
        return [Decode(turn.turn_id, turn.start, decided_at, final=True)]

    def decoded(self, turn_id: int, upto: int, text: str, words: tuple[object, ...],
                prosody: object | None, final: bool, now: int | None = None,
                start: int | None = None) -> list[Action]:
        """A decode finished; with ``now`` (a final at a pause) the policy is asked at once.
        A final that heard the speech begin before the turn's start (``start``: where its
        audio began) moves the turn's start back there."""
        turn = self.current
        if turn is None or turn.turn_id != turn_id:
            return []
        if final and start is not None:
            turn.start = min(turn.start, start)
        if not final:
            return [SendPartial(turn_id, text)] if text else []
        if turn.speech_end is None and turn.early is not None and turn.early[1] == upto:
            turn.early_result = (text, words, prosody)  # the pause is not confirmed yet
            return []
        if turn.speech_end is None:  # the user went on: it was the words so far
            return [SendPartial(turn_id, text)] if text else []
        if upto < (turn.pause_decided_at or 0):
            return []  # stale: a later pause is being decoded
        turn.decoded_upto, turn.text, turn.words, turn.prosody = upto, text, words, prosody
        return [] if now is None else self.tick(now, speaking=False)

    def tick(self, now: int, speaking: bool) -> list[Action]:
        """Called every ~50 ms with the current mic sample."""
        turn = self.current
        if turn is None:
            return []
        if speaking:
            return self._expire_early(turn, now) + self._maybe_partial(turn, now)
        if turn.speech_end is None:
            return []
        pause_ms = (now - turn.speech_end) * 1000.0 / PROCESSING_RATE
        if turn.decoded_upto is None:
            return self._decode_at_end(turn, pause_ms, now)
        decision = self.policy.decide(pause_ms, turn.text, turn.prosody)
        return self._apply(turn, decision)

    def reply_started(self, turn_id: int) -> None:
        """The first sample of the reply to ``turn_id`` reached the speaker."""
        if self.committed is not None and self.committed.turn_id == turn_id:
            self.reply_heard = True

    def reply_finished(self, turn_id: int) -> None:
        if self.committed is not None and self.committed.turn_id == turn_id:
            self.committed = None

    # -- internals -------------------------------------------------------------------------
    def _apply(self, turn: UserTurn, decision: TurnDecision) -> list[Action]:
        actions: list[Action] = []
        if not turn.text.strip():
            if decision.commit:
                self.current = None  # silence or noise: nothing to answer
            return actions
        if (decision.speculate or decision.commit) and not turn.final_sent:
            turn.final_sent = True
            actions.append(SendFinal(turn.turn_id, turn.text, turn.words, decision.probability,
                                     turn.start, turn.speech_end or turn.start, turn.prosody))
        if decision.commit:
            actions.append(Release(turn.turn_id))
            turn.history.append(turn.text)
            self.committed, self.current = turn, None
            self.answered_until = turn.speech_end or turn.start
            self.reply_heard = False
        return actions

    def _decode_at_end(self, turn: UserTurn, pause_ms: float, now: int) -> list[Action]:
        if turn.decode_requested or not self.policy.decide(pause_ms, "", None).commit:
            return []
        turn.decode_requested = True
        turn.pause_decided_at = now
        return [Decode(turn.turn_id, turn.start, now, final=True)]

    def _long_enough(self, turn: UserTurn, speech_end: int) -> bool:
        return speech_end - turn.start >= self.t.min_turn + self.t.preroll // 2

    def _expire_early(self, turn: UserTurn, now: int) -> list[Action]:
        """The user went on after the level fell: the early decode was a partial."""
        if turn.early is None or now - turn.early[1] < self.t.early_expires:
            return []
        result, turn.early, turn.early_result = turn.early_result, None, None
        return [SendPartial(turn.turn_id, result[0])] if result and result[0] else []

    def _resume(self, turn: UserTurn, reason: str) -> list[Action]:
        actions: list[Action] = []
        if turn.final_sent:
            actions.append(SendCancel(turn.turn_id, reason))
            turn.turn_id = self._new_id()
            turn.final_sent = False
        turn.speech_end = turn.pause_decided_at = turn.decoded_upto = None
        turn.early = turn.early_result = None
        turn.decode_requested = False
        return actions

    def _may_continue(self, turn: UserTurn, onset: int) -> bool:
        if self.reply_heard or turn.speech_end is None:
            return False
        return onset - turn.speech_end <= self.t.continuation_window

    def _maybe_partial(self, turn: UserTurn, now: int) -> list[Action]:
        every = self.t.partial_every
        if every <= 0 or now - max(turn.start, turn.last_partial_at) < every:
            return []
        turn.last_partial_at = now
        return [Decode(turn.turn_id, turn.start, now, final=False)]

    def _new_id(self) -> int:
        turn_id = self.next_turn_id
        self.next_turn_id += 1
        return turn_id


@dataclass(frozen=True, slots=True)
class FixedTimeoutPolicy:
    """The classic rule: the turn is over after ``timeout_ms`` of silence (a baseline)."""

    timeout_ms: float = 500.0

    def decide(self, pause_ms: float, text: str, prosody: object | None) -> TurnDecision:
        done = pause_ms >= self.timeout_ms
        return TurnDecision(probability=1.0 if done else 0.0, speculate=done, commit=done)
