# mypy: disable-error-code="no-any-return"
"""The Whisper architecture in PyTorch, loaded from CTranslate2 weights (build step only).

Only ``models.whisper_onnx`` imports this module, inside ``parley models build``: torch is a
build-time dependency and never imported at run time.

Two export views wrap the model in the layout sherpa-onnx's whisper recognizer runs:
``CrossKVEncoder`` (mel -> per-layer cross-attention keys and values) and ``CachedDecoder``
(one decoding step over a self-attention key/value cache, at a position ``offset``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from models.ct2_reader import CT2Model

_Getter = Callable[[str], np.ndarray]


@dataclass(frozen=True, slots=True)
class WhisperDims:
    """Sizes of a Whisper model (tiny.en: 80 mels, 4 + 4 layers, 384 wide, 6 heads)."""

    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int

    @classmethod
    def from_ct2(cls, ct2: CT2Model) -> WhisperDims:
        v = ct2.variables
        n_audio_ctx, n_audio_state = v["encoder/position_encodings/encodings"].shape
        n_text_ctx, n_text_state = v["decoder/position_encodings/encodings"].shape
        return cls(
            n_mels=int(v["encoder/conv1/weight"].shape[1]),
            n_audio_ctx=int(n_audio_ctx), n_audio_state=int(n_audio_state),
            n_audio_head=ct2.scalar("encoder/num_heads"),
            n_audio_layer=_count_layers(ct2, "encoder"),
            n_vocab=int(v["decoder/embeddings/weight"].shape[0]),
            n_text_ctx=int(n_text_ctx), n_text_state=int(n_text_state),
            n_text_head=ct2.scalar("decoder/num_heads"),
            n_text_layer=_count_layers(ct2, "decoder"),
        )


def _count_layers(ct2: CT2Model, side: str) -> int:
    return sum(1 for k in ct2.variables if k.startswith(f"{side}/layer_") and k.endswith(
        "ffn/linear_0/weight"))


class Attention(nn.Module):
    """Multi-head attention; keys have no bias; q and k are each scaled by head_dim^-1/4."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width, bias=False)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
        """q: (b, n, d); k, v: (b, m, d); mask broadcastable to (n, m), -inf where hidden."""
        b, n, d = q.shape
        head = d // self.heads
        scale = float(head) ** -0.25
        qh = q.reshape(b, n, self.heads, head).transpose(1, 2) * scale
        kh = k.reshape(b, -1, self.heads, head).permute(0, 2, 3, 1) * scale
        vh = v.reshape(b, -1, self.heads, head).transpose(1, 2)
        weights = qh @ kh
        if mask is not None:
            weights = weights + mask
        mixed = torch.softmax(weights, dim=-1) @ vh
        return self.out(mixed.transpose(1, 2).reshape(b, n, d))


def _mlp(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))


