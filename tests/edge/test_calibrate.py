"""``parley edge calibrate`` (edge/calibrate.py): the room's echo learned before the first
conversation, kept where the live agent starts from.

Real cancellers, the simulated room as the speaker -> mic path of a file device."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from edge.aec import EchoCanceller, EchoSettings
from edge.aec.base import cancel_recording
from edge.aec.erle import near_end_loss
from edge.aec.linear import NumpyEchoCanceller
from edge.aec.livekit_apm import LivekitEchoCanceller
from edge.aec.memory import load_echo_path
from edge.audio_io import FileDuplex
from edge.calibrate import CalibrationError, calibrate, calibration_sound
from edge.config import load_settings
from edge.factory import PassThrough, echo_canceller
from edge.live import start_echo_canceller
from edge.room import EchoPath, RoomSpec, Scene
from tests.fresh import fresh_scene

IMPLEMENTATIONS: dict[str, Callable[[EchoSettings], EchoCanceller]] = {
    "numpy": NumpyEchoCanceller,
    "livekit": LivekitEchoCanceller,
}


@cache
def scene(seed: int) -> Scene:
    return fresh_scene("double_talk", seed)


def room_device(room: RoomSpec | None, seconds: float, noise_db: float = -60.0) -> FileDuplex:
    """A file device in ``room``: the mic hears the room's own noise plus the speaker's echo
    (none without a room)."""
    n = int(seconds * 16000)
    noise = np.random.default_rng(1).standard_normal(n) * 10 ** (noise_db / 20)
    return FileDuplex(noise.astype(np.float32), realtime=False,
                      echo=None if room is None else EchoPath(room))


def calibrated(impl: str, room: RoomSpec, keep: Path) -> None:
    sound = calibration_sound(6.0, -24.0)
    found = asyncio.run(calibrate(room_device(room, sound.size / 16000), IMPLEMENTATIONS[impl](
        EchoSettings()), sound, keep))
    assert abs(found.delay_ms - room.delay_ms) < 3.0
    assert found.heard_db > 25.0 and found.cancelled_db > 20.0, found


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_after_calibrating_the_first_reply_keeps_the_users_voice(impl: str,
                                                                 tmp_path: Path) -> None:
    # The user talks over the agent's very first reply (rooms 0 and 4). From a cold start
    # the suppressor cuts part of their speech; after the room was calibrated with noise, the
    # remembered path takes over and almost none is cut.
    for seed in (0, 4):
        s = scene(seed)
        keep = tmp_path / f"room{seed}.npz"
        calibrated(impl, s.room, keep)
        echo = s.mic - s.near - s.noise
        cold = cancel_recording(IMPLEMENTATIONS[impl](EchoSettings()), s.mic, s.far)
        canceller = IMPLEMENTATIONS[impl](EchoSettings())
        canceller.remember(load_echo_path(keep))
        warm = cancel_recording(canceller, s.mic, s.far)
        assert canceller.stats.remembered_path == "taken over"
        before = near_end_loss(cold.clean, s.near, s.double_talk, echo=echo).eaten
        after = near_end_loss(warm.clean, s.near, s.double_talk, echo=echo).eaten
        assert after <= 0.02 and after <= before / 2, (seed, before, after)


class Devices:
    """Opens file devices in ``room`` for a live start, and keeps them."""

    def __init__(self, room: RoomSpec | None) -> None:
        self.room, self.opened = room, []

    def __call__(self) -> FileDuplex:
        self.opened.append(room_device(self.room, calibration_sound().size / 16000))
        return self.opened[-1]


def test_the_first_live_start_learns_the_room_first_and_later_ones_do_not(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = scene(0)
    settings = load_settings(aec="numpy", aec_memory=str(tmp_path / "path.npz"))
    devices = Devices(s.room)
    canceller = echo_canceller(settings)
    asyncio.run(start_echo_canceller(canceller, settings, devices))
    # the speaker played the noise, the path was kept, and the canceller starts from it:
    # over the first reply (the user talking over it) the kept path takes over
    assert len(devices.opened) == 1
    played = devices.opened[0].speaker_track
    assert 20 * np.log10(np.sqrt(np.mean(np.square(played[8800:-8800])))) == pytest.approx(
        -24.0, abs=0.5)
    assert (tmp_path / "path.npz").exists()
    assert "learned the room: delay" in caplog.text
    cancel_recording(canceller, s.mic, s.far)
    assert canceller.stats.remembered_path == "taken over"
    # the next start: no noise, the kept path
    again = echo_canceller(settings)
    asyncio.run(start_echo_canceller(again, settings, devices))
    assert len(devices.opened) == 1 and again.stats.remembered_path == "on probation"


def test_a_first_live_start_whose_calibration_fails_says_why_and_goes_on_cold(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(aec="numpy", aec_memory=str(tmp_path / "path.npz"))
    canceller = echo_canceller(settings)
    asyncio.run(start_echo_canceller(canceller, settings, Devices(None)))  # speaker silent
    lines = [r.getMessage() for r in caplog.records if "hardly heard" in r.getMessage()]
    assert len(lines) == 1 and "learned from the first reply instead" in lines[0]
    assert canceller.stats.remembered_path == "none" and not (tmp_path / "path.npz").exists()


def test_without_calibrate_first_a_live_start_plays_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(aec="numpy", aec_memory=str(tmp_path / "path.npz"),
                             calibrate_first=False)
    devices = Devices(scene(0).room)
    canceller = echo_canceller(settings)
    asyncio.run(start_echo_canceller(canceller, settings, devices))
    assert not devices.opened and canceller.stats.remembered_path == "none"
    assert "learned from the first reply ('parley edge calibrate'" in caplog.text
    # and with echo cancellation off there is nothing to learn and nothing to say
    caplog.clear()
    settings = load_settings(aec="off", aec_memory=str(tmp_path / "path.npz"))
    asyncio.run(start_echo_canceller(PassThrough(), settings, devices))
    assert not devices.opened and not caplog.records


def test_a_silent_speaker_keeps_nothing_and_says_what_to_check(tmp_path: Path) -> None:
    keep = tmp_path / "path.npz"
    sound = calibration_sound(4.0, -24.0)
    with pytest.raises(CalibrationError, match=r"hardly heard.*speaker on"):
        asyncio.run(calibrate(room_device(None, sound.size / 16000),
                              NumpyEchoCanceller(EchoSettings()), sound, keep))
    assert not keep.exists()


def test_another_sound_during_calibration_keeps_nothing_and_says_so(tmp_path: Path) -> None:
    # Someone runs a vacuum cleaner (loud noise the speaker did not play) once the
    # calibration noise has started: the echo is heard, but what is left is not echo.
    room = scene(0).room
    keep = tmp_path / "path.npz"
    sound = calibration_sound(6.0, -24.0)
    device = room_device(room, sound.size / 16000)
    other = np.random.default_rng(5).standard_normal(sound.size) * 10 ** (-30 / 20)
    device.mic = (device.mic + np.where(np.arange(sound.size) > 16000, other, 0.0)).astype(
        np.float32)
    with pytest.raises(CalibrationError, match=r"heard but only .* something else"):
        asyncio.run(calibrate(device, NumpyEchoCanceller(EchoSettings()), sound, keep))
    assert not keep.exists()


def test_the_shortest_noise_the_command_allows_is_enough_and_shorter_is_refused(
        tmp_path: Path) -> None:
    room = scene(0).room
    keep = tmp_path / "path.npz"
    sound = calibration_sound(4.0, -24.0)  # the CLI's minimum
    asyncio.run(calibrate(room_device(room, sound.size / 16000),
                          NumpyEchoCanceller(EchoSettings()), sound, keep))
    assert load_echo_path(keep).delay_samples > 0
    keep.unlink()
    sound = calibration_sound(2.5, -24.0)
    with pytest.raises(CalibrationError, match="too short"):
        asyncio.run(calibrate(room_device(room, sound.size / 16000),
                              NumpyEchoCanceller(EchoSettings()), sound, keep))
    assert not keep.exists()


def test_the_sound_is_quiet_then_noise_at_the_level_asked_then_quiet() -> None:
    sound = calibration_sound(3.0, -24.0)
    assert np.all(sound[:8000] == 0) and np.all(sound[-8000:] == 0)
    rms = float(np.sqrt(np.mean(np.square(sound[8000 + 800: -8000 - 800]))))
    assert 20 * np.log10(rms) == pytest.approx(-24.0, abs=0.5)


def test_without_audio_devices_the_command_says_so_in_one_line(tmp_path: Path) -> None:
    keep = tmp_path / "path.npz"
    parley = str(Path(sys.executable).with_name("parley"))
    done = subprocess.run([parley, "edge", "calibrate", "--echo-memory", str(keep)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "file mode" in lines[0] and "Traceback" not in done.stderr
    assert not keep.exists()
