"""Attention processors: how the reference portrait reaches the denoiser.

LLIA's Appearance ReferenceNet injects reference features into the denoiser's self-attention
(keys/values = frame tokens + reference tokens of the same layer). diffusers makes the attention
processor the extension point, so both sides are processors set per module path:

* :class:`ReferenceCaptureProcessor` on the ReferenceNet writes each self-attention input into a
  ``reference_bank`` dict (keyed by module path) passed through ``cross_attention_kwargs``;
* :class:`ReferenceAttnProcessor` on the denoiser reads the same key and attends to it.

The bank is an explicit argument, never hidden module state, so one model can serve several
portraits at once and a run cannot leave stale features behind.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention


def _heads(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """(B, N, C) -> (B, heads, N, C / heads)."""
    b, n, c = x.shape
    return x.view(b, n, attn.heads, c // attn.heads).transpose(1, 2)


def _matmul_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v as two matrix products: for short sequences (a clip's frames) PyTorch's
    CPU SDPA kernel is 2-3x slower than this (measured for 3-18 frames, head size 8-28, thousands of
    latent pixels); for long ones (spatial attention) it is the other way round."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    return torch.matmul(scores.softmax(-1), v)


def _mix(attn, q: torch.Tensor, key_value_in, attn_mask=None, upcast: bool = False,
         short: bool = False) -> torch.Tensor:
    """Attention of the projected queries q (B, heads, N, d) over ``key_value_in`` (B, M, C) through
    ``attn``'s key/value projections -> (B, N, heads * d), before the output projection.

    ``upcast``: compute the attention itself in float32 (the projections stay in the input dtype).
    ``short``: the sequences are a few frames long (no mask): two matrix products instead of SDPA.
    """
    k = _heads(attn, attn.to_k(key_value_in))
    v = _heads(attn, attn.to_v(key_value_in))
    dtype = q.dtype
    if upcast and dtype != torch.float32:
        q, k, v = q.float(), k.float(), v.float()
    if short and attn_mask is None:
        out = _matmul_attention(q, k, v)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    return out.to(dtype).transpose(1, 2).reshape(q.shape[0], -1, q.shape[1] * q.shape[-1])


def _attend(attn, query_in, key_value_in, attn_mask=None, upcast: bool = False, short: bool = False) -> torch.Tensor:
    """Plain multi-head attention through ``attn``'s projections; (B, N, C) -> (B, N, C)."""
    out = _mix(attn, _heads(attn, attn.to_q(query_in)), key_value_in, attn_mask, upcast, short)
    return attn.to_out[1](attn.to_out[0](out))


def _shared_reference(ref: torch.Tensor, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B, N_ref, C) reference tokens of B clips -> (B * num_frames, N_ref, C), one per frame."""
    ref = ref.to(hidden_states.dtype)
    if ref.shape[0] * num_frames != hidden_states.shape[0]:
        ref = ref.expand(hidden_states.shape[0] // num_frames, -1, -1)
    return ref.repeat_interleave(num_frames, dim=0)


class TemporalAttnProcessor:
    """Motion-module attention across frames (diffusers' SDPA processor, minus unused options).

    On CPU in bf16/fp16 the attention is computed in float32: a clip's temporal attention is
    thousands of tiny problems (one per latent pixel and head, 1-18 frames, head size 8-28), where
    PyTorch's CPU bf16 kernel is about twice as slow as its float32 one (measured on the demo
    model's largest: 3.2 vs 1.5 ms per call), and float32 is also the more exact of the two. There
    it is two matrix products rather than SDPA (:func:`_matmul_attention`).
    """

    def __call__(self, attn: Attention, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, **_):
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        cpu = hidden_states.device.type == "cpu"
        return _attend(attn, hidden_states, context, upcast=cpu, short=cpu)


class ReferenceCaptureProcessor:
    """ReferenceNet side: record the self-attention input under ``name``, then attend as usual."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, attn: Attention, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, reference_bank: dict | None = None, **_):
        if reference_bank is not None and encoder_hidden_states is None:
            reference_bank[self.name] = hidden_states
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        return _attend(attn, hidden_states, context)


class ReferenceAttnProcessor:
    """Denoiser side: self-attention over [frame tokens ; reference tokens], or cross-attention.

    ``reference_bank[name]`` holds (B, N_ref, C) features for B clips; the denoiser batch is
    B * num_frames, so each clip's reference is shared by its frames without copying weights.
    ``reference_keep`` (B * num_frames,) bool drops the reference per sample (training dropout
    and reference-free guidance) by masking its keys.
    """

    def __init__(self, name: str):
        self.name = name

    def __call__(self, attn: Attention, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, reference_bank: dict | None = None, num_frames: int = 1,
                 reference_keep: torch.Tensor | None = None, **_):
        if encoder_hidden_states is not None:  # audio cross-attention
            return _attend(attn, hidden_states, encoder_hidden_states)
        ref = None if reference_bank is None else reference_bank.get(self.name)
        if ref is None:
            return _attend(attn, hidden_states, hidden_states)
        n = hidden_states.shape[1]
        ref = _shared_reference(ref, hidden_states, num_frames)
        context = torch.cat([hidden_states, ref], dim=1)
        mask = None
        if reference_keep is not None and not bool(reference_keep.all()):
            keep = torch.ones(hidden_states.shape[0], context.shape[1], dtype=torch.bool,
                              device=hidden_states.device)
            keep[:, n:] = reference_keep.to(hidden_states.device)[:, None]
            mask = keep[:, None, None, :]
        return _attend(attn, hidden_states, context, mask)


class GatedReferenceAttnProcessor(nn.Module):
    """Denoiser side, gated: self-attention + gate * attention over the reference tokens.

    out = to_out(attend(q, frame) + gate * attend(q, reference)), with the frame's own keys and the
    reference's in two softmaxes and ``gate`` (inner_dim,) starting at zero, so the reference path is
    an exact zero at first: a UNet converted from Stable Diffusion computes what SD computes until
    training opens the gate (``config.reference_gate``). Costs the same attention FLOPs as the
    one-softmax version. ``reference_keep`` (B * num_frames,) bool zeroes the reference per sample.
    The gate is a parameter of this processor, which diffusers registers as a submodule of its
    attention layer, so it is saved with the model.
    """

    def __init__(self, name: str, inner_dim: int):
        super().__init__()
        self.name = name
        self.gate = nn.Parameter(torch.zeros(inner_dim))

    def __call__(self, attn: Attention, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, reference_bank: dict | None = None, num_frames: int = 1,
                 reference_keep: torch.Tensor | None = None, **_):
        # __call__, not forward: diffusers passes a processor only the keyword arguments its
        # __call__ names (as its own nn.Module processors do)
        q = _heads(attn, attn.to_q(hidden_states))
        out = _mix(attn, q, hidden_states)
        ref = None if reference_bank is None else reference_bank.get(self.name)
        if ref is not None:
            extra = _mix(attn, q, _shared_reference(ref, hidden_states, num_frames)) * self.gate.to(out.dtype)
            if reference_keep is not None:
                extra = extra * reference_keep.to(device=out.device, dtype=out.dtype)[:, None, None]
            out = out + extra
        return attn.to_out[1](attn.to_out[0](out))
