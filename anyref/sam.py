"""SAM built from segment-anything's own modules: image encoder V_seg, prompt encoder, mask decoder (Eq. 1)."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from .checkpoints import load_checked, read_tensors
from .config import SAMConfig
from .errors import AnyRefCheckpointError
from .paths import resolve


def build_sam(config: SAMConfig) -> Sam:
    """A `segment_anything.modeling.Sam` of the configured size, loading a local .pth state dict if given."""
    grid = config.image_size // config.patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=config.image_size, patch_size=config.patch_size, embed_dim=config.embed_dim,
            depth=config.depth, num_heads=config.num_heads, out_chans=config.prompt_dim, qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=config.use_rel_pos,
            window_size=config.window_size, global_attn_indexes=tuple(config.global_attn_indexes),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=config.prompt_dim, image_embedding_size=(grid, grid),
            input_image_size=(config.image_size, config.image_size), mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=config.prompt_dim, num_multimask_outputs=3, iou_head_depth=3,
            iou_head_hidden_dim=min(config.prompt_dim, 256),
            transformer=TwoWayTransformer(depth=config.decoder_depth, embedding_dim=config.prompt_dim,
                                          mlp_dim=config.decoder_mlp_dim, num_heads=config.decoder_heads),
        ),
    )
    if config.checkpoint:
        load_sam_checkpoint(sam, config.checkpoint)
    return sam


def load_sam_checkpoint(sam: Sam, path: str | Path) -> None:
    """Load an official-format SAM state dict (.pth or .safetensors; keys image_encoder.* / prompt_encoder.* / ...)."""
    path = resolve(path)
    if not path.is_file():
        raise AnyRefCheckpointError(f"SAM checkpoint {str(path)!r} does not exist; give the path of a local "
                                    "sam_vit_*.pth file (or SAM-mini's model.safetensors)")
    load_checked(sam, read_tensors(path, "SAM checkpoint"), what="SAM checkpoint", source=path)


def resize_longest_side(images: torch.Tensor, *, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """uint8 (B, H, W, 3) -> float (B, 3, h, w) with max(h, w) == size, and the resized (h, w)."""
    height, width = images.shape[1:3]
    scale = size / max(height, width)
    new_hw = (int(height * scale + 0.5), int(width * scale + 0.5))
    x = images.permute(0, 3, 1, 2).float()  # (B, 3, H, W)
    if new_hw != (height, width):
        x = F.interpolate(x, size=new_hw, mode="bilinear", align_corners=False, antialias=True)
    return x, new_hw


def sam_inputs(sam: Sam, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """uint8 (B, H, W, 3) -> SAM's normalised, padded (B, 3, S, S) input and the resized size."""
    x, resized = resize_longest_side(images, size=sam.image_encoder.img_size)
    return sam.preprocess(x), resized


def decode_masks(sam: Sam, image_embeddings: torch.Tensor, image_index: torch.Tensor,
                 prompts: torch.Tensor, *, dense: torch.Tensor | None = None) -> torch.Tensor:
    """SAM's mask decoder, batched over images, single-mask output (multimask_output=False).

    image_embeddings (B, C, h, w); image_index (N,) picks each prompt's image; prompts are the sparse prompt
    embeddings, (N, C) for one token each (AnyRef's `<obj>`) or (N, K, C) for K tokens (points, box corners);
    dense prompt = `dense` (N, C, h, w) where given (a mask prompt), else SAM's no-mask embedding.
    Returns low-res logits (N, 1, 4h, 4w).
    Same maths as `MaskDecoder.predict_masks`, which handles one image per call.
    """
    decoder = sam.mask_decoder
    n = prompts.shape[0]
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight])  # (1 + M, C)
    if prompts.dim() == 2:
        prompts = prompts[:, None, :]  # (N, 1, C)
    tokens = torch.cat([output_tokens.expand(n, -1, -1), prompts], dim=1)  # (N, 1 + M + K, C)
    if dense is None:
        dense = sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)  # (1, C, 1, 1)
    src = image_embeddings[image_index] + dense  # (N, C, h, w)
    pos = sam.prompt_encoder.get_dense_pe().expand(n, -1, -1, -1)  # (N, C, h, w)
    _, channels, height, width = src.shape
    hidden, src = decoder.transformer(src, pos, tokens)  # (N, 1 + M + K, C), (N, h * w, C)
    upscaled = decoder.output_upscaling(src.transpose(1, 2).reshape(n, channels, height, width))  # (N, C/8, 4h, 4w)
    hyper = decoder.output_hypernetworks_mlps[0](hidden[:, 1])  # first mask token -> (N, C/8)
    masks = hyper[:, None, :] @ upscaled.flatten(2)  # (N, 1, 16 h w)
    return masks.view(n, 1, *upscaled.shape[-2:])
