"""The echo path a canceller learned, kept across restarts (edge/aec/memory.py).

A restart in the same room starts from what the last run learned, and the user talking over
the first reply loses less of their voice; another room's path, or one whose delay moved
with the device's latency, never makes the start worse than a cold one; a bad file costs one
log line and a cold start.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from edge.aec import FRAME_SAMPLES, EchoCanceller, EchoSettings
from edge.aec.base import Cancelled, cancel_recording
from edge.aec.erle import erle_db, erle_report, near_end_loss
from edge.aec.filter import FarEndSpectra
from edge.aec.linear import NumpyEchoCanceller
from edge.aec.livekit_apm import LivekitEchoCanceller
from edge.aec.memory import (
    EchoMemoryError,
    LearnedEchoPath,
    keep_echo_path,
    load_echo_path,
    recall_echo_path,
    save_echo_path,
)
from edge.aec.shadow import ShadowedEchoFilter
from edge.room import EchoPath, RoomSpec, Scene, SceneLevels
from tests.fresh import fresh_call, fresh_scene

IMPLEMENTATIONS: dict[str, Callable[[EchoSettings], EchoCanceller]] = {
    "numpy": NumpyEchoCanceller,
    "livekit": LivekitEchoCanceller,
}
MEASURE = EchoSettings(comfort_noise=False)  # ERLE without comfort noise (see test_aec.py)


@cache
def scene(kind: str, seed: int) -> Scene:
    return fresh_scene(kind, seed)


@cache
def early_talker(seed: int) -> Scene:
    """Room ``seed``'s double talk with the user talking from 0.5 s into the reply."""
    s = fresh_call("edge.room:build_scene", "double_talk", seed, None,
                   SceneLevels(near_start_s=0.5))
    assert isinstance(s, Scene)
    return s


@cache
def learned(impl: str, seed: int) -> LearnedEchoPath:
    """What ``impl`` learned of room ``seed`` over the agent's first reply."""
    far = scene("far_only", seed)
    canceller = IMPLEMENTATIONS[impl](EchoSettings())
    cancel_recording(canceller, far.mic, far.far)
    path = canceller.echo_path()
    assert path is not None
    return path


def later(x: np.ndarray, samples: int) -> np.ndarray:
    """``x`` delayed by ``samples`` (earlier if negative), same length."""
    out = np.zeros_like(x)
    if samples >= 0:
        out[samples:] = x[: x.size - samples]
    else:
        out[:samples] = x[-samples:]
    return out


def talk_over_first_reply(impl: str, seed: int, memory: LearnedEchoPath | None,
                          latency_change: int = 0, settings: EchoSettings = EchoSettings(),
                          early: bool = False) -> tuple[Cancelled, np.ndarray, str]:
    """The user talks over the first reply after a (re)start (from 0.5 s into it if
    ``early``); the device's output latency may have changed by ``latency_change`` samples
    since ``memory`` was learned. Returns both outputs, the mic, and what became of the
    remembered path."""
    s = early_talker(seed) if early else scene("double_talk", seed)
    mic = later(s.echo, latency_change) + s.near + s.noise
    canceller = IMPLEMENTATIONS[impl](settings)
    if memory is not None:
        canceller.remember(memory)
    out = cancel_recording(canceller, mic, s.far)
    return out, mic, canceller.stats.remembered_path


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("latency_change", [0, 400, -160])
def test_a_restart_in_the_same_room_keeps_more_of_the_users_voice(impl: str,
                                                                 latency_change: int) -> None:
    # The user talks over the first reply 1.5 s into it (rooms 0 and 4). From a cold
    # start the suppressor still cuts 4-7 % of their speech frames by more than 10 dB;
    # from the remembered path 0-1 %, also when the device's latency moved by 25 ms or 10 ms
    # in between. The echo stays removed (ERLE over the agent-only parts: 31-47 dB).
    for seed in (0, 4):
        s = scene("double_talk", seed)
        memory = learned(impl, seed)
        cold, mic, _ = talk_over_first_reply(impl, seed, None, latency_change)
        warm, _, fate = talk_over_first_reply(impl, seed, memory, latency_change)
        assert fate == "taken over"
        echo = mic - s.near - s.noise
        before = near_end_loss(cold.clean, s.near, s.double_talk, echo=echo).eaten
        after = near_end_loss(warm.clean, s.near, s.double_talk, echo=echo).eaten
        assert after <= 0.02 and after <= before / 2, (seed, before, after)
        measured, _, _ = talk_over_first_reply(impl, seed, memory, latency_change, MEASURE)
        erle = erle_report(mic, measured.clean, s.far_only).whole_db
        assert erle >= 25.0, (seed, erle)


