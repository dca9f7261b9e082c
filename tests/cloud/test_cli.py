"""``parley cloud serve`` / ``parley cloud token`` as a user runs them (real subprocesses)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cloud.auth import verify_token
from shared.link import connect
from shared.protocol import Metrics, TranscriptFinal, TtsChunk

PARLEY = str(Path(sys.executable).with_name("parley"))
SECRET = "cli-test-secret-0123456789abc"


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PARLEY_TOKEN_SECRET": SECRET, **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_token_prints_a_token_the_tier_accepts() -> None:
    out = subprocess.run([PARLEY, "cloud", "token", "--device", "kiosk-1", "--ttl", "60"],
                         capture_output=True, text=True, env=env(), check=True).stdout.strip()
    grant = verify_token(SECRET.encode(), out)
    assert grant.device_id == "kiosk-1" and grant.expires_at - time.time() <= 60


def test_a_bad_device_id_is_one_line() -> None:
    run = subprocess.run([PARLEY, "cloud", "token", "--device", "no spaces"],
                         capture_output=True, text=True, env=env())
    assert run.returncode != 0
    assert run.stderr.strip().count("\n") == 0 and "device id" in run.stderr


def test_serve_on_a_port_in_use_says_so_in_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = subprocess.run([PARLEY, "cloud", "serve", "--port", str(port)],
                             capture_output=True, text=True, env=env(), timeout=60)
    assert run.returncode == 1
    assert run.stderr.strip() == f"parley: error: port {port} on 127.0.0.1 is in use; " \
                                 "pick another with --port"


@pytest.mark.slow
@pytest.mark.ray
def test_serve_answers_an_edge_and_stops_cleanly_on_ctrl_c(cloud_models: None) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [PARLEY, "cloud", "serve", "--port", str(port)], stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True,
        env=env(PARLEY_LLM_INSTANCES="1", PARLEY_LLM_SPARES="1"))
    try:
        assert proc.stdout is not None
        url, seen = f"http://127.0.0.1:{port}", []
        for _ in range(20):  # printed once it is up (Ray may print a warning of its own first)
            seen.append(proc.stdout.readline())
            if not seen[-1] or url in seen[-1]:
                break
        assert url in seen[-1], seen
        audio = asyncio.run(one_turn(f"http://127.0.0.1:{port}"))
        assert audio > 8000  # more than half a second of reply audio at 16 kHz
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def one_turn(url: str) -> int:
    from cloud.auth import issue_token

    link = await connect(url, issue_token(SECRET.encode(), "cli-edge", 60))
    samples = 0
    try:
        await link.send(TranscriptFinal(turn_id=1, text="Hello, who are you?"))
        async for msg in link:
            if isinstance(msg, TtsChunk):
                samples += len(msg.payload) // 2
            if isinstance(msg, Metrics):
                break
    finally:
        await link.close()
    return samples
