"""ImageBind's audio branch (Girdhar et al., 2023): 3 log-mel clips -> ViT -> 3 embeddings bound to images.

Module and parameter names follow ImageBind's `imagebind_model.py`, so `load_imagebind_audio` loads the audio
weights of an ImageBind-H checkpoint by name into `AudioEncoder(anyref.config.imagebind_huge_audio_config())`.
"""
from __future__ import annotations

import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import load_checked, read_tensors
from .config import AudioConfig
from .errors import AnyRefCheckpointError, AnyRefInputError, AnyRefWarning

MODALITY = "audio"  # the ModuleDict key ImageBind uses for this branch
GROUPS = ("modality_preprocessors", "modality_trunks", "modality_heads", "modality_postprocessors")
FBANK_MEAN, FBANK_STD = -4.268, 9.138  # ImageBind's (AudioSet) log-mel normalisation
FRAME_LENGTH_MS, FRAME_SHIFT_MS = 25, 10
MIN_SECONDS, MAX_SECONDS = 0.5, 60.0
SILENCE_PEAK = 1e-4  # a waveform whose peak is below this counts as silent
LOUD_PEAK = 2.0  # float audio lies in [-1, 1]; resampling may overshoot a little, integer PCM far more
MAX_CHANNELS = 8  # to_mono treats the shorter axis as channels when it is at most this long
MLP_RATIO = 4
MAX_LOGIT_SCALE = 100.0  # ImageBind's LearnableLogitScaling clip


# ---- waveform preprocessing (ImageBind's data.load_and_transform_audio_data without torchaudio.load) ----------------

def _as_float_tensor(waveform) -> torch.Tensor:
    """numpy or torch float array -> float32 tensor, refusing integer PCM and other types."""
    if isinstance(waveform, np.ndarray):
        waveform = torch.from_numpy(np.ascontiguousarray(waveform))
    if not isinstance(waveform, torch.Tensor):
        raise AnyRefInputError(f"a waveform must be a numpy array or torch tensor, got {type(waveform).__name__}")
    if not waveform.is_floating_point():
        raise AnyRefInputError(f"waveform has dtype {waveform.dtype}; convert integer PCM to float in [-1, 1] "
                               "first (e.g. int16 / 32768)")
    return waveform.detach().float().cpu()


def to_mono(waveform) -> torch.Tensor:
    """Average the channels of a (C, T) or (T, C) waveform (the shorter axis, at most 8 long, is C) -> (T,)."""
    waveform = _as_float_tensor(waveform)
    if waveform.ndim == 1:
        return waveform
    if waveform.ndim != 2 or min(waveform.shape) > MAX_CHANNELS:
        raise AnyRefInputError(f"to_mono needs a (T,), (C, T) or (T, C) waveform with C <= {MAX_CHANNELS}, "
                               f"got shape {tuple(waveform.shape)}")
    return waveform.mean(dim=int(waveform.shape[0] > waveform.shape[1]))  # (T,)


def _mono(waveform: torch.Tensor) -> torch.Tensor:
    """(T,), (1, T) or (T, 1) -> (T,); several channels raise an error that names the fix."""
    if waveform.ndim == 2 and 1 in waveform.shape:
        return waveform.reshape(-1)  # (T,)
    if waveform.ndim == 2:
        raise AnyRefInputError(f"waveform of shape {tuple(waveform.shape)} has several channels; the encoder takes "
                               "mono audio: average them with anyref.audio.to_mono(waveform)")
    if waveform.ndim != 1:
        raise AnyRefInputError(f"a waveform must be (T,) mono samples, got shape {tuple(waveform.shape)}")
    return waveform


def check_waveform(waveform, *, sample_rate: int) -> torch.Tensor:
    """Validate a mono float waveform at `sample_rate` and return it as float32 (T,), or raise AnyRefInputError."""
    waveform = _mono(_as_float_tensor(waveform))  # (T,)
    seconds = len(waveform) / sample_rate
    if not torch.isfinite(waveform).all():
        raise AnyRefInputError("waveform contains NaN or inf samples; clean or regenerate the audio")
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise AnyRefInputError(f"waveform lasts {seconds:.2f} s at {sample_rate} Hz; give between {MIN_SECONDS} and "
                               f"{MAX_SECONDS} s (check the sample rate, or cut long recordings)")
    peak = float(waveform.abs().max())
    if peak < SILENCE_PEAK:
        raise AnyRefInputError(f"waveform is silent (peak {peak:.1e} < {SILENCE_PEAK}); give audio with a sound in it")
    if peak > LOUD_PEAK:
        raise AnyRefInputError(f"waveform peaks at {peak:.3g}; scale float audio to [-1, 1] (int16 PCM: / 32768)")
    return waveform


def read_audio_file(path: str | Path) -> tuple[torch.Tensor, int]:
    """A sound file (wav, flac, ogg: whatever soundfile reads) -> float32 samples (T, C) and its sample rate."""
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise AnyRefInputError(f"audio file {str(path)!r} {'is a folder' if path.is_dir() else 'does not exist'}; "
                               "give the path of a wav file")
    try:
        data, sample_rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except (soundfile.SoundFileError, OSError, ValueError) as error:
        raise AnyRefInputError(f"audio file {str(path)!r} cannot be read as sound ({error}); give a wav (or flac/ogg) "
                               "file, e.g. one written with soundfile.write(path, waveform, 16000)") from None
    return torch.from_numpy(data), sample_rate


def load_waveform(source, *, sample_rate: int | None = None, target_rate: int = 16000,
                  average_channels: bool = False) -> torch.Tensor:
    """A sound file path or an array at `sample_rate` -> checked mono float32 (T,) at target_rate.

    Other rates are resampled with torchaudio.functional.resample. A file's channels are averaged (an AnyRefWarning
    says so unless average_channels=True); an array with several channels raises an error unless average_channels.
    """
    if isinstance(source, (str, Path)):
        if sample_rate is not None:
            raise AnyRefInputError("a file carries its own sample rate; pass sample_rate only with an array")
        waveform, sample_rate = read_audio_file(source)  # (T, C)
        if waveform.shape[1] > 1 and not average_channels:
            warnings.warn(f"audio file {str(source)!r} has {waveform.shape[1]} channels; averaged them to mono",
                          AnyRefWarning, stacklevel=2)
        waveform = waveform.mean(1)  # (T,)
    elif not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise AnyRefInputError(f"an audio array needs its sample_rate as a positive int (e.g. sample_rate=44100), "
                               f"got {sample_rate!r}")
    else:
        waveform = _as_float_tensor(source)
    waveform = _mono(to_mono(waveform) if average_channels else waveform)  # (T,)
    if sample_rate != target_rate:
        import torchaudio

        waveform = torchaudio.functional.resample(waveform, orig_freq=int(sample_rate), new_freq=target_rate)  # (T',)
    return check_waveform(waveform, sample_rate=target_rate)


def clip_bounds(num_samples: int, *, config: AudioConfig) -> list[tuple[int, int]]:
    """Sample ranges of the clips, placed like pytorchvideo's ConstantClipsPerVideoSampler (ImageBind's choice).

    Clip i starts at i * max(duration - clip_seconds, 0) / num_clips seconds; short audio repeats clip 0.
    """
    duration = num_samples / config.sample_rate
    spacing = Fraction(max(duration - config.clip_seconds, 0)) / config.num_clips
    starts = [spacing * i for i in range(config.num_clips)]
    length = Fraction(config.clip_seconds)
    return [(int(s * config.sample_rate), int((s + length) * config.sample_rate)) for s in starts]


def log_mel(clip: torch.Tensor, *, config: AudioConfig) -> torch.Tensor:
    """One (L,) waveform clip -> normalised Kaldi log-mel (1, num_mel_bins, target_length), as ImageBind computes it."""
    from torchaudio.compliance import kaldi

    clip = clip - clip.mean()  # (L,); ImageBind does this in place, which also shifts overlapping later clips
    fbank = kaldi.fbank(
        clip[None], htk_compat=True, sample_frequency=config.sample_rate, use_energy=False, window_type="hanning",
        num_mel_bins=config.num_mel_bins, dither=0.0, frame_length=FRAME_LENGTH_MS, frame_shift=FRAME_SHIFT_MS,
    ).T  # (mel, frames)
    fbank = F.pad(fbank, (0, max(0, config.target_length - fbank.shape[1])))[:, :config.target_length]  # (mel, T)
    return ((fbank - FBANK_MEAN) / FBANK_STD)[None]  # (1, mel, T)


def waveform_to_clips(waveform, *, config: AudioConfig) -> torch.Tensor:
    """Mono float waveform at config.sample_rate -> ImageBind's input (num_clips, 1, num_mel_bins, target_length)."""
    waveform = check_waveform(waveform, sample_rate=config.sample_rate)  # (T,)
    bounds = clip_bounds(len(waveform), config=config)
    return torch.stack([log_mel(waveform[a:b], config=config) for a, b in bounds])  # (3, 1, mel, T)


# ---- the encoder, named like ImageBind's modules ------------------------------------------------------------------

class PatchEmbed(nn.Module):
    """ImageBind's PatchEmbedGeneric for audio: Conv2d(1, D, kernel, stride, no bias) then LayerNorm over tokens."""

    def __init__(self, *, embed_dim: int, kernel: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=kernel, stride=stride, bias=False)
        self.norm_layer = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, mel, T) -> (N, L, D) patch tokens, frequency-major."""
        x = self.proj(x)  # (N, D, h, w)
        return self.norm_layer(x.flatten(2).transpose(1, 2))  # (N, h*w, D)


class PosEmbedding(nn.Module):
    """ImageBind's SpatioTemporalPosEmbeddingHelper (learnable): one vector per token, CLS included."""

    def __init__(self, *, num_tokens: int, embed_dim: int):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.randn(1, num_tokens, embed_dim) * embed_dim**-0.5)  # OpenCLIP-style init


class AudioPreprocessor(nn.Module):
    """ImageBind's AudioPreprocessor: patch stem, CLS token, learnable position embedding."""

    def __init__(self, config: AudioConfig):
        super().__init__()
        height, width = config.patch_grid
        self.rgbt_stem = PatchEmbed(embed_dim=config.embed_dim, kernel=config.kernel, stride=config.stride)
        self.pos_embedding_helper = PosEmbedding(num_tokens=1 + height * width, embed_dim=config.embed_dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, config.embed_dim) * config.embed_dim**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, mel, T) -> (N, 1 + L, D) tokens, CLS first."""
        tokens = self.rgbt_stem(x)  # (N, L, D)
        cls = self.cls_token.expand(len(tokens), -1, -1)  # (N, 1, D)
        return torch.cat([cls, tokens], dim=1) + self.pos_embedding_helper.pos_embed  # (N, 1 + L, D)


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for whole samples (dim 1 of ImageBind's (L, N, D) tokens)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(L, N, D) -> (L, N, D), zeroed per sample with probability p and rescaled while training."""
        if not self.training:
            return x
        keep = x.new_empty(1, x.shape[1], 1).bernoulli_(1.0 - self.p)  # (1, N, 1)
        return x * keep / (1.0 - self.p)  # (L, N, D)


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., D)."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """ImageBind's BlockWithMasking: pre-norm attention (with bias_k / bias_v) and MLP, each with drop path."""

    def __init__(self, *, dim: int, num_heads: int, drop_path: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, bias=True, add_bias_kv=True)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm_1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, MLP_RATIO * dim)
        self.norm_2 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(L, N, D) -> (L, N, D)."""
        h = self.norm_1(x)  # (L, N, D)
        x = x + self.drop_path(self.attn(h, h, h, need_weights=False)[0])  # (L, N, D)
        return x + self.drop_path(self.mlp(self.norm_2(x)))  # (L, N, D)


class SwapBatchAndTokens(nn.Module):
    """(N, L, D) <-> (L, N, D): ImageBind's attention runs sequence-first."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Transpose the first two dimensions."""
        return x.transpose(0, 1)


