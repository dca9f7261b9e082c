"""The wire format is frozen: these bytes are what protocol 1.x puts on the wire.

Regenerate (only for a deliberate, documented change): ``python tests/shared/test_golden.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from shared.protocol import (
    MESSAGE_TYPES,
    Ack,
    BargeIn,
    Cancel,
    Capabilities,
    Error,
    Hello,
    Message,
    Metrics,
    Ping,
    Pong,
    Prosody,
    ResponseText,
    TranscriptFinal,
    TranscriptPartial,
    TtsChunk,
    TtsEnd,
    TtsStart,
    WordTiming,
    decode,
    encode,
)

GOLDEN_DIR = Path(__file__).parent / "golden"

GOLDEN: dict[str, Message] = {
    "hello": Hello(
        role="edge",
        session_id="3f2a",
        resume_token="tok",
        capabilities=Capabilities(sample_rates=(16000, 22050), codecs=("pcm16", "opus")),
        last_seq_seen=7,
    ),
    "transcript.partial": TranscriptPartial(turn_id=3, seq=11, text="what time", stability=0.5),
    "transcript.final": TranscriptFinal(
        turn_id=3,
        seq=12,
        text="what time is it?",
        words=(WordTiming(word="what", start_s=0.12, end_s=0.3),),
        prosody=Prosody(
            f0_mean_hz=182.5,
            f0_range_hz=60.0,
            f0_final_slope_hz_per_s=45.0,
            energy_db=-23.0,
            speaking_rate_wps=2.75,
            pause_before_ms=None,
        ),
        eou_confidence=0.875,
    ),
    "response.text": ResponseText(turn_id=3, seq=4, delta="It is noon.", final=True,
                                  sample_offset=17640),
    "tts.start": TtsStart(turn_id=3, seq=5, codec="pcm16", sample_rate=22050),
    "tts.chunk": TtsChunk(
        turn_id=3,
        seq=6,
        chunk_index=0,
        codec="pcm16",
        sample_rate=22050,
        sample_offset=441,
        payload=bytes([0x01, 0x00, 0xFF, 0x7F]),
    ),
    "tts.end": TtsEnd(turn_id=3, seq=7, total_samples=443),
    "barge_in": BargeIn(turn_id=3, seq=13, samples_played=11025, heard_text="It is"),
    "cancel": Cancel(turn_id=3, seq=14, reason="barge_in"),
    "ack": Ack(last_seq=7),
    "ping": Ping(ping_id=1, t0=12.5),
    "pong": Pong(ping_id=1, t0=12.5, t1=100.25, t2=100.25),
    "metrics": Metrics(turn_id=3, seq=15, stages_ms={"asr_final": 120.5, "llm_first_token": 16.0}),
    "error": Error(code="version", message="peer speaks 2.0", fatal=True),
}


def golden_path(name: str) -> Path:
    return GOLDEN_DIR / f"{name}.bin"


def test_every_message_type_has_a_golden_fixture() -> None:
    assert sorted(GOLDEN) == sorted(cls.TYPE for cls in MESSAGE_TYPES)
    assert all(GOLDEN[cls.TYPE].TYPE == cls.TYPE for cls in MESSAGE_TYPES)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_encoding_matches_the_golden_bytes(name: str) -> None:
    assert encode(GOLDEN[name]) == golden_path(name).read_bytes()


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_bytes_decode_to_the_message(name: str) -> None:
    assert decode(golden_path(name).read_bytes()) == GOLDEN[name]


def test_audio_frame_has_a_32_byte_header_and_raw_payload() -> None:
    frame = golden_path("tts.chunk").read_bytes()
    assert frame[0] == 0xB1
    assert len(frame) == 32 + 4
    assert frame[32:] == bytes([0x01, 0x00, 0xFF, 0x7F])


def _regenerate() -> None:
    GOLDEN_DIR.mkdir(exist_ok=True)
    for name, msg in GOLDEN.items():
        golden_path(name).write_bytes(encode(msg))
        print(f"wrote {golden_path(name)}", file=sys.stderr)


if __name__ == "__main__":
    _regenerate()
