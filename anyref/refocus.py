"""The refocusing mechanism (Sec. 3.1.2, Eq. 2), computed from the last layer's queries and keys.

    h_obj' = h_obj + lambda_f * sum_{i < obj} a_i h_i

a_i: the LAST layer's attention probabilities, MEAN over heads, of the query at the position whose output predicts
`<obj>`, over the keys that predict the answer tokens before it (from the last prompt position up to, not including,
the query), re-normalised by dividing by their sum (the official code's convention). h: last-layer hidden states after
the final norm. The model keeps SDPA attention: we recompute one attention row per `<obj>` from the captured q and k.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb


@dataclass
class ObjQuery:
    """One `<obj>`: its sample, the query position (predicts `<obj>`) and the first key position (last prompt)."""

    batch: int
    query: int
    start: int


@dataclass
class LastLayerQK:
    """Projected queries/keys (before RoPE) and RoPE tables of the LLM's last attention layer."""

    q: torch.Tensor  # (B, L, H * d)
    k: torch.Tensor  # (B, L, H_kv * d)
    cos: torch.Tensor  # (B, L, d)
    sin: torch.Tensor  # (B, L, d)

    def extend(self, other: "LastLayerQK") -> "LastLayerQK":
        """Append the positions of a later (cached) decoding step."""
        return LastLayerQK(*(torch.cat([a, b], dim=1) for a, b in
                             ((self.q, other.q), (self.k, other.k), (self.cos, other.cos), (self.sin, other.sin))))


@contextmanager
def capture_last_layer(llama):
    """Record the last layer's q_proj / k_proj outputs and RoPE tables during one forward of a LlamaModel."""
    attention = llama.layers[-1].self_attn
    seen: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(module, args, output):
            seen[name] = output
        return hook

    def keep_rope(module, args, kwargs):
        seen["cos"], seen["sin"] = kwargs["position_embeddings"]

    handles = [attention.q_proj.register_forward_hook(keep("q")), attention.k_proj.register_forward_hook(keep("k")),
               attention.register_forward_pre_hook(keep_rope, with_kwargs=True)]
    record: list[LastLayerQK] = []
    try:
        yield record
    finally:
        for handle in handles:
            handle.remove()
    cos, sin = seen["cos"], seen["sin"]
    batch = seen["q"].shape[0]
    record.append(LastLayerQK(seen["q"], seen["k"], cos.expand(batch, -1, -1), sin.expand(batch, -1, -1)))


def attention_rows(qk: LastLayerQK, queries: list[ObjQuery], *, num_heads: int, num_kv_heads: int,
                   key_padding: torch.Tensor | None = None) -> torch.Tensor:
    """Head-mean last-layer softmax attention of each query over all positions, (N, L); exactly what eager gives."""
    device = qk.q.device
    batch_idx = torch.tensor([q.batch for q in queries], device=device)
    query_idx = torch.tensor([q.query for q in queries], device=device)
    n, length = len(queries), qk.k.shape[1]
    head_dim = qk.q.shape[-1] // num_heads
    q = qk.q[batch_idx, query_idx].view(n, num_heads, 1, head_dim)  # (N, H, 1, d)
    k = qk.k[batch_idx].view(n, length, num_kv_heads, head_dim).transpose(1, 2)  # (N, H_kv, L, d)
    cos_q, sin_q = qk.cos[batch_idx, query_idx][:, None], qk.sin[batch_idx, query_idx][:, None]  # (N, 1, d)
    q, _ = apply_rotary_pos_emb(q, q, cos_q, sin_q)
    _, k = apply_rotary_pos_emb(k, k, qk.cos[batch_idx], qk.sin[batch_idx])
    k = k.repeat_interleave(num_heads // num_kv_heads, dim=1)  # (N, H, L, d)
    scores = (q @ k.transpose(-1, -2)).squeeze(2) * head_dim**-0.5  # (N, H, L)
    allowed = torch.arange(length, device=device)[None, :] <= query_idx[:, None]  # causal, (N, L)
    if key_padding is not None:
        allowed = allowed & key_padding[batch_idx].bool()
    scores = scores.masked_fill(~allowed[:, None, :], float("-inf"))
    return scores.float().softmax(dim=-1).to(scores.dtype).mean(dim=1)  # (N, L)


def refocus_weights(rows: torch.Tensor, queries: list[ObjQuery]) -> torch.Tensor:
    """Keep keys in [start, query), divide by their sum: a-bar of Eq. 2, (N, L); all-zero when no key precedes."""
    positions = torch.arange(rows.shape[1], device=rows.device)[None, :]
    start = torch.tensor([q.start for q in queries], device=rows.device)[:, None]
    stop = torch.tensor([q.query for q in queries], device=rows.device)[:, None]
    weights = rows * ((positions >= start) & (positions < stop))  # (N, L)
    total = weights.sum(dim=1, keepdim=True)
    return weights / total.clamp_min(torch.finfo(weights.dtype).tiny)


def refocus(hidden: torch.Tensor, weights: torch.Tensor, queries: list[ObjQuery], *,
            weight: float | torch.Tensor) -> torch.Tensor:
    """Eq. 2: h_obj + lambda_f * sum_i a_i h_i, from last-layer hidden states (B, L, D) -> (N, D).

    `weight` is lambda_f: a number, or a one-element parameter that learns (its gradient flows even where it is 0).
    """
    batch_idx = torch.tensor([q.batch for q in queries], device=hidden.device)
    h_obj = hidden[batch_idx, torch.tensor([q.query for q in queries], device=hidden.device)]  # (N, D)
    if not torch.is_tensor(weight) and weight == 0:
        return h_obj
    context = torch.einsum("nl,nld->nd", weights.to(hidden.dtype), hidden[batch_idx])  # (N, D)
    return h_obj + weight * context
