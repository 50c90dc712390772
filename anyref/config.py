"""Configuration and presets: `micro` (tests), `mini` (the course, CPU; `mini-scratch` without pretrained parts)
and `paper` (real checkpoints on GPUs)."""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .errors import AnyRefConfigError
from .schema import build, check_value


MINI_IMAGE_SIZE = 128  # the miniature's image side in px: ShapeScenes, the mini towers and training
MINI_POSITION_AMPLITUDE = 4.0  # the mini towers' explicit grid positions, about the size of CLIP-mini's features


@dataclass
class VisionConfig:
    """CLIP vision tower (LLaVA's image encoder) and its projector into the LLM."""

    image_size: int = MINI_IMAGE_SIZE
    patch_size: int = 16
    hidden_size: int = 96
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 192
    select_layer: int = -1  # LLaVA-v1 uses -2 (the penultimate layer); the mini tower is shallow, so the last
    pretrained_path: str | None = None  # a local CLIP(Vision)Model folder (paper: CLIP ViT-L/14; mini: CLIP-mini)
    projector_path: str | None = None  # projector weights (.safetensors; paper: LLaVA's mm_projector)
    conv_stem: bool = False  # mini deviation: 3x3 stride-2 convolutions instead of the single patchify (Xiao et al.)
    position_amplitude: float = 0.0  # mini deviation: > 0 adds fixed 2D sin-cos grid positions to scene patch features


@dataclass
class LLMConfig:
    """Llama decoder (LLaVA's language model) with LoRA on q_proj / v_proj."""

    hidden_size: int = 128
    num_layers: int = 3
    num_heads: int = 4
    num_kv_heads: int = 4
    intermediate_size: int = 384
    max_positions: int = 512
    use_lora: bool = True
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    pretrained_path: str | None = None  # a local LlamaForCausalLM folder (paper: LLaVA-7B)


@dataclass
class SAMConfig:
    """Segment-anything image encoder, prompt encoder and mask decoder."""

    image_size: int = MINI_IMAGE_SIZE
    patch_size: int = 8
    embed_dim: int = 64
    depth: int = 2
    num_heads: int = 4
    window_size: int = 0
    global_attn_indexes: tuple[int, ...] = ()
    use_rel_pos: bool = False
    prompt_dim: int = 64
    decoder_depth: int = 2
    decoder_mlp_dim: int = 128
    decoder_heads: int = 4
    checkpoint: str | None = None  # a local SAM .pth state dict (paper: sam_vit_h_4b8939.pth)


@dataclass
class TrainableConfig:
    """Which parts train (the paper freezes CLIP, the projector and SAM's image encoder)."""

    vision: bool = False
    projector: bool = False
    sam_encoder: bool = False
    llm_full: bool = False  # train every LLM weight (from scratch) instead of LoRA only
    token_embeddings: bool = True
    mask_decoder: bool = True
    obj_mlp: bool = True
    audio_encoder: bool = False  # ImageBind stays frozen in the paper
    audio_projection: bool = True


@dataclass(kw_only=True)
class AudioConfig:
    """Sizes of the audio encoder and its preprocessing; defaults are the mini size, see imagebind_huge_audio_config."""

    sample_rate: int = 16000
    clip_seconds: float = 2.0
    num_clips: int = 3
    num_mel_bins: int = 64  # ImageBind: 128
    target_length: int = 204  # fbank frames per clip
    kernel: int = 16  # patch size of the stem convolution
    stride: int = 10  # overlapping patches, as in ImageBind / AST
    embed_dim: int = 64
    depth: int = 2
    num_heads: int = 4
    drop_path: float = 0.0  # ImageBind: 0.1 (progressive over the blocks)
    out_dim: int = 64  # must equal the dimension of the image embeddings the audio is bound to
    logit_scale: float = 20.0  # ImageBind's fixed audio logit scale
    checkpoint: str | None = None  # a full ImageBind state dict (.pth) whose audio weights to load

    def __post_init__(self):
        if self.embed_dim % self.num_heads:
            raise AnyRefConfigError(f"embed_dim {self.embed_dim} must be divisible by num_heads {self.num_heads}")
        if min(self.num_mel_bins, self.target_length) < self.kernel:
            raise AnyRefConfigError(f"num_mel_bins ({self.num_mel_bins}) and target_length ({self.target_length}) "
                                    f"must be at least the patch kernel ({self.kernel})")

    @property
    def patch_grid(self) -> tuple[int, int]:
        """(frequency, time) patches per clip."""
        return tuple((n - self.kernel) // self.stride + 1 for n in (self.num_mel_bins, self.target_length))

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "audio config") -> "AudioConfig":
        """Rebuild a config from `dataclasses.asdict` output, refusing unknown keys and wrong types."""
        return build(cls, data, source=source)


