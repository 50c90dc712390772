"""The locator, a deviation of the miniature (not in the paper): the `<obj>` embedding searches the LLM's image tokens,
and the map it finds reaches SAM as a dense (mask) prompt beside gamma's sparse one.

    m_p = (W_q h_obj) . (W_k t_p) / sqrt(d) + b,    p = 1 ... P image tokens t_p (a side x side grid)

SAM takes two kinds of prompt (Kirillov et al. 2023): sparse tokens (points, boxes; AnyRef's gamma(`<obj>`), Eq. 1)
and a dense coarse mask, embedded by its prompt encoder's `mask_downscaling` and added to the image embedding. At
mini scale the `<obj>` embedding names the target's shape (probe 0.998) but not its place (centre R^2 0.09), and
SAM-mini's decoder must find colour and place in its own features, where they are weak. Yet a bilinear head over
the frozen `<obj>` embedding and the LLM's image tokens finds a cell on the target for 0.75 of attribute and 0.42 of
spatial val expressions (research/locator_probe.py). So the miniature gives SAM that map as its mask prompt, and
trains the map by the mask loss through SAM and by BCE against the share of each cell the target covers.

Trained by BCE, each cell must clear one threshold in every scene, which "the leftmost circle" cannot do: whether a
circle is leftmost depends on the others. `ranking=True` makes the map a softmax over the cells (a log-probability
against the uniform map, so 0 means "as likely as any cell"), trained by cross-entropy against the normalised cover.

The map is drawn on the vision tower's patch grid and handed to SAM's input frame unchanged: both must cover the
same square image, as in the miniature (ShapeScenes, 128 px, no crop or padding).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOCATOR_LOSSES = ("bce", "softmax")


class Locator(nn.Module):
    """Bilinear match of each `<obj>` embedding against its image's tokens: a logit per grid cell."""

    def __init__(self, hidden_size: int, *, key_size: int | None = None, dim: int = 64, ranking: bool = False):
        super().__init__()
        self.ranking = ranking  # a softmax over the cells: log(P * p) per cell
        self.query = nn.Linear(hidden_size, dim)
        self.key = nn.Linear(key_size or hidden_size, dim)  # keys of another width: the lab's probe of SAM features
        self.bias = nn.Parameter(torch.zeros(1))  # (1,), not 0-d: DeepSpeed cannot broadcast a 0-d parameter

    def forward(self, obj: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """obj (N, D), tokens (N, P, K) -> map logits (N, side, side), P = side * side."""
        side = int(round(tokens.shape[1] ** 0.5))
        if side * side != tokens.shape[1]:
            raise ValueError(f"the locator needs a square grid of image tokens, got {tokens.shape[1]}")
        q, k = self.query(obj), self.key(tokens)  # (N, d), (N, P, d)
        logits = torch.einsum("nd,npd->np", q, k) * q.shape[-1] ** -0.5 + self.bias  # (N, P)
        if self.ranking:
            logits = logits.log_softmax(1) + math.log(logits.shape[1])  # 0 = the uniform map's probability
        return logits.view(-1, side, side)


def cell_cover(masks: torch.Tensor, side: int) -> torch.Tensor:
    """Target masks (N, H, W) -> the share of each of side x side cells that the target covers, (N, side, side)."""
    return F.adaptive_avg_pool2d(masks.float()[:, None], side)[:, 0]


def top_cell_on_target(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Whether each map's highest cell (N, side, side) overlaps its target mask (N, H, W): (N,) bool."""
    cover = cell_cover(masks, logits.shape[-1]).flatten(1)  # (N, side * side)
    return cover.gather(1, logits.flatten(1).argmax(1, keepdim=True))[:, 0] > 0


def locator_loss(logits: torch.Tensor, masks: torch.Tensor, *, kind: str = "bce") -> torch.Tensor:
    """BCE of the map logits (N, side, side) against each cell's target cover, or ("softmax") the cross-entropy of
    the softmax over cells against the cover normalised to sum to one."""
    cover = cell_cover(masks, logits.shape[-1])  # (N, side, side)
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits.float(), cover)
    if kind != "softmax":
        raise ValueError(f"unknown locator loss {kind!r}; choose one of {LOCATOR_LOSSES}")
    cover = cover.flatten(1)  # (N, P)
    target = cover / cover.sum(1, keepdim=True).clamp_min(1e-6)
    return -(target * logits.float().flatten(1).log_softmax(1)).sum(1).mean()


def dense_prompt(sam, logits: torch.Tensor) -> torch.Tensor:
    """Map logits (N, side, side) -> SAM's dense prompt embedding (N, C, h, w), through its mask input (4h x 4w)."""
    height, width = sam.prompt_encoder.image_embedding_size
    mask_input = F.interpolate(logits[:, None], size=(4 * height, 4 * width), mode="bilinear", align_corners=False)
    return sam.prompt_encoder.mask_downscaling(mask_input)  # (N, C, h, w)


def pooled_by_map(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """What a map found: each query's image tokens (N, P, D) averaged under the softmax of its map (N, side, side)."""
    return torch.einsum("np,npd->nd", logits.flatten(1).softmax(1), tokens)  # (N, D)


def zero_linear(size: int) -> nn.Linear:
    """A square linear map that starts at zero: added to an embedding, it changes nothing until it trains."""
    layer = nn.Linear(size, size)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer
