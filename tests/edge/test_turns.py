"""Turn-taking rules, driven with a scripted policy and a sample clock (no audio, no models)."""

from __future__ import annotations

from dataclasses import dataclass

from edge.turns import (
    Decode,
    FixedTimeoutPolicy,
    Release,
    SendCancel,
    SendFinal,
    StopReply,
    TurnDecision,
    TurnTaker,
    TurnTimings,
)

MS = 16  # samples per millisecond


@dataclass
class TwoStepPolicy:
    """Speculates after 100 ms of pause, commits after 400 ms."""

    def decide(self, pause_ms: float, text: str, prosody: object | None) -> TurnDecision:
        return TurnDecision(probability=min(1.0, pause_ms / 400), speculate=pause_ms >= 100,
                            commit=pause_ms >= 400)


def speak(tt: TurnTaker, start_ms: int, end_ms: int, text: str) -> list[object]:
    """The user speaks from start to end; the VAD reports the end 100 ms later; decode runs."""
    actions: list[object] = list(tt.speech_started(start_ms * MS))
    actions += tt.speech_ended(end_ms * MS, (end_ms + 100) * MS)
    decode = [a for a in actions if isinstance(a, Decode)]
    if decode:
        d = decode[-1]
        actions += tt.decoded(d.turn_id, d.upto, text, (), None, final=True)
    return actions


def run_pause(tt: TurnTaker, from_ms: int, to_ms: int) -> list[object]:
    out: list[object] = []
    for now in range(from_ms, to_ms, 50):
        out += tt.tick(now * MS, speaking=False)
    return out


def kinds(actions: list[object]) -> list[str]:
    return [type(a).__name__ for a in actions]


def test_a_pause_long_enough_ends_the_turn_and_releases_the_reply() -> None:
    tt = TurnTaker(FixedTimeoutPolicy(300), TurnTimings(partial_every=0))
    speak(tt, 0, 2000, "What time do you close?")
    actions = run_pause(tt, 2100, 2300)
    assert kinds(actions) == []
    actions = run_pause(tt, 2300, 2350)
    assert kinds(actions) == ["SendFinal", "Release"]
    final = actions[0]
    assert isinstance(final, SendFinal) and final.text == "What time do you close?"


def test_user_resuming_after_an_early_final_withdraws_it_and_the_full_turn_is_answered() -> None:
    tt = TurnTaker(TwoStepPolicy(), TurnTimings(partial_every=0))
    speak(tt, 0, 800, "Hello!")
    early = run_pause(tt, 900, 1000)
    assert kinds(early) == ["SendFinal"]  # speculative: the cloud starts, nothing plays yet
    first_id = early[0].turn_id  # type: ignore[attr-defined]
    resumed = tt.speech_started(1100 * MS)
    assert resumed == [SendCancel(first_id, "user continued")]
    speak_more = tt.speech_ended(2500 * MS, 2600 * MS)
    d = speak_more[0]
    assert isinstance(d, Decode) and d.start <= 0  # the whole turn is decoded again
    tt.decoded(d.turn_id, d.upto, "Hello! What time do you close?", (), None, final=True)
    done = run_pause(tt, 2600, 3100)
    finals = [a for a in done if isinstance(a, SendFinal)]
    assert [f.text for f in finals] == ["Hello! What time do you close?"]
    assert finals[0].turn_id != first_id
    assert Release(finals[0].turn_id) in done


def test_speaking_over_a_playing_reply_is_a_barge_in() -> None:
    tt = TurnTaker(FixedTimeoutPolicy(200), TurnTimings(partial_every=0))
    speak(tt, 0, 1000, "Tell me a story.")
    actions = run_pause(tt, 1100, 1300)
    turn_id = actions[0].turn_id  # type: ignore[attr-defined]
    tt.reply_started(turn_id)
    assert tt.speech_started(3000 * MS) == [StopReply(turn_id)]
    assert tt.current is not None and tt.current.turn_id != turn_id


def test_resuming_after_the_commit_but_before_hearing_the_reply_continues_the_turn() -> None:
    tt = TurnTaker(FixedTimeoutPolicy(200), TurnTimings(partial_every=0))
    speak(tt, 0, 1000, "I need a taxi")
    actions = run_pause(tt, 1100, 1300)
    assert kinds(actions) == ["SendFinal", "Release"]
    assert kinds(tt.speech_started(1500 * MS)) == ["SendCancel"]
    assert tt.current is not None and tt.current.start == 0


