"""Echo canceller behaviour at the edges: misuse, silence, clipping, non-finite and absurd input,
reset, and the delay estimator on its own."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import signal

from edge.aec import FRAME_SAMPLES, EchoCanceller, EchoSettings, cancel_recording, cancel_signal
from edge.aec.delay import DelayEstimator, DelayTrack
from edge.aec.erle import ErleMeter, erle_db
from edge.aec.filter import FarEndSpectra, KalmanEchoFilter
from edge.aec.linear import NumpyEchoCanceller
from edge.aec.livekit_apm import LivekitEchoCanceller
from edge.room import EchoPath, RoomSpec, build_scene
from shared.errors import ConfigError

IMPLEMENTATIONS: dict[str, Callable[[EchoSettings], EchoCanceller]] = {
    "numpy": NumpyEchoCanceller,
    "livekit": LivekitEchoCanceller,
}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def canceller(request: pytest.FixtureRequest) -> EchoCanceller:
    """Default settings (comfort noise on)."""
    return IMPLEMENTATIONS[request.param](EchoSettings())


@pytest.fixture(params=list(IMPLEMENTATIONS))
def measuring(request: pytest.FixtureRequest) -> EchoCanceller:
    """Comfort noise off, so ERLE measures echo removal, not the scene's noise level."""
    return IMPLEMENTATIONS[request.param](EchoSettings(comfort_noise=False))


def frames(n: int, value: float = 0.0) -> np.ndarray:
    return np.full(n * FRAME_SAMPLES, value, dtype=np.float32)


def test_frames_of_the_wrong_size_are_refused(canceller: EchoCanceller) -> None:
    with pytest.raises(ValueError, match="160"):
        canceller.process(np.zeros(320, np.float32), np.zeros(320, np.float32))
    with pytest.raises(ValueError, match="160"):
        canceller.process(np.zeros((160, 2), np.float32), np.zeros(160, np.float32))


def test_silence_in_silence_out(canceller: EchoCanceller) -> None:
    out = cancel_signal(canceller, frames(300), frames(300))
    assert out.dtype == np.float32 and out.size == 300 * FRAME_SAMPLES
    assert float(np.max(np.abs(out))) < 1e-4
    assert canceller.stats.delay_ms is None and canceller.stats.erle_db == 0.0


def test_clipping_and_absurd_input_stay_finite_and_in_range(canceller: EchoCanceller) -> None:
    rng = np.random.default_rng(0)
    far = np.sign(rng.standard_normal(200 * FRAME_SAMPLES)).astype(np.float32)  # full scale
    mic = np.clip(3.0 * EchoPath(RoomSpec(delay_ms=50.0)).apply(far), -1, 1)  # clipped mic
    out = cancel_recording(canceller, mic, far)
    for x in (out.clean, out.for_asr):
        assert np.all(np.isfinite(x)) and float(np.max(np.abs(x))) <= 1.0
    absurd = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30] * 32, dtype=np.float32)
    for _ in range(20):
        frame = canceller.cancel(absurd, absurd)
        assert np.all(np.isfinite(frame.clean)) and np.all(np.isfinite(frame.for_asr))


def test_non_finite_input_does_not_poison_later_frames(measuring: EchoCanceller) -> None:
    canceller = measuring
    nan = np.full(FRAME_SAMPLES, np.nan, dtype=np.float32)
    for _ in range(30):
        canceller.process(nan, nan)
    s = build_scene("far_only", 0)
    out = np.concatenate([canceller.process(s.mic[i: i + 160], s.far[i: i + 160])
                          for i in range(0, s.mic.size - 159, 160)])
    lat = canceller.latency_samples
    assert erle_db(s.mic[: out.size - lat], out[lat:], s.far_only) >= 25.0


def test_reset_returns_to_a_cold_start(measuring: EchoCanceller) -> None:
    canceller = measuring
    s = build_scene("far_only", 2)
    cold = cancel_signal(canceller, s.mic, s.far)
    assert canceller.stats.delay_ms is not None
    canceller.reset()
    assert canceller.stats.frames == 0 and canceller.stats.delay_ms is None
    again = cancel_signal(canceller, s.mic, s.far)
    assert erle_db(s.mic, again, s.far_only) == pytest.approx(erle_db(s.mic, cold, s.far_only),
                                                              abs=0.5)


def test_unknown_kind_is_a_config_error() -> None:
    from edge.aec import create_echo_canceller

    with pytest.raises(ConfigError, match="unknown echo canceller"):
        create_echo_canceller(EchoSettings(kind="speex"))  # type: ignore[arg-type]


@pytest.mark.parametrize("delay_ms", [10.0, 47.3, 120.0, 200.0])
def test_delay_estimator_finds_the_delay_within_a_frame(delay_ms: float) -> None:
    s = build_scene("far_only", 3, room=RoomSpec(delay_ms=delay_ms, rt60_s=0.5, drr_db=-2.0,
                                                 seed=5))
    est = DelayEstimator()
    for i in range(0, s.mic.size - 159, 160):
        est.push(s.far[i: i + 160], s.mic[i: i + 160])
    assert est.delay_samples is not None
    assert abs(est.delay_samples - delay_ms * 16) < 160