class AudioTrunk(nn.Module):
    """ImageBind's SimpleTransformer for audio: no pre-LayerNorm, drop path rising linearly to drop_path."""

    def __init__(self, config: AudioConfig):
        super().__init__()
        rates = np.linspace(0.0, config.drop_path, config.depth).tolist()
        self.pre_transformer_layer = SwapBatchAndTokens()
        self.blocks = nn.Sequential(*[Block(dim=config.embed_dim, num_heads=config.num_heads, drop_path=rate)
                                      for rate in rates])
        self.post_transformer_layer = SwapBatchAndTokens()
        self.apply(_jax_init)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, L, D) -> (N, L, D)."""
        return self.post_transformer_layer(self.blocks(self.pre_transformer_layer(tokens)))


def _jax_init(module: nn.Module) -> None:
    """SimpleTransformer's init: Xavier-uniform Linear weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class SelectElement(nn.Module):
    """Pick one token (0 = CLS)."""

    def __init__(self, index: int):
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L, D) -> (N, D)."""
        return x[:, self.index]


class Normalize(nn.Module):
    """L2-normalise the last dimension."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., E) -> (..., E) unit vectors."""
        return F.normalize(x, dim=-1)


class LogitScale(nn.Module):
    """ImageBind's LearnableLogitScaling with learnable=False: multiply by a fixed exp(log_logit_scale)."""

    def __init__(self, scale: float):
        super().__init__()
        self.register_buffer("log_logit_scale", torch.tensor(float(np.log(scale))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., E) -> (..., E) scaled."""
        return self.log_logit_scale.exp().clamp(max=MAX_LOGIT_SCALE) * x


class AudioEncoder(nn.Module):
    """ImageBind's audio branch: (B, clips, 1, mel, T) log-mels -> (B, clips, out_dim) vectors of norm logit_scale."""

    def __init__(self, config: AudioConfig):
        super().__init__()
        self.config = config
        self.modality_preprocessors = nn.ModuleDict({MODALITY: AudioPreprocessor(config)})
        self.modality_trunks = nn.ModuleDict({MODALITY: AudioTrunk(config)})
        self.modality_heads = nn.ModuleDict({MODALITY: nn.Sequential(
            nn.LayerNorm(config.embed_dim, eps=1e-6), SelectElement(0),
            nn.Linear(config.embed_dim, config.out_dim, bias=False),
        )})
        self.modality_postprocessors = nn.ModuleDict({MODALITY: nn.Sequential(
            Normalize(), LogitScale(config.logit_scale),
        )})
        if config.checkpoint:
            load_imagebind_audio(self, config.checkpoint)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, C, 1, mel, T) from waveform_to_clips, stacked -> (B, C, out_dim), one embedding per clip."""
        expected = (1, self.config.num_mel_bins, self.config.target_length)
        if clips.ndim != 5 or tuple(clips.shape[2:]) != expected:
            raise AnyRefInputError(f"audio clips must be (B, clips, {', '.join(map(str, expected))}), got "
                                   f"{tuple(clips.shape)}; build them with anyref.audio.waveform_to_clips and stack")
        batch, count = clips.shape[:2]
        tokens = self.modality_preprocessors[MODALITY](clips.flatten(0, 1))  # (B*C, 1+L, D)
        tokens = self.modality_trunks[MODALITY](tokens)  # (B*C, 1+L, D)
        embeddings = self.modality_postprocessors[MODALITY](self.modality_heads[MODALITY](tokens))  # (B*C, E)
        return embeddings.view(batch, count, -1)  # (B, C, E)

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, C, 1, mel, T) -> (B, out_dim): the clip embeddings averaged, as ImageBind's forward returns them."""
        return self(clips).mean(dim=1)  # (B, E)


def load_imagebind_audio(encoder: AudioEncoder, path: str | Path) -> None:
    """Load the audio weights (modality_*.audio.*) of a full ImageBind state dict (.pth) into encoder by name."""
    path = Path(path)
    if not path.is_file():
        raise AnyRefCheckpointError(f"ImageBind checkpoint {str(path)!r} does not exist; "
                                    "give the path of a local imagebind_huge.pth")
    state = read_tensors(path, "ImageBind checkpoint")
    audio = {k: v for k, v in state.items() if k.startswith(tuple(f"{g}.{MODALITY}." for g in GROUPS))}
    if not audio:
        raise AnyRefCheckpointError(f"{str(path)!r} has no modality_*.audio.* weights; is it an ImageBind state dict?")
    load_checked(encoder, audio, what="ImageBind audio weights (build the encoder with imagebind_huge_audio_config())",
                 source=path)
