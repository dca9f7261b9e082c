"""encode/decode: every message round-trips, and decode survives any input with ProtocolError."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.protocol import (
    MAX_MESSAGE_BYTES,
    MESSAGE_TYPES,
    Ack,
    BargeIn,
    Cancel,
    Capabilities,
    Error,
    Hello,
    LocalProtocolError,
    Message,
    Metrics,
    Ping,
    Pong,
    Prosody,
    ProtocolError,
    ResponseText,
    TranscriptFinal,
    TranscriptPartial,
    TtsChunk,
    TtsEnd,
    TtsStart,
    Unknown,
    WordTiming,
    decode,
    encode,
)

GOLDEN_FRAMES = [p.read_bytes() for p in sorted((Path(__file__).parent / "golden").glob("*.bin"))]

u32 = st.integers(0, 2**32 - 1)
u63 = st.integers(0, 2**63 - 1)
fraction = st.floats(0.0, 1.0)
text = st.text(max_size=120)
short = st.text(max_size=40)
rate = st.integers(8000, 192000)
codec = st.sampled_from(["pcm16", "opus"])


def number(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


prosody = st.builds(
    Prosody,
    f0_mean_hz=maybe(number(0, 1e5)),
    f0_range_hz=maybe(number(0, 1e5)),
    f0_final_slope_hz_per_s=maybe(number(-1e5, 1e5)),
    energy_db=maybe(number(-200, 200)),
    speaking_rate_wps=maybe(number(0, 100)),
    pause_before_ms=maybe(number(0, 1e9)),
)
word = st.builds(
    WordTiming, word=st.text(max_size=20), start_s=number(0, 1e7), end_s=number(0, 1e7)
)

STRATEGIES: dict[type[Message], st.SearchStrategy[Any]] = {
    Hello: st.builds(
        Hello,
        protocol_version=st.sampled_from(["1.0", "1.12", "2.0"]),
        role=st.sampled_from(["edge", "cloud"]),
        session_id=short,
        resume_token=short,
        capabilities=st.builds(
            Capabilities,
            sample_rates=st.lists(rate, max_size=16).map(tuple),
            codecs=st.lists(codec, max_size=4).map(tuple),
        ),
        last_seq_seen=u63,
    ),
    TranscriptPartial: st.builds(
        TranscriptPartial, turn_id=u32, seq=u63, text=text, stability=fraction
    ),
    TranscriptFinal: st.builds(
        TranscriptFinal,
        turn_id=u32,
        seq=u63,
        text=text,
        words=st.lists(word, max_size=20).map(tuple),
        prosody=prosody,
        eou_confidence=fraction,
    ),
    ResponseText: st.builds(ResponseText, turn_id=u32, seq=u63, delta=text, final=st.booleans()),
    TtsStart: st.builds(TtsStart, turn_id=u32, seq=u63, codec=codec, sample_rate=rate),
    TtsChunk: st.builds(
        TtsChunk,
        turn_id=u32,
        seq=u63,
        chunk_index=u32,
        codec=codec,
        sample_rate=rate,
        sample_offset=u63,
        payload=st.binary(max_size=4000),
    ),
    TtsEnd: st.builds(TtsEnd, turn_id=u32, seq=u63, total_samples=u63),
    BargeIn: st.builds(BargeIn, turn_id=u32, seq=u63, samples_played=u63, heard_text=text),
    Cancel: st.builds(Cancel, turn_id=u32, seq=u63, reason=short),
    Ack: st.builds(Ack, last_seq=u63),
    Ping: st.builds(Ping, ping_id=u32, t0=number(-1e12, 1e12)),
    Pong: st.builds(
        Pong, ping_id=u32, t0=number(-1e12, 1e12), t1=number(-1e12, 1e12), t2=number(-1e12, 1e12)
    ),
    Metrics: st.builds(
        Metrics,
        turn_id=u32,
        seq=u63,
        stages_ms=st.dictionaries(st.text(min_size=1, max_size=20), number(0, 1e9), max_size=8),
    ),
    Error: st.builds(Error, code=st.text(max_size=20), message=text, fatal=st.booleans()),
}


def test_a_strategy_for_every_message_type() -> None:
    assert set(STRATEGIES) == set(MESSAGE_TYPES)


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda c: c.TYPE)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_message_round_trips(cls: type[Message], data: st.DataObject) -> None:
    msg = data.draw(STRATEGIES[cls])
    frame = encode(msg)
    assert len(frame) <= MAX_MESSAGE_BYTES
    assert decode(frame) == msg
    if frame[:1] == b"{":
        assert decode(frame.decode("utf-8")) == msg  # a text frame decodes the same


def test_audio_travels_as_raw_bytes_not_base64() -> None:
    payload = bytes(range(256)) * 16
    chunk = TtsChunk(turn_id=1, chunk_index=0, sample_rate=16000, sample_offset=0, payload=payload)
    frame = encode(chunk)
    assert len(frame) == 32 + len(payload)
    assert frame.endswith(payload)


def _decode_or_protocol_error(data: bytes | str) -> None:
    try:
        msg = decode(data)
    except ProtocolError:
        return
    if not isinstance(msg, Unknown):  # whatever decodes must be a valid, re-encodable message
        assert decode(encode(msg)) == msg


@settings(max_examples=400)
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    _decode_or_protocol_error(data)


@settings(max_examples=200)
@given(st.text(max_size=300))
def test_random_text_raises_only_protocol_error(data: str) -> None:
    _decode_or_protocol_error(data)


@settings(max_examples=400)
@given(
    frame=st.sampled_from(GOLDEN_FRAMES),
    cuts=st.lists(st.tuples(st.integers(0, 400), st.binary(max_size=4)), max_size=4),
    truncate=st.integers(0, 400),
)
def test_mutated_frames_raise_only_protocol_error(
    frame: bytes, cuts: list[tuple[int, bytes]], truncate: int
) -> None:
    mutated = bytearray(frame)
    for pos, junk in cuts:
        pos %= max(1, len(mutated))
        mutated[pos : pos + len(junk)] = junk
    _decode_or_protocol_error(bytes(mutated))
    _decode_or_protocol_error(bytes(mutated[:truncate]))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELD_NAMES = sorted(
    {"turn_id", "seq", "text", "words", "prosody", "codec", "sample_rate", "payload", "role"}
    | {"protocol_version", "capabilities", "stages_ms", "last_seq", "t0", "t1", "t2", "fatal"}
)


@settings(max_examples=250)
@given(
    type_name=st.sampled_from([cls.TYPE for cls in MESSAGE_TYPES] + ["future.x", "", "UPPER"]),
    fields=st.dictionaries(
        st.sampled_from(FIELD_NAMES) | st.text(max_size=6), json_values, max_size=8
    ),
)
def test_hostile_json_raises_only_protocol_error(type_name: str, fields: dict[str, Any]) -> None:
    body = json.dumps({**fields, "type": type_name}, allow_nan=True)
    _decode_or_protocol_error(body.encode())


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"\x00",
        b"[1, 2]",
        b'{"type": 5}',
        b'{"type": "ack"}',
        b'{"type": "ack", "last_seq": -1}',
        b'{"type": "ack", "last_seq": 1.5}',
        b'{"type": "ack", "last_seq": true}',
        b'{"type": "ping", "ping_id": 1, "t0": NaN}',
        b'{"type": "ping", "ping_id": 1, "t0": Infinity}',
        b'{"type": "tts.chunk", "turn_id": 1}',
        b'{"type": "hello", "role": "server"}',
        b'{"type": "transcript.partial", "turn_id": 1, "text": "a", "stability": 2}',
        b'{"type":"ack","last_seq":' + b"9" * 5000 + b"}",
        b'{"a":' + b"[" * 20000 + b"]" * 20000 + b"}",
        b"\xb1\x00\x00",
        b"\xb1\x07" + bytes(30),
        b'{"type":"error","code":"x","message":"\xff"}',
        "{\ud800}",
    ],
)
def test_malformed_frames_are_refused(data: bytes | str) -> None:
    with pytest.raises(ProtocolError):
        decode(data)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview, str])
def test_oversize_input_is_refused_before_parsing(kind: type) -> None:
    big = b'{"type":"ack","last_seq":1,"pad":"' + b"x" * MAX_MESSAGE_BYTES + b'"}'
    data = big.decode() if kind is str else kind(big)
    with pytest.raises(ProtocolError, match="exceeds"):
        decode(data)


def test_non_frame_objects_are_refused() -> None:
    with pytest.raises(ProtocolError):
        decode(12)  # type: ignore[arg-type]


def test_encoding_an_oversize_message_is_our_error() -> None:
    # control characters are escaped as \u00XX: 6 bytes each on the wire
    words = tuple(WordTiming(word="\x01" * 64, start_s=1 / 3, end_s=1 / 7) for _ in range(256))
    with pytest.raises(LocalProtocolError, match="exceeds"):
        encode(TranscriptFinal(turn_id=1, text="x" * 4096, words=words))


def test_unknown_types_of_a_newer_minor_version_decode_as_unknown() -> None:
    assert decode(b'{"type":"vision.frame","w":640}') == Unknown(type_name="vision.frame")
    assert decode(b"\xb7" + bytes(40)) == Unknown(type_name="binary.0xb7")
    with pytest.raises(LocalProtocolError):
        encode(Unknown(type_name="vision.frame"))


def test_newer_minor_fields_are_ignored() -> None:
    msg = decode(b'{"type":"ack","last_seq":3,"window":99}')
    assert msg == Ack(last_seq=3)


def test_reserved_chunk_flags_are_ignored() -> None:
    chunk = TtsChunk(turn_id=1, chunk_index=0, sample_rate=16000, sample_offset=0, payload=b"ab")
    frame = bytearray(encode(chunk))
    frame[2] = 0x80
    assert isinstance(decode(bytes(frame)), TtsChunk)