def test_delay_estimator_ignores_a_silent_far_end_and_uncorrelated_sound() -> None:
    rng = np.random.default_rng(1)
    est = DelayEstimator()
    mic = rng.standard_normal(16000 * 3).astype(np.float32) * 0.1
    for i in range(0, mic.size, 160):
        est.push(np.zeros(160, np.float32), mic[i: i + 160])
    assert est.delay_samples is None
    far = rng.standard_normal(mic.size).astype(np.float32) * 0.1  # plays, but is not heard
    for i in range(0, mic.size, 160):
        est.push(far[i: i + 160], mic[i: i + 160])
    assert est.delay_samples is None


def _tracked(lags: np.ndarray, every: int = 640) -> tuple[DelayTrack, list[float]]:
    """A track fed one delay measurement every 40 ms; the jumps it reported."""
    track, jumps = DelayTrack(), []
    for i, lag in enumerate(lags):
        jump = track.add(float(i * every), float(lag))
        jumps += [jump] if jump else []
    return track, jumps


def test_clock_drift_is_read_from_a_sliding_delay_despite_stray_peaks() -> None:
    # A delay measured every 40 ms for 6 s, to ~0.15 samples, one reading in ten a stray
    # peak (a reflection, the user's voice): a 100 ppm drift reads 100 ppm, a steady clock 0.
    rng = np.random.default_rng(3)
    t = np.arange(150) * 640.0
    stray = rng.random(t.size) < 0.1
    noise = rng.normal(0.0, 0.15, t.size) + np.where(stray, rng.uniform(-300, 300, t.size), 0)
    for ppm in (-100.0, 30.0):
        track, jumps = _tracked(1500.0 + ppm * 1e-6 * t + noise)
        assert track.rate == pytest.approx(ppm * 1e-6, abs=2e-6) and not jumps
        later = t[-1] + 16000
        assert track.predict(later) == pytest.approx(1500.0 + ppm * 1e-6 * later, abs=0.3)
    steady, jumps = _tracked(1500.0 + noise)
    assert steady.rate == 0.0 and not jumps
    assert _tracked(1500.0 - 100e-6 * t[:12] + noise[:12])[0].rate == 0.0  # 0.44 s: too soon
    steady.reset()
    assert steady.rate == 0.0 and steady.predict(t[-1]) is None


def test_a_jump_of_a_few_samples_is_reported_once_and_drift_goes_on() -> None:
    # The device's buffering moves the delay 7 samples later at 3 s (an underrun): reported
    # once, 6 readings (~0.25 s) later; a drift measured before it is kept.
    rng = np.random.default_rng(4)
    t = np.arange(150) * 640.0
    step = np.where(t >= 3 * 16000, 7.0, 0.0)
    for ppm in (0.0, -100.0):
        track, jumps = _tracked(1500.0 + ppm * 1e-6 * t + step + rng.normal(0, 0.15, t.size))
        assert jumps == [pytest.approx(7.0, abs=0.3)]
        assert track.rate == pytest.approx(ppm * 1e-6, abs=2e-6)
    stray = np.where(rng.random(t.size) < 0.3, rng.uniform(3, 40, t.size), 0.0)
    assert not _tracked(1500.0 + stray)[1]  # off the line, but not together: no jump


def test_a_delay_track_that_no_longer_fits_is_forgotten() -> None:
    # Its first readings at one delay, then every later one 300 samples away (skipped as
    # strays): after the 8 s span the old line is gone and the new delay is followed.
    track = DelayTrack()
    for i in range(8):
        track.add(i * 640.0, 1800.0)
    for i in range(8, 400):
        track.add(i * 640.0, 1500.0)
    assert track.predict(400 * 640.0) == pytest.approx(1500.0)


def test_sliding_the_filter_moves_the_learned_echo_path() -> None:
    # The filter learns a room from noise (band-limited to 7 kHz, as anything resampled to
    # 16 kHz is), then its path moves 3 samples later, and 0.4 + 2.6 back.
    n = FRAME_SAMPLES
    room = EchoPath(RoomSpec(delay_ms=25.0, rt60_s=0.2, echo_gain_db=-6.0, seed=2))
    band = signal.butter(8, 7000, fs=16000, output="sos")
    far = signal.sosfilt(band, np.random.default_rng(5).standard_normal(n * 600) * 0.1)
    mic = room.apply(far.astype(np.float32)).astype(np.float64)
    kalman, history = KalmanEchoFilter(n, 24), FarEndSpectra(n, 25)
    for i in range(0, far.size, n):
        history.push(far[i: i + n])
        kalman.process(mic[i: i + n], *history.window(0, 24))
    learned = kalman.response
    kalman.slide(3.0)
    np.testing.assert_allclose(kalman.response[3:], learned[:-3], atol=1e-9)
    kalman.slide(-0.4)
    kalman.slide(-2.6)
    misfit = np.sum((kalman.response - learned) ** 2) / np.sum(learned**2)
    assert 10 * np.log10(misfit) < -40.0


def test_erle_meter_reads_the_level_drop_while_the_far_end_plays() -> None:
    meter = ErleMeter()
    far = np.full(160, 0.1)
    for _ in range(300):
        meter.update(far, far * 0.01, far)  # 40 dB quieter
    assert meter.erle_db == pytest.approx(40.0, abs=0.1)
    meter.update(far, far, np.zeros(160))  # far end silent: ignored
    assert meter.erle_db == pytest.approx(40.0, abs=0.1)