def imagebind_huge_audio_config(**overrides) -> AudioConfig:
    """The audio branch of ImageBind-H (imagebind_huge): 128 mel bins, ViT-B sized trunk, 1024-d output."""
    sizes = dict(num_mel_bins=128, embed_dim=768, depth=12, num_heads=12, drop_path=0.1, out_dim=1024)
    return AudioConfig(**{**sizes, **overrides})


@dataclass
class AnyRefConfig:
    """Everything needed to build an AnyRef model; saved as config.json beside the weights."""

    preset: str = "mini"
    vision: VisionConfig = field(default_factory=VisionConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    sam: SAMConfig = field(default_factory=SAMConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    trainable: TrainableConfig = field(default_factory=TrainableConfig)
    refocus_weight: float = 0.1  # lambda_f of Eq. 2 (the initial value when refocus_learnable)
    refocus_learnable: bool = False  # Table 7's dagger: lambda_f a trained parameter, initialised at refocus_weight
    ce_weight: float = 1.0  # lambda_text of Eq. 3
    bce_weight: float = 2.0  # lambda_bce of Eq. 3
    dice_weight: float = 0.5  # lambda_dice of Eq. 3
    prompt_distill_weight: float = 0.0  # mini training aid (not the paper's): anyref.prompt_distill; 0 = off
    locator: bool = False  # mini deviation (not the paper's): anyref.locator's map as SAM's dense prompt
    locator_weight: float = 1.0  # weight of the locator map's loss (when locator is on)
    locator_loss: str = "bce"  # "bce": each cell against its cover; "softmax": a ranking over cells (anyref.locator)
    locator_feedback: bool = False  # mini deviation (not the paper's): what the locator found, added to `<obj>` for gamma
    max_text_tokens: int = 96
    max_new_tokens: int = 24
    tokenizer_path: str | None = None  # a local tokenizer folder; None builds the ShapeScenes word tokenizer

    def to_dict(self) -> dict:
        """Plain-JSON view of the config."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "config") -> "AnyRefConfig":
        """Rebuild a config from `to_dict` output; unknown keys, wrong types and missing sections are refused
        (`source` names the file in the message)."""
        return build(cls, data, source=source)

    def save(self, path: str | Path) -> None:
        """Write config.json."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "AnyRefConfig":
        """Read config.json, or raise an AnyRefConfigError that names the file and what is wrong in it."""
        source = repr(str(path))
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise AnyRefConfigError(f"cannot read config file {source} ({error.__class__.__name__}: {error}); "
                                    "check that it is a readable UTF-8 text file") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise AnyRefConfigError(f"config file {source} is not valid JSON ({error}); fix it, or write it again "
                                    "with AnyRefConfig.save(path)") from None
        return cls.from_dict(data, source=source)


def _micro() -> AnyRefConfig:
    return AnyRefConfig(
        preset="micro",
        vision=VisionConfig(image_size=32, patch_size=8, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
        llm=LLMConfig(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=2, intermediate_size=64, max_positions=256),
        sam=SAMConfig(image_size=64, patch_size=8, embed_dim=32, depth=1, num_heads=2, prompt_dim=32,
                      decoder_depth=2, decoder_mlp_dim=64, decoder_heads=2),
        audio=AudioConfig(num_mel_bins=32, embed_dim=16, depth=1, num_heads=2, out_dim=16),
        max_new_tokens=12,
    )


def _mini() -> AnyRefConfig:
    # The paper's recipe in miniature: pretrained CLIP-mini, LLaVA-mini and SAM-mini from data/ingredients, frozen
    # encoders, LoRA on the LLM, trainable token embeddings, mask decoder and gamma. The miniature's deviations: a conv
    # stem and explicit grid positions in the vision tower, the locator's map as SAM's dense prompt, and what the map
    # found fed back into gamma's input (README, "The miniature's deviations" 4 and 7).
    return AnyRefConfig(
        preset="mini",
        vision=VisionConfig(pretrained_path="data:ingredients/clip-mini",
                            projector_path="data:ingredients/llava-mini/projector.safetensors",
                            conv_stem=True, position_amplitude=MINI_POSITION_AMPLITUDE),
        llm=LLMConfig(pretrained_path="data:ingredients/llava-mini/llm"),
        sam=SAMConfig(checkpoint="data:ingredients/sam-mini/model.safetensors"),
        audio=AudioConfig(checkpoint="data:ingredients/audio-mini"),
        tokenizer_path="data:ingredients/llava-mini/tokenizer",
        locator=True,
        locator_feedback=True,
    )


def _mini_scratch() -> AnyRefConfig:
    # The same sizes and locator with no pretrained ingredient: every part trains from scratch (no LoRA).
    return AnyRefConfig(
        preset="mini-scratch",
        vision=VisionConfig(conv_stem=True, position_amplitude=MINI_POSITION_AMPLITUDE),
        llm=LLMConfig(use_lora=False),
        trainable=TrainableConfig(vision=True, projector=True, sam_encoder=True, llm_full=True),
        locator=True,
    )


def _paper() -> AnyRefConfig:
    return AnyRefConfig(
        preset="paper",
        vision=VisionConfig(image_size=224, patch_size=14, hidden_size=1024, num_layers=24, num_heads=16,
                            intermediate_size=4096, select_layer=-2),
        llm=LLMConfig(hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=32, intermediate_size=11008,
                      max_positions=2048, lora_r=8, lora_alpha=16, lora_dropout=0.05),
        sam=SAMConfig(image_size=1024, patch_size=16, embed_dim=1280, depth=32, num_heads=16, window_size=14,
                      global_attn_indexes=(7, 15, 23, 31), use_rel_pos=True, prompt_dim=256, decoder_depth=2, decoder_mlp_dim=2048,
                      decoder_heads=8),
        audio=imagebind_huge_audio_config(),
        max_text_tokens=512,
        max_new_tokens=128,
    )


RECIPES = ("paper", "full-llm")
RECIPE_HELP = ("paper: LoRA on q, v (Sec. 4); full-llm: the miniature's deviation that trains the whole LLM and the "
               "projector")  # the --recipe help of the benchmark scripts


def with_recipe(config: AnyRefConfig, recipe: str) -> AnyRefConfig:
    """The paper's recipe (LoRA on q, v; frozen CLIP and projector), or the miniature's "full-llm" deviation, which
    trains every LLM weight and the projector: at 3 layers and 128 wide, LoRA r8 stayed at the segment-everything
    floor, while training the whole LLM rose above it (research/results/grounding_I-v2-full.json)."""
    if recipe not in RECIPES:
        raise AnyRefConfigError(f"unknown recipe {recipe!r}; choose one of {RECIPES}")
    if recipe == "full-llm":
        config.llm.use_lora = False
        config.trainable.llm_full = True
        config.trainable.projector = True
    return config


PRESETS = {"micro": _micro, "mini": _mini, "mini-scratch": _mini_scratch, "paper": _paper}


def preset(name: str, **overrides) -> AnyRefConfig:
    """A fresh config for a named preset; keyword overrides replace top-level fields."""
    if name not in PRESETS:
        raise AnyRefConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    config = PRESETS[name]()
    hints = typing.get_type_hints(AnyRefConfig)
    for key, value in overrides.items():
        if key not in hints:
            raise AnyRefConfigError(f"unknown config field {key!r}; the fields are {sorted(hints)}")
        setattr(config, key, check_value(value, hints[key], source=f"preset({name!r})", key=key))
    return config
