"""The room simulation: the echo arrives after the configured delay, decays with the RT60, the
streaming form hears exactly what the whole-signal form hears, and scenes are reproducible."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import numpy as np
import pytest

from edge.room import (
    SCENE_KINDS,
    EchoPath,
    RoomSpec,
    Scene,
    SimulatedMic,
    build_scene,
    impulse_response,
    random_levels,
    random_room,
)
from shared.audio import PROCESSING_RATE


@cache
def scene(kind: str, seed: int) -> Scene:
    return build_scene(kind, seed)


def test_direct_path_arrives_after_the_configured_delay() -> None:
    for delay_ms in (20.0, 75.0, 150.0):
        ir = impulse_response(RoomSpec(delay_ms=delay_ms, seed=1))
        first = int(np.flatnonzero(np.abs(ir) > 0.5 * np.abs(ir).max())[0])
        assert abs(first - delay_ms * PROCESSING_RATE / 1000) <= 2


def test_echo_gain_and_decay_follow_the_spec() -> None:
    spec = RoomSpec(delay_ms=30.0, rt60_s=0.5, echo_gain_db=-6.0, seed=3)
    ir = impulse_response(spec).astype(np.float64)
    assert 10 * np.log10(np.sum(ir**2)) == pytest.approx(-6.0, abs=0.01)
    # Schroeder backward integration: the -5 dB .. -25 dB slope extrapolated to 60 dB.
    start = spec.delay_samples + int(0.01 * PROCESSING_RATE)
    energy = np.cumsum(ir[start:][::-1] ** 2)[::-1]
    curve = 10 * np.log10(energy / energy[0])
    t5, t25 = np.argmax(curve < -5), np.argmax(curve < -25)
    rt60 = 3.0 * (t25 - t5) / PROCESSING_RATE
    assert rt60 == pytest.approx(0.5, rel=0.25)


def test_streaming_echo_equals_whole_signal_echo() -> None:
    spec = RoomSpec(delay_ms=90.0, rt60_s=0.4, drive=1.5, seed=7)
    played = np.random.default_rng(0).uniform(-0.8, 0.8, 8000).astype(np.float32)
    whole = EchoPath(spec).apply(played)
    path = EchoPath(spec)
    streamed = np.concatenate([path.push(played[i: i + 160]) for i in range(0, 8000, 160)])
    np.testing.assert_allclose(streamed, whole, atol=1e-6)
    assert np.all(streamed[: spec.delay_samples - 10] == pytest.approx(0.0, abs=1e-6))


def _lag(far: np.ndarray, echo: np.ndarray) -> int:
    """Where ``echo`` correlates best with ``far`` (samples, 0-400)."""
    corr = [float(np.dot(far[: far.size - k], echo[k:])) for k in range(400)]
    return int(np.argmax(corr))


def test_clock_drift_shortens_the_delay_as_the_sound_plays() -> None:
    # The speaker's clock 200 ppm fast: ~10 s later the echo arrives 31 samples sooner.
    spec = RoomSpec(delay_ms=15.0, rt60_s=0.2, echo_gain_db=0.0, drr_db=20.0, seed=4)
    played = np.random.default_rng(2).standard_normal(16000 * 10).astype(np.float32) * 0.1
    steady = EchoPath(spec).apply(played)
    drifting = EchoPath(replace(spec, drift_ppm=200.0)).apply(played)
    first, last = slice(0, 4000), slice(16000 * 10 - 4000, 16000 * 10)  # quarter seconds
    assert _lag(played[first], drifting[first]) == _lag(played[first], steady[first]) == 240
    assert _lag(played[last], drifting[last]) == pytest.approx(240 - 31, abs=1)  # at 9.9 s
    assert drifting.size == played.size
    with pytest.raises(ValueError, match="whole signals"):
        EchoPath(replace(spec, drift_ppm=200.0)).push(played[:160])


def test_loudspeaker_clipping_compresses_loud_sound() -> None:
    loud = np.full(1600, 0.9, dtype=np.float32)
    clean = EchoPath(RoomSpec(speaker_highpass_hz=0.0)).loudspeaker(loud)
    driven = EchoPath(RoomSpec(speaker_highpass_hz=0.0, drive=2.0)).loudspeaker(loud)
    assert float(np.max(driven)) < 0.6 < float(np.max(clean))


@pytest.mark.parametrize("kind", SCENE_KINDS)
def test_scene_parts_add_up_and_masks_fit(kind: str) -> None:
    s = scene(kind, 2)
    np.testing.assert_allclose(s.mic, s.echo + s.near + s.noise, atol=1e-6)
    assert not np.any(s.far_only & s.double_talk) and not np.any(s.near_only & s.double_talk)
    if kind == "far_only":
        assert s.far_only.mean() > 0.5 and not s.near.any() and not s.near_texts
    if kind == "near_only":
        assert not s.far.any() and not s.echo.any() and s.near_only.any()
        assert len(s.near_texts) == 2
    if kind == "double_talk":
        assert s.double_talk.mean() > 0.2 and s.far_only.any()


def test_scenes_are_reproducible_and_seeds_differ() -> None:
    # eSpeak itself is not bit-exact from call to call (a few samples of length), so the
    # scene is compared by what it is made of.
    a, b = build_scene("double_talk", 5), scene("double_talk", 5)
    assert a.room == b.room and a.near_texts == b.near_texts
    assert abs(a.mic.size - b.mic.size) < 0.05 * PROCESSING_RATE
    assert a.near_spans[0][0] == b.near_spans[0][0]
    assert scene("far_only", 1).room != scene("far_only", 2).room


def test_random_rooms_cover_the_acceptance_ranges() -> None:
    rooms = [random_room(s) for s in range(40)]
    assert all(20 <= r.delay_ms <= 150 and 0.2 <= r.rt60_s <= 0.6 for r in rooms)
    assert any(r.drive > 0 for r in rooms) and any(r.drive == 0 for r in rooms)
    levels = [random_levels(s) for s in range(40)]
    assert all(-68 <= lv.noise_db <= -55 and 1.5 <= lv.near_start_s <= 4 for lv in levels)


def test_simulated_mic_hears_the_speaker_the_user_and_the_noise() -> None:
    spec = RoomSpec(delay_ms=40.0, rt60_s=0.3, echo_gain_db=-6.0, seed=2)
    mic = SimulatedMic(spec, noise_db=-60.0, seed=1)
    speaker = np.random.default_rng(3).uniform(-0.5, 0.5, 16000).astype(np.float32)
    user = np.zeros(16000, dtype=np.float32)
    user[8000:] = 0.1
    out = np.concatenate([mic.push(speaker[i: i + 160], user[i: i + 160])
                          for i in range(0, 16000, 160)])
    quiet = out[: spec.delay_samples - 20]  # before the echo arrives: noise only
    assert 20 * np.log10(np.std(quiet)) == pytest.approx(-60.0, abs=3.0)
    echo = EchoPath(spec).apply(speaker)
    assert abs(float(np.mean(out[12000:] - echo[12000:])) - 0.1) < 0.01
