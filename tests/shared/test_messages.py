"""Messages validate themselves on construction: a bad one never reaches the wire."""

from __future__ import annotations

from typing import Any

import pytest

from shared.protocol import (
    Capabilities,
    Hello,
    LocalProtocolError,
    Metrics,
    Prosody,
    TranscriptFinal,
    TranscriptPartial,
    TtsChunk,
    WordTiming,
)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (TranscriptPartial, {"turn_id": -1, "text": "x"}),
        (TranscriptPartial, {"turn_id": 2**32, "text": "x"}),
        (TranscriptPartial, {"turn_id": 1, "text": "x", "stability": 1.5}),
        (TranscriptPartial, {"turn_id": 1, "text": "x" * 4097}),
        (TranscriptPartial, {"turn_id": True, "text": "x"}),
        (TranscriptPartial, {"turn_id": 1, "text": b"x"}),
        (TranscriptPartial, {"turn_id": 1, "text": "\ud800"}),
        (TranscriptFinal, {"turn_id": 1, "text": "x", "eou_confidence": float("nan")}),
        (TranscriptFinal, {"turn_id": 1, "text": "x", "words": ("x",)}),
        (Hello, {"role": "server"}),
        (Hello, {"role": "edge", "session_id": "s" * 129}),
        (Metrics, {"turn_id": 1, "stages_ms": {"": 1.0}}),
        (Metrics, {"turn_id": 1, "stages_ms": {"asr": -1.0}}),
        (Metrics, {"turn_id": 1, "stages_ms": {f"s{i}": 1.0 for i in range(65)}}),
        (Capabilities, {"codecs": ("mp3",)}),
        (Capabilities, {"sample_rates": (100,)}),
        (Prosody, {"energy_db": float("inf")}),
        (WordTiming, {"word": "x", "start_s": -1.0, "end_s": 0.0}),
        (
            TtsChunk,
            {
                "turn_id": 1,
                "chunk_index": 0,
                "sample_rate": 16000,
                "sample_offset": 0,
                "payload": bytes(70000),
            },
        ),
    ],
)
def test_invalid_messages_cannot_be_built(cls: type, kwargs: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        cls(**kwargs)


def test_messages_are_frozen_and_slotted() -> None:
    msg = TranscriptPartial(turn_id=1, text="hi")
    with pytest.raises(AttributeError):
        msg.text = "bye"  # type: ignore[misc]
    assert not hasattr(msg, "__dict__")


def test_numbers_and_sequences_are_normalised() -> None:
    prosody = Prosody(f0_mean_hz=120)
    assert isinstance(prosody.f0_mean_hz, float)
    final = TranscriptFinal(turn_id=1, text="x", words=[WordTiming(word="x", start_s=0, end_s=1)])  # type: ignore[arg-type]
    assert isinstance(final.words, tuple)
    chunk = TtsChunk(
        turn_id=1, chunk_index=0, sample_rate=16000, sample_offset=0, payload=bytearray(4)
    )
    assert type(chunk.payload) is bytes


def test_defaults_describe_an_unmeasured_turn() -> None:
    final = TranscriptFinal(turn_id=1, text="hello")
    assert final.words == () and final.prosody == Prosody() and final.eou_confidence == 1.0
    assert final.seq == 0  # stamped by the session


@pytest.mark.parametrize(
    ("rates", "codecs", "ours", "expected"),
    [
        ((16000, 22050, 48000), ("pcm16",), ("pcm16",), ("pcm16", 22050)),
        ((16000, 48000), ("pcm16", "opus"), ("opus", "pcm16"), ("opus", 48000)),
        ((8000, 16000), ("pcm16",), ("opus", "pcm16"), ("pcm16", 16000)),
        ((), (), ("pcm16",), ("pcm16", 22050)),
    ],
)
def test_reply_audio_format_follows_the_edge_capabilities(
    rates: tuple[int, ...], codecs: tuple[str, ...], ours: tuple[str, ...], expected: tuple
) -> None:
    from shared.protocol import choose_audio_format

    peer = Capabilities(sample_rates=rates, codecs=codecs)  # type: ignore[arg-type]
    assert choose_audio_format(peer, 22050, ours) == expected  # type: ignore[arg-type]


def test_no_common_codec_is_refused() -> None:
    from shared.protocol import RemoteProtocolError, choose_audio_format

    with pytest.raises(RemoteProtocolError):
        choose_audio_format(Capabilities(codecs=("opus",)), 22050, ("pcm16",))