def test_a_final_that_heard_the_speech_begin_earlier_moves_the_turns_start_back() -> None:
    # A late VAD onset (echo cancellation still learning): the final decode found the user's
    # speech 600 ms before it, and the turn sent, and any later decode of it, start there.
    tt = TurnTaker(FixedTimeoutPolicy(200), TurnTimings(partial_every=0))
    tt.speech_started(1000 * MS)
    (d,) = tt.speech_ended(2000 * MS, 2100 * MS)
    assert isinstance(d, Decode) and d.start == 750 * MS  # the onset less the preroll
    tt.decoded(d.turn_id, d.upto, "I need a taxi", (), None, final=True, start=150 * MS)
    actions = run_pause(tt, 2100, 2300)
    final = next(a for a in actions if isinstance(a, SendFinal))
    assert final.start == 150 * MS and final.end == 2000 * MS
    assert tt.answered_until == 2000 * MS
    # a partial's start says nothing about where the speech began
    tt.speech_started(5000 * MS)
    tt.decoded(tt.next_turn_id - 1, 5500 * MS, "and", (), None, final=False, start=0)
    assert tt.current is not None and tt.current.start == 4750 * MS


def test_a_click_is_not_a_turn_and_silence_is_not_answered() -> None:
    tt = TurnTaker(FixedTimeoutPolicy(200), TurnTimings(partial_every=0))
    tt.speech_started(1000 * MS)
    assert tt.speech_ended(1000 * MS + 50, 1100 * MS) == []
    assert tt.current is None
    speak(tt, 2000, 3000, "")
    assert run_pause(tt, 3100, 3600) == []
    assert tt.current is None


def test_partials_are_requested_while_the_user_keeps_talking() -> None:
    tt = TurnTaker(FixedTimeoutPolicy(200), TurnTimings(partial_every=16000))
    tt.speech_started(0)
    requested = [a for now in range(0, 3000, 50) for a in tt.tick(now * MS, speaking=True)]
    assert [a.final for a in requested if isinstance(a, Decode)] == [False, False]


def test_the_naive_cascade_decodes_only_once_the_timeout_ended_the_turn() -> None:
    tt = TurnTaker(FixedTimeoutPolicy(500), TurnTimings(partial_every=0, decode_at_end=True))
    tt.speech_started(0)
    assert tt.speech_ended(1000 * MS, 1100 * MS) == []
    assert run_pause(tt, 1100, 1500) == []
    decode = run_pause(tt, 1500, 1550)
    assert len(decode) == 1 and isinstance(decode[0], Decode) and decode[0].upto == 1500 * MS
    tt.decoded(decode[0].turn_id, decode[0].upto, "What time is it?", (), None, final=True)
    assert kinds(run_pause(tt, 1550, 1600)) == ["SendFinal", "Release"]


def test_the_pause_decode_starts_when_the_level_falls_and_serves_the_confirmed_pause() -> None:
    tt = TurnTaker(FixedTimeoutPolicy(200), TurnTimings(partial_every=0))
    tt.speech_started(0)
    early = tt.speech_pausing(2000 * MS, 2032 * MS)
    assert len(early) == 1 and isinstance(early[0], Decode) and early[0].upto == 2032 * MS
    # offline runs get the result before the VAD confirms the pause: it waits
    assert tt.decoded(early[0].turn_id, early[0].upto, "What time is it?", (), None,
                      final=True, now=2040 * MS) == []
    assert tt.speech_ended(2000 * MS, 2064 * MS) == []  # confirmed: no second decode
    actions = run_pause(tt, 2200, 2250)
    assert kinds(actions) == ["SendFinal", "Release"] and actions[0].text == "What time is it?"


def test_a_result_arriving_after_the_confirmation_ends_the_turn_too() -> None:
    tt = TurnTaker(FixedTimeoutPolicy(200), TurnTimings(partial_every=0))
    tt.speech_started(0)
    (early,) = tt.speech_pausing(2000 * MS, 2032 * MS)
    assert tt.speech_ended(2000 * MS, 2064 * MS) == []
    assert isinstance(early, Decode)
    actions = tt.decoded(early.turn_id, early.upto, "Hi there.", (), None, final=True,
                         now=2250 * MS)
    assert kinds(actions) == ["SendFinal", "Release"]


def test_when_the_user_goes_on_the_early_decode_is_a_partial_and_the_pause_is_decoded_again(
) -> None:
    tt = TurnTaker(FixedTimeoutPolicy(200), TurnTimings(partial_every=0))
    tt.speech_started(0)
    (early,) = tt.speech_pausing(1000 * MS, 1032 * MS)
    assert isinstance(early, Decode)
    tt.decoded(early.turn_id, early.upto, "I'd like", (), None, final=True, now=1040 * MS)
    went_on = tt.tick(1150 * MS, speaking=True)  # no confirmation came: the user went on
    assert kinds(went_on) == ["SendPartial"] and went_on[0].text == "I'd like"
    later = tt.speech_ended(2500 * MS, 2600 * MS)  # a pause the level did not announce
    assert len(later) == 1 and isinstance(later[0], Decode) and later[0].upto == 2600 * MS
    # a late result of an older decode does not answer the new pause
    assert tt.decoded(early.turn_id, early.upto, "I'd like", (), None, final=True,
                      now=2650 * MS) == []
    tt.decoded(later[0].turn_id, later[0].upto, "I'd like a coffee.", (), None, final=True)
    actions = run_pause(tt, 2700, 2750)
    assert kinds(actions) == ["SendFinal", "Release"]
    assert actions[0].text == "I'd like a coffee."
