"""Bytes <-> messages. Pure functions; the byte layout is written down in docs/protocol.md.

Two frame kinds share one data channel, told apart by their first byte:

* ``{`` (0x7B): a control message, a UTF-8 JSON object whose ``type`` key names the message.
* ``0xB0``-``0xBF``: a binary message with a fixed little-endian header; ``0xB1`` is
  ``tts.chunk``. The others are reserved for newer minor versions (decoded as ``Unknown``).

``decode`` raises :class:`ProtocolError` (a :class:`RemoteProtocolError`) and nothing else, for any
input whatsoever; a well-formed message of a type it does not know comes back as ``Unknown``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import struct
from typing import Any, NoReturn

from shared.protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from shared.protocol.fields import build
from shared.protocol.messages import (
    MAX_MESSAGE_BYTES,
    MESSAGE_TYPES,
    Message,
    TtsChunk,
    Unknown,
)

JSON_FIRST_BYTE = 0x7B  # "{"
BINARY_KINDS = range(0xB0, 0xC0)
TTS_CHUNK_KIND = 0xB1
CODEC_IDS = {"pcm16": 0, "opus": 1}
CODEC_NAMES = {v: k for k, v in CODEC_IDS.items()}

# kind, codec, flags, turn_id, seq, chunk_index, sample_rate, sample_offset -> 32 bytes
CHUNK_HEADER = struct.Struct("<BBHIQIIQ")

_BY_TYPE: dict[str, type[Message]] = {cls.TYPE: cls for cls in MESSAGE_TYPES}
_TYPE_NAME = re.compile(r"[a-z][a-z0-9_.]{0,63}")


def encode(msg: Message) -> bytes:
    """The wire bytes of ``msg``; raises LocalProtocolError for ``Unknown`` or an oversize one."""
    if isinstance(msg, TtsChunk):
        data = _encode_chunk(msg)
    elif type(msg) in _BY_TYPE.values():
        data = _encode_json(msg)
    else:
        raise LocalProtocolError(f"cannot encode {type(msg).__name__}")
    if len(data) > MAX_MESSAGE_BYTES:
        raise LocalProtocolError(
            f"{msg.TYPE} message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES} bytes"
        )
    return data


def decode(data: bytes | bytearray | memoryview | str) -> Message:
    """Parse one frame. Raises only ProtocolError; unknown types come back as ``Unknown``."""
    try:
        raw = _as_bytes(data)
        if not raw:
            _refuse("empty message")
        first = raw[0]
        if first == JSON_FIRST_BYTE:
            return _decode_json(raw)
        if first in BINARY_KINDS:
            return _decode_binary(raw)
        _refuse(f"unknown frame kind 0x{first:02x}")
    except RemoteProtocolError:
        raise
    except ProtocolError as exc:
        raise RemoteProtocolError(str(exc)) from exc
    except (ValueError, RecursionError, struct.error) as exc:
        raise RemoteProtocolError(f"malformed message: {type(exc).__name__}") from exc


def _refuse(why: str) -> NoReturn:
    raise RemoteProtocolError(why)


def _as_bytes(data: object) -> bytes:
    if isinstance(data, str):
        if len(data) > MAX_MESSAGE_BYTES:
            _refuse(f"message of {len(data)} characters exceeds {MAX_MESSAGE_BYTES} bytes")
        data = data.encode("utf-8")  # lone surrogates -> UnicodeEncodeError -> refused
    elif isinstance(data, bytearray | memoryview):
        if len(data) > MAX_MESSAGE_BYTES:
            _refuse(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES} bytes")
        data = bytes(data)
    if not isinstance(data, bytes):
        _refuse(f"cannot decode {type(data).__name__}")
    if len(data) > MAX_MESSAGE_BYTES:
        _refuse(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES} bytes")
    return data


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {name: _jsonable(getattr(value, name)) for name in _field_names(type(value))}
    return value


def _encode_json(msg: Message) -> bytes:
    body: dict[str, Any] = {"type": msg.TYPE}
    for name in _field_names(type(msg)):
        body[name] = _jsonable(getattr(msg, name))
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def _reject_constant(name: str) -> NoReturn:
    _refuse(f"{name} is not allowed")


def _decode_json(raw: bytes) -> Message:
    body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    if not isinstance(body, dict):
        _refuse("a control message must be a JSON object")
    type_name = body.get("type")
    if not isinstance(type_name, str):
        _refuse("control message without a string 'type'")
    cls = _BY_TYPE.get(type_name)
    if cls is TtsChunk:
        _refuse("tts.chunk travels only as a binary frame")
    if cls is None:
        if not _TYPE_NAME.fullmatch(type_name):
            _refuse("malformed message type name")
        return Unknown(type_name=type_name)
    message: Message = build(cls, body)
    return message


def _encode_chunk(msg: TtsChunk) -> bytes:
    header = CHUNK_HEADER.pack(
        TTS_CHUNK_KIND,
        CODEC_IDS[msg.codec],
        0,
        msg.turn_id,
        msg.seq,
        msg.chunk_index,
        msg.sample_rate,
        msg.sample_offset,
    )
    return header + msg.payload


def _decode_binary(raw: bytes) -> Message:
    kind = raw[0]
    if kind != TTS_CHUNK_KIND:
        return Unknown(type_name=f"binary.0x{kind:02x}")
    if len(raw) < CHUNK_HEADER.size:
        _refuse(f"tts.chunk shorter than its {CHUNK_HEADER.size}-byte header")
    # flags are reserved: 1.x senders write 0, receivers ignore them.
    _, codec_id, _flags, turn_id, seq, chunk_index, rate, offset = CHUNK_HEADER.unpack_from(raw)
    codec = CODEC_NAMES.get(codec_id)
    if codec is None:
        _refuse(f"tts.chunk with unknown codec id {codec_id}")
    return TtsChunk(
        turn_id=turn_id,
        seq=seq,
        chunk_index=chunk_index,
        codec=codec,  # type: ignore[arg-type]
        sample_rate=rate,
        sample_offset=offset,
        payload=raw[CHUNK_HEADER.size :],
    )
