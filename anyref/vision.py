"""The CLIP vision tower and the vision-language projector (LLaVA's image path, Sec. 3.1)."""
from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import CLIP_EXTRAS, CLIP_VISION_PREFIX, check_clip_folder, llava_projector_state, load_checked
from .config import VisionConfig
from .errors import AnyRefCheckpointError, AnyRefConfigError
from .paths import resolve
from .llm import quiet_transformers
from .weights import from_pretrained_folder, read_safetensors

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_pixels(images: torch.Tensor, *, size: int) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> CLIP-normalised (B, 3, size, size), resized without cropping."""
    x = images.permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class ConvStem(nn.Module):
    """Early convolutions (Xiao et al., 2021): log2(patch) 3x3 stride-2 convolutions and a 1x1 projection replace
    ViT's single patchify, giving the same token grid: (B, 3, S, S) -> (B, C, S/patch, S/patch)."""

    def __init__(self, *, patch_size: int, hidden_size: int, first_width: int = 24):
        super().__init__()
        depth = patch_size.bit_length() - 1
        if 2 ** depth != patch_size:
            raise AnyRefConfigError(f"a conv stem needs a power-of-two patch size, not {patch_size}")
        layers, width_in = [], 3
        for level in range(depth):
            width = min(hidden_size, first_width * 2 ** level)
            layers += [nn.Conv2d(width_in, width, 3, stride=2, padding=1), nn.GELU()]
            width_in = width
        self.layers = nn.Sequential(*layers)
        self.project = nn.Conv2d(width_in, hidden_size, 1)

    @property
    def weight(self) -> torch.Tensor:
        """The last layer's weight (transformers reads the stem's dtype from it)."""
        return self.project.weight

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, C, S/patch, S/patch)."""
        return self.project(self.layers(pixels))


def install_conv_stem(model) -> None:
    """Put a ConvStem where a transformers CLIP(Vision)Model has its patchify, if its config asks for one."""
    vision = getattr(model, "vision_model", model)
    config = vision.config
    if getattr(config, "conv_stem", False):
        vision.embeddings.patch_embedding = ConvStem(patch_size=config.patch_size, hidden_size=config.hidden_size)


def load_clip_folder(model_class, folder: Path):
    """A transformers CLIP(Vision)Model from a local folder, conv stem included (plain folders load as usual)."""
    config = model_class.config_class.from_pretrained(str(folder))
    vision_config = getattr(config, "vision_config", config)
    if not getattr(vision_config, "conv_stem", False):
        check_clip_folder(folder)  # transformers would only warn about missing keys and start them random
        with quiet_transformers():  # a full CLIPModel folder also holds the text tower, which is not needed here
            return from_pretrained_folder(lambda: model_class.from_pretrained(str(folder)), folder, "CLIP folder")
    model = model_class(config)
    install_conv_stem(model)
    path = folder / "model.safetensors"
    state = read_safetensors(path, "CLIP weights")
    extras: tuple[str, ...] = ()
    if not any(k in state for k in model.state_dict()):  # a CLIPModel file read by a CLIPVisionModel: no text tower
        state, extras = {k.removeprefix(CLIP_VISION_PREFIX): v for k, v in state.items()}, CLIP_EXTRAS
    load_checked(model, state, what="CLIP weights", source=path, ignore=extras)
    return model.eval()


def build_clip_vision(config: VisionConfig):
    """A transformers CLIPVisionModel: loaded from a local folder, or fresh from the config."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    if config.pretrained_path:
        folder = resolve(config.pretrained_path)
        if not folder.is_dir():
            raise AnyRefCheckpointError(f"CLIP folder {str(folder)!r} does not exist")
        return load_clip_folder(CLIPVisionModel, folder)
    clip_config = CLIPVisionConfig(
        hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        image_size=config.image_size, patch_size=config.patch_size, conv_stem=config.conv_stem,
    )
    model = CLIPVisionModel(clip_config)
    install_conv_stem(model)
    return model


class VisionTower(nn.Module):
    """Image -> CLIP patch features -> projected LLM tokens, one per patch (16x16 = 256 in the paper)."""

    def __init__(self, config: VisionConfig, *, llm_hidden_size: int):
        super().__init__()
        self.config = config
        self.clip = build_clip_vision(config)
        self.projector = nn.Linear(self.clip.config.hidden_size, llm_hidden_size)  # LLaVA-v1: one linear layer
        if config.projector_path:
            load_projector(self.projector, resolve(config.projector_path))

    @property
    def num_patches(self) -> int:
        """How many tokens one image becomes."""
        return (self.clip.config.image_size // self.clip.config.patch_size) ** 2

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> normalised (B, 3, S, S), resized without cropping (AR's clip_resize_wo_crop)."""
        return clip_pixels(images, size=self.clip.config.image_size)

    def patch_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> CLIP patch features of the selected layer, (B, P, C_clip), CLS dropped."""
        out = self.clip(pixel_values=pixels, output_hidden_states=True)
        return out.hidden_states[self.config.select_layer][:, 1:]

    def scene_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> patch features of a whole scene, (B, P, C), with explicit grid positions if configured."""
        features = self.patch_features(pixels)  # (B, P, C)
        if not self.config.position_amplitude:
            return features
        side = int(round(features.shape[1] ** 0.5))
        table = grid_position_table(side, features.shape[2], amplitude=self.config.position_amplitude)
        return features + table.to(features.device, features.dtype)  # (B, P, C)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, P, D_llm) image tokens."""
        return self.projector(self.scene_features(pixels))


@functools.lru_cache(maxsize=8)
def grid_position_table(side: int, channels: int, *, amplitude: float) -> torch.Tensor:
    """Fixed 2D sin-cos positions of a side x side patch grid, row-major: (side*side, channels); half the channels
    encode the column, half the row, each with channels/4 frequencies (as MAE's 2D sin-cos embedding). Cached: every
    forward pass reads the same table, and callers only read it."""
    quarter = channels // 4
    freqs = 1.0 / (side ** (torch.arange(quarter, dtype=torch.float32) / max(1, quarter)))  # (F,)
    coords = torch.arange(side, dtype=torch.float32)  # (side,)
    angles = coords[:, None] * freqs[None] * torch.pi / 2  # (side, F)
    waves = torch.cat([angles.sin(), angles.cos()], dim=1)  # (side, 2F)
    rows = waves[:, None, :].expand(side, side, -1)  # (row, col, 2F)
    cols = waves[None, :, :].expand(side, side, -1)  # (row, col, 2F)
    table = torch.cat([cols, rows], dim=2).reshape(side * side, 4 * quarter)  # (P, 4F)
    table = torch.nn.functional.pad(table, (0, channels - 4 * quarter))  # (P, C)
    return amplitude * table


def load_projector(projector: nn.Module, path: Path) -> None:
    """Load projector weights from a .safetensors file (LLaVA-mini's) or a LLaVA folder's mm_projector (the paper)."""
    if path.is_dir():
        state = llava_projector_state(path)
    elif path.is_file():
        state = read_safetensors(path, "projector file")
    else:
        raise AnyRefCheckpointError(f"projector file {str(path)!r} does not exist; train LLaVA-mini with "
                                    "`anyref pretrain llava` or restore data/ingredients from git")
    load_checked(projector, state, what="projector weights", source=path)
