"""The reply's jitter buffer and the ledger of what the user heard."""

from __future__ import annotations

import numpy as np

from edge.playout import Playout, heard_words


def tone(n: int, value: float = 0.5) -> np.ndarray:
    return np.full(n, value, dtype=np.float32)


def test_nothing_plays_until_the_turn_is_released_and_prebuffered() -> None:
    po = Playout(prebuffer_samples=320)
    po.push(1, 0, tone(160))
    po.release(1)
    assert not po.pull(160).any()  # 160 < prebuffer
    po.push(1, 160, tone(160))
    assert po.pull(160).all()
    assert po.status(1).samples_played == 160


def test_every_sample_handed_to_the_speaker_is_counted_once() -> None:
    po = Playout(prebuffer_samples=0)
    po.release(1)
    po.push(1, 0, tone(1000))
    po.push(1, 500, tone(1000))  # overlaps what was received: trimmed, not played twice
    po.end(1)
    played = sum(int(po.pull(160, at_sample=i * 160).astype(bool).sum()) for i in range(20))
    assert played == 1500
    status = po.status(1)
    assert status.samples_played == 1500 and status.finished
    assert status.first_played_at == 0


def test_pause_silences_at_once_and_resume_continues_where_it_stopped() -> None:
    po = Playout(prebuffer_samples=0)
    po.release(1)
    po.push(1, 0, np.arange(1, 481, dtype=np.float32))
    first = po.pull(160)
    po.pause()
    assert not po.pull(160).any()
    po.resume()
    assert po.pull(160)[0] == first[-1] + 1


def test_discard_drops_the_rest_and_reports_what_was_heard() -> None:
    po = Playout(prebuffer_samples=0)
    po.release(7)
    po.push_text(7, 0, "The museum opens")
    po.push_text(7, 1000, "at nine in the morning.")
    po.push(7, 0, tone(2000))
    po.pull(1500)
    status = po.discard(7)
    assert status.samples_played == 1500
    assert po.heard_text(7) == "The museum opens at nine"
    assert not po.pull(160).any()


def test_heard_words_counts_a_cut_span_proportionally() -> None:
    texts = [(0, "one two three four")]
    assert heard_words(texts, played=500, total=1000) == "one two"
    assert heard_words(texts, played=0, total=1000) == ""
    assert heard_words(texts, played=1000, total=1000) == "one two three four"