class EncoderBlock(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn_ln = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.mlp_ln = nn.LayerNorm(width)
        self.mlp = _mlp(width)

    def forward(self, x: Tensor) -> Tensor:
        h = self.attn_ln(x)
        x = x + self.attn.attend(self.attn.query(h), self.attn.key(h), self.attn.value(h))
        return x + self.mlp(self.mlp_ln(x))


class DecoderBlock(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn_ln = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.cross_attn_ln = nn.LayerNorm(width)
        self.cross_attn = Attention(width, heads)
        self.mlp_ln = nn.LayerNorm(width)
        self.mlp = _mlp(width)

    def forward(self, x: Tensor, self_k: Tensor, self_v: Tensor, cross_k: Tensor,
                cross_v: Tensor, mask: Tensor) -> Tensor:
        """``self_k``/``self_v`` already hold this step's keys/values at their positions."""
        h = self.attn_ln(x)
        x = x + self.attn.attend(self.attn.query(h), self_k, self_v, mask)
        h = self.cross_attn_ln(x)
        x = x + self.cross_attn.attend(self.cross_attn.query(h), cross_k, cross_v)
        return x + self.mlp(self.mlp_ln(x))


class AudioEncoder(nn.Module):
    def __init__(self, dims: WhisperDims) -> None:
        super().__init__()
        width = dims.n_audio_state
        self.conv1 = nn.Conv1d(dims.n_mels, width, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(width, width, kernel_size=3, stride=2, padding=1)
        self.positional_embedding = nn.Parameter(torch.zeros(dims.n_audio_ctx, width))
        self.blocks = nn.ModuleList(
            EncoderBlock(width, dims.n_audio_head) for _ in range(dims.n_audio_layer))
        self.ln_post = nn.LayerNorm(width)

    @property
    def layers(self) -> list[EncoderBlock]:
        return cast(list[EncoderBlock], list(self.blocks))

    def forward(self, mel: Tensor) -> Tensor:
        """mel: (b, n_mels, frames) -> (b, ceil(frames / 2), width); frames <= 2 * n_audio_ctx."""
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).permute(0, 2, 1)
        x = x + self.positional_embedding[: x.shape[1]]
        for block in self.layers:
            x = block(x)
        return self.ln_post(x)


class TextDecoder(nn.Module):
    def __init__(self, dims: WhisperDims) -> None:
        super().__init__()
        width = dims.n_text_state
        self.token_embedding = nn.Embedding(dims.n_vocab, width)
        self.positional_embedding = nn.Parameter(torch.zeros(dims.n_text_ctx, width))
        self.blocks = nn.ModuleList(
            DecoderBlock(width, dims.n_text_head) for _ in range(dims.n_text_layer))
        self.ln = nn.LayerNorm(width)

    @property
    def layers(self) -> list[DecoderBlock]:
        return cast(list[DecoderBlock], list(self.blocks))

    def logits(self, x: Tensor) -> Tensor:
        return self.ln(x) @ self.token_embedding.weight.T


class Whisper(nn.Module):
    def __init__(self, dims: WhisperDims) -> None:
        super().__init__()
        self.dims = dims
        self.encoder = AudioEncoder(dims)
        self.decoder = TextDecoder(dims)

    @torch.no_grad()
    def greedy(self, mel: Tensor, prompt: list[int], eot: int, max_tokens: int = 120) -> list[int]:
        """Reference greedy decoding without a cache (for checking the export)."""
        features = self.encoder(mel)
        tokens = list(prompt)
        for _ in range(max_tokens):
            ids = torch.tensor([tokens])
            n = len(tokens)
            x = self.decoder.token_embedding(ids) + self.decoder.positional_embedding[:n]
            mask = torch.full((n, n), float("-inf")).triu(1)
            for block in self.decoder.layers:
                h = block.attn_ln(x)
                x = x + block.attn.attend(block.attn.query(h), block.attn.key(h),
                                          block.attn.value(h), mask)
                h = block.cross_attn_ln(x)
                x = x + block.cross_attn.attend(block.cross_attn.query(h),
                                                block.cross_attn.key(features),
                                                block.cross_attn.value(features))
                x = x + block.mlp(block.mlp_ln(x))
            best = int(self.decoder.logits(x)[0, -1].argmax())
            if best == eot:
                break
            tokens.append(best)
        return tokens[len(prompt):]


class CrossKVEncoder(nn.Module):
    """Export view: mel (b, n_mels, frames) -> cross keys and values (layers, b, ctx, width)."""

    def __init__(self, model: Whisper) -> None:
        super().__init__()
        self.model = model

    def forward(self, mel: Tensor) -> tuple[Tensor, Tensor]:
        features = self.model.encoder(mel)
        blocks = self.model.decoder.layers
        keys = [b.cross_attn.key(features) for b in blocks]
        values = [b.cross_attn.value(features) for b in blocks]
        return torch.stack(keys), torch.stack(values)


class CachedDecoder(nn.Module):
    """Export view: one decoding step of ``tokens`` at position ``offset`` over a kv cache.

    The caches have a fixed length (n_text_ctx); this step's keys and values are written at
    ``offset .. offset + n`` and attention is over positions ``< offset + n``, causally.
    """

    def __init__(self, model: Whisper) -> None:
        super().__init__()
        self.decoder = model.decoder

    def forward(self, tokens: Tensor, self_k: Tensor, self_v: Tensor, cross_k: Tensor,
                cross_v: Tensor, offset: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        start = offset[0]
        n = tokens.shape[1]
        end = start + n
        dec = self.decoder
        x = dec.token_embedding(tokens) + dec.positional_embedding[start:end]
        rows = torch.arange(n, dtype=torch.int64) + start
        # A tensor bound keeps the length dynamic in the ONNX trace.
        cols = torch.arange(end, dtype=torch.int64)  # type: ignore[call-overload]
        mask = torch.where(cols[None, :] > rows[:, None], float("-inf"), 0.0)
        past_k, past_v = self_k[:, :, :start], self_v[:, :, :start]
        new_k, new_v = [], []
        for i, block in enumerate(dec.layers):
            h = block.attn_ln(x)
            attn = block.attn
            new_k.append(attn.key(h))
            new_v.append(attn.value(h))
            keys = torch.cat([past_k[i], new_k[-1]], dim=1)
            values = torch.cat([past_v[i], new_v[-1]], dim=1)
            x = x + attn.attend(attn.query(h), keys, values, mask)
            h = block.cross_attn_ln(x)
            cross = block.cross_attn
            x = x + cross.attend(cross.query(h), cross_k[i], cross_v[i])
            x = x + block.mlp(block.mlp_ln(x))
        # Write this step's keys/values into copies of the caches (one scatter each).
        k_out = self_k.clone()
        v_out = self_v.clone()
        k_out[:, :, start:end] = torch.stack(new_k)
        v_out[:, :, start:end] = torch.stack(new_v)
        return dec.logits(x), k_out, v_out


def load_whisper(ct2: CT2Model) -> Whisper:
    """A ``Whisper`` in eval mode with the CTranslate2 weights (float16 -> float32)."""
    dims = WhisperDims.from_ct2(ct2)
    model = Whisper(dims)
    state = {name: torch.from_numpy(np.ascontiguousarray(arr))
             for name, arr in ct2_state_dict(ct2, dims).items()}
    model.load_state_dict(state, strict=True)
    return model.eval()


def ct2_state_dict(ct2: CT2Model, dims: WhisperDims) -> dict[str, np.ndarray]:
    """Map CTranslate2 variable names onto this module's parameter names."""
    f = ct2.float32
    out: dict[str, np.ndarray] = {
        "encoder.conv1.weight": f("encoder/conv1/weight"),
        "encoder.conv1.bias": f("encoder/conv1/bias"),
        "encoder.conv2.weight": f("encoder/conv2/weight"),
        "encoder.conv2.bias": f("encoder/conv2/bias"),
        "encoder.positional_embedding": f("encoder/position_encodings/encodings"),
        "decoder.token_embedding.weight": f("decoder/embeddings/weight"),
        "decoder.positional_embedding": f("decoder/position_encodings/encodings"),
    }
    out |= _layer_norm(f, "encoder/layer_norm", "encoder.ln_post")
    out |= _layer_norm(f, "decoder/layer_norm", "decoder.ln")
    for i in range(dims.n_audio_layer):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        out |= _fused_qkv(f, f"{src}/self_attention", f"{dst}.attn")
        out |= _layer_norm(f, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        out |= _ffn(f, f"{src}/ffn", dst)
    for i in range(dims.n_text_layer):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        out |= _fused_qkv(f, f"{src}/self_attention", f"{dst}.attn")
        out |= _layer_norm(f, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        out |= _cross_attention(f, f"{src}/attention", f"{dst}.cross_attn")
        out |= _layer_norm(f, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
        out |= _ffn(f, f"{src}/ffn", dst)
    return out


def _layer_norm(f: _Getter, src: str, dst: str) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": f(f"{src}/gamma"), f"{dst}.bias": f(f"{src}/beta")}


def _ffn(f: _Getter, src: str, dst: str) -> dict[str, np.ndarray]:
    return {
        f"{dst}.mlp.0.weight": f(f"{src}/linear_0/weight"),
        f"{dst}.mlp.0.bias": f(f"{src}/linear_0/bias"),
        f"{dst}.mlp.2.weight": f(f"{src}/linear_1/weight"),
        f"{dst}.mlp.2.bias": f(f"{src}/linear_1/bias"),
        **_layer_norm(f, f"{src}/layer_norm", f"{dst}.mlp_ln"),
    }


def _fused_qkv(f: _Getter, src: str, dst: str) -> dict[str, np.ndarray]:
    """``linear_0`` stacks q, k, v (the k bias is zero); ``linear_1`` is the output."""
    q, k, v = np.split(f(f"{src}/linear_0/weight"), 3)
    qb, _kb, vb = np.split(f(f"{src}/linear_0/bias"), 3)
    return {
        f"{dst}.query.weight": q, f"{dst}.query.bias": qb,
        f"{dst}.key.weight": k,
        f"{dst}.value.weight": v, f"{dst}.value.bias": vb,
        f"{dst}.out.weight": f(f"{src}/linear_1/weight"),
        f"{dst}.out.bias": f(f"{src}/linear_1/bias"),
    }


def _cross_attention(f: _Getter, src: str, dst: str) -> dict[str, np.ndarray]:
    """``linear_0`` is the query, ``linear_1`` stacks k, v, ``linear_2`` is the output."""
    k, v = np.split(f(f"{src}/linear_1/weight"), 2)
    _kb, vb = np.split(f(f"{src}/linear_1/bias"), 2)
    return {
        f"{dst}.query.weight": f(f"{src}/linear_0/weight"),
        f"{dst}.query.bias": f(f"{src}/linear_0/bias"),
        f"{dst}.key.weight": k,
        f"{dst}.value.weight": v, f"{dst}.value.bias": vb,
        f"{dst}.out.weight": f(f"{src}/linear_2/weight"),
        f"{dst}.out.bias": f(f"{src}/linear_2/bias"),
    }