def filtered(filters: list[ShadowedEchoFilter], far: np.ndarray, mic: np.ndarray,
             ) -> list[np.ndarray]:
    """``mic`` minus each filter's echo estimate, the far end read from where it plays."""
    n = FRAME_SAMPLES
    history, out = FarEndSpectra(n, 25), [np.zeros(far.size) for _ in filters]
    for i in range(0, far.size - n + 1, n):
        history.push(far[i: i + n])
        window = history.window(0, 24)
        for f, o in zip(filters, out, strict=True):
            o[i: i + n] = f.process(mic[i: i + n], *window).error
    return out


@pytest.mark.parametrize("seed", [0, 4])
def test_a_filter_started_from_a_kept_path_goes_on_as_the_one_that_learned_it(seed: int) -> None:
    # A filter learns a room from 6 s of noise (as `parley edge calibrate` plays); another
    # starts from what it learned (a restart). The user then talks over the agent from 0.5 s
    # on: the restarted filter takes as much echo off as the one that learned it (23.2 and
    # 19.6 dB in rooms 0 and 4). With its shadow as unsure as a cold one, it learned the
    # user's voice: 3 and 6 dB less.
    room = EchoPath(RoomSpec(delay_ms=25.0, rt60_s=0.4, echo_gain_db=-6.0, seed=seed))
    band = signal.butter(8, 7000, fs=16000, output="sos")
    noise = signal.sosfilt(band, np.random.default_rng(5).standard_normal(16000 * 6) * 0.05)
    learner = ShadowedEchoFilter(FRAME_SAMPLES, 24)
    filtered([learner], noise, room.apply(noise.astype(np.float32)).astype(np.float64))
    restarted = ShadowedEchoFilter(FRAME_SAMPLES, 24)
    restarted.load(learner.coefficients, learner.uncertainty)
    s = early_talker(seed)
    echo, user = room.apply(s.far).astype(np.float64), (s.near + s.noise).astype(np.float64)
    went_on, started = filtered([learner, restarted], s.far.astype(np.float64), echo + user)
    m = s.double_talk

    def erle(error: np.ndarray) -> float:
        return float(10 * np.log10(np.sum(echo[m] ** 2) / np.sum((error - user)[m] ** 2)))

    assert erle(started) >= erle(went_on) - 1.0, (erle(started), erle(went_on))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_the_remembered_path_takes_over_while_the_user_talks_from_the_start(impl: str) -> None:
    # The user talks over the first reply from 0.5 s on, before the delay is even estimated.
    # The remembered path proves itself in the bands their voice leaves to the echo, and
    # takes over early in their first sentence: the suppressor cuts 3 and 9 % of its frames
    # (rooms 0 and 4) by more than 10 dB, against 29 and 47 % from a cold start. (Proved on
    # whole frames, the path took over only after the sentence, which lost as much.)
    for seed in (0, 4):
        s = early_talker(seed)
        memory = learned(impl, seed)
        cold, mic, _ = talk_over_first_reply(impl, seed, None, early=True)
        warm, _, fate = talk_over_first_reply(impl, seed, memory, early=True)
        assert fate == "taken over"
        first = s.double_talk & (np.arange(mic.size) < s.near_spans[0][1])
        echo = mic - s.near - s.noise
        before = near_end_loss(cold.clean, s.near, first, echo=echo).eaten
        after = near_end_loss(warm.clean, s.near, first, echo=echo).eaten
        assert after <= before / 2, (seed, before, after)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_another_rooms_echo_path_changes_nothing(impl: str) -> None:
    # Room 3's path in room 0 takes ~2 dB off the echo where it should take 20: it never
    # takes over, and the run is exactly the cold start.
    cold, _, _ = talk_over_first_reply(impl, 0, None)
    wrong, _, fate = talk_over_first_reply(impl, 0, learned(impl, 3))
    assert fate == "dropped"
    assert np.array_equal(cold.clean, wrong.clean)
    assert np.array_equal(cold.for_asr, wrong.for_asr)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_the_takeover_lets_no_echo_through(impl: str) -> None:
    # The frame where the remembered path takes over is cancelled by it, with its own
    # predicted residual. (Cancelled by the cold filter and suppressed as if the remembered
    # path had done it, the cold filter's residual passed: two frames of echo 20-30 dB above
    # the frames around them, which Whisper heard as "Okay".)
    for seed in (0, 4):
        s = scene("double_talk", seed)
        canceller = IMPLEMENTATIONS[impl](MEASURE)
        canceller.remember(learned(impl, seed))
        n, lat = FRAME_SAMPLES, canceller.latency_samples
        out, took = np.zeros(s.mic.size), None
        for i in range(0, s.near_spans[0][0] - n, n):
            out[i: i + n] = canceller.process(s.mic[i: i + n], s.far[i: i + n])
            if took is None and canceller.stats.remembered_path == "taken over":
                took = i
        assert took is not None
        around = slice(took - 10 * n, took + 10 * n)
        mic, clean = s.mic[around], out[around][lat:]
        frames = clean[: clean.size // n * n].reshape(-1, n)
        erle = erle_db(mic[: frames.size], frames.reshape(-1))
        worst = 10 * np.log10(np.max(np.mean(frames**2, axis=1)) / np.mean(mic**2))
        assert worst < -erle + 10.0, (seed, erle, worst)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_the_devices_path_from_another_room_changes_nothing(impl: str) -> None:
    # The device was carried to another room: the same delay and level (its own speaker
    # and mic), other reflections. That path explains the direct sound, not the room: it
    # never proves itself, whenever the user starts talking, and the run is the cold start.
    room = scene("double_talk", 0).room
    other = dataclasses.replace(room, seed=room.seed + 100, rt60_s=0.5, drr_db=0.0)
    far = scene("far_only", 0)
    canceller = IMPLEMENTATIONS[impl](EchoSettings())
    cancel_recording(canceller, EchoPath(other).apply(far.far) + far.noise, far.far)
    path = canceller.echo_path()
    assert path is not None
    for early in (False, True):
        cold, _, _ = talk_over_first_reply(impl, 0, None, early=early)
        wrong, _, fate = talk_over_first_reply(impl, 0, path, early=early)
        assert fate == "dropped"
        assert np.array_equal(cold.clean, wrong.clean)


def test_the_echo_path_is_kept_in_a_file_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "state" / "echo-path.npz"
    memory = learned("numpy", 0)
    save_echo_path(memory, path)
    back = load_echo_path(path)
    assert back.delay_samples == memory.delay_samples
    assert np.array_equal(back.coefficients, memory.coefficients)
    assert np.array_equal(back.uncertainty, memory.uncertainty)
    restarted = NumpyEchoCanceller(EchoSettings())
    assert recall_echo_path(restarted, path)
    # Before the remembered path has proved itself (or been learned anew), the canceller
    # keeps it as it came: a restart that ends before the agent spoke loses nothing.
    assert keep_echo_path(restarted, path)
    assert np.array_equal(load_echo_path(path).coefficients, memory.coefficients)


def test_nothing_is_kept_before_anything_was_learned(tmp_path: Path) -> None:
    path = tmp_path / "echo-path.npz"
    assert not keep_echo_path(NumpyEchoCanceller(EchoSettings()), path)
    assert not path.exists()
    assert not recall_echo_path(NumpyEchoCanceller(EchoSettings()), path)  # no file: cold


def test_a_short_run_after_a_dropped_path_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    # Another room's path is dropped ~1 s into the reply; a run that ends 1 s later has not
    # learned enough of this room to replace what the file holds.
    path = tmp_path / "echo-path.npz"
    save_echo_path(learned("numpy", 3), path)
    far = scene("far_only", 0)
    canceller = NumpyEchoCanceller(EchoSettings())
    assert recall_echo_path(canceller, path)
    end = 2 * 16000 + 4000
    cancel_recording(canceller, far.mic[:end], far.far[:end])
    assert canceller.stats.remembered_path == "dropped"
    assert not keep_echo_path(canceller, path)
    assert np.array_equal(load_echo_path(path).coefficients, learned("numpy", 3).coefficients)


def test_the_remembered_path_survives_the_user_talking_over_the_start(tmp_path: Path) -> None:
    # The user starts 0.3 s into the first reply: the remembered path cannot prove itself
    # while they talk, but it removes more than the filter learning from cold, so it waits,
    # and takes over when they pause.
    s = scene("double_talk", 0)
    shift = s.near_spans[0][0] - int(0.3 * 16000)
    near = later(s.near, -shift)
    canceller = NumpyEchoCanceller(EchoSettings())
    canceller.remember(learned("numpy", 0))
    cancel_recording(canceller, s.echo + near + s.noise, s.far)
    assert canceller.stats.remembered_path == "taken over"


@pytest.mark.parametrize("content", [b"", b"not a zip file", b"PK\x03\x04garbage"])
def test_a_bad_file_costs_one_log_line_and_a_cold_start(tmp_path: Path, content: bytes,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "echo-path.npz"
    path.write_bytes(content)
    canceller = NumpyEchoCanceller(EchoSettings())
    with caplog.at_level(logging.WARNING):
        assert not recall_echo_path(canceller, path)
    (record,) = caplog.records
    assert "cold" in record.getMessage() and "\n" not in record.getMessage()
    assert canceller.echo_path() is None


def test_a_path_for_another_filter_length_is_refused(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "echo-path.npz"
    save_echo_path(learned("numpy", 0), path)
    longer = NumpyEchoCanceller(EchoSettings(tail_ms=400.0))
    with caplog.at_level(logging.WARNING):
        assert not recall_echo_path(longer, path)
    assert "tail_ms" in caplog.text
    with pytest.raises(EchoMemoryError, match="tail_ms"):
        longer.remember(load_echo_path(path))


def test_values_no_filter_could_have_learned_are_refused() -> None:
    memory = learned("numpy", 0)
    with pytest.raises(EchoMemoryError, match="complex"):
        LearnedEchoPath(memory.delay_samples, memory.coefficients.real, memory.uncertainty)
    with pytest.raises(EchoMemoryError, match="real"):
        LearnedEchoPath(memory.delay_samples, memory.coefficients, memory.uncertainty + 1j)
    with pytest.raises(EchoMemoryError, match="non-finite"):
        LearnedEchoPath(memory.delay_samples, memory.coefficients * np.nan, memory.uncertainty)
    with pytest.raises(EchoMemoryError, match="do not match"):
        LearnedEchoPath(memory.delay_samples, memory.coefficients, memory.uncertainty[1:])
    with pytest.raises(EchoMemoryError, match="out of range"):
        LearnedEchoPath(-5, memory.coefficients, memory.uncertainty)


def test_an_unwritable_place_costs_one_log_line(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    canceller = NumpyEchoCanceller(EchoSettings())
    canceller.remember(learned("numpy", 0))
    blocker = tmp_path / "file"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING):
        assert not keep_echo_path(canceller, blocker / "echo-path.npz")
    assert "cannot write the echo path" in caplog.text
    # A file that cannot replace the old one (here: a directory in its place) leaves nothing
    # behind either.
    taken = tmp_path / "taken"
    taken.mkdir()
    with caplog.at_level(logging.WARNING):
        assert not keep_echo_path(canceller, taken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "taken"]


def test_live_runs_keep_the_path_in_the_state_directory_unless_told_otherwise(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.config import load_settings

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert load_settings().echo_memory_file() == tmp_path / "parley" / "echo-path.npz"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/dir")  # the XDG spec: ignore it
    assert load_settings().echo_memory_file() == (
        Path.home() / ".local" / "state" / "parley" / "echo-path.npz")
    assert load_settings(aec_memory="off").echo_memory_file() is None
    mine = load_settings(aec_memory=str(tmp_path / "kiosk.npz"))
    assert mine.echo_memory_file() == tmp_path / "kiosk.npz"


def test_a_live_run_writes_the_path_down_while_it_runs(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # A power cut loses at most KEEP_ECHO_PATH_EVERY_S of what was learned (5 minutes; here
    # shortened).
    import asyncio

    from edge import live

    monkeypatch.setattr(live, "KEEP_ECHO_PATH_EVERY_S", 0.01)
    far = scene("far_only", 0)
    canceller = NumpyEchoCanceller(EchoSettings())
    cancel_recording(canceller, far.mic, far.far)
    path = tmp_path / "echo-path.npz"

    async def run_briefly() -> None:
        keeper = asyncio.create_task(live._keep_echo_path(canceller, path))
        await asyncio.sleep(0.2)
        keeper.cancel()

    asyncio.run(run_briefly())
    echo = canceller.echo_path()
    assert echo is not None
    assert np.array_equal(load_echo_path(path).coefficients, echo.coefficients)
