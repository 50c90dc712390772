"""Tests for the ImageBind-style audio encoder, its preprocessing, crops and the audio-image binding run."""
import json
from dataclasses import replace

import numpy as np
import pytest
import soundfile
import torch
import torch.nn.functional as F

from anyref.audio import AudioEncoder, clip_bounds, load_imagebind_audio, load_waveform, to_mono, waveform_to_clips
from anyref.config import AudioConfig, imagebind_huge_audio_config
from anyref.data import make_scene, object_crop, sound_for, sounds
from anyref.errors import AnyRefCheckpointError, AnyRefInputError, AnyRefWarning
from anyref.pretrain.audio_mini import (
    SECOND_SOURCE,
    audio_retrieval_top1,
    binding_pair,
    load_audio_encoder,
    mixture_top2,
    save_audio_encoder,
    train_audio_binding,
)

torch.set_num_threads(1)
MICRO = AudioConfig(num_mel_bins=32, embed_dim=16, depth=1, num_heads=2, out_dim=8)


def micro_encoder(seed=0):
    """A freshly initialised micro encoder in eval mode."""
    torch.manual_seed(seed)
    return AudioEncoder(MICRO).eval()


def silhouette_embed(crops):
    """A fixed, deterministic image side: coarse 4x4 silhouette of the saturated pixels, projected to 8 dims."""
    rgb = torch.from_numpy(crops).float()  # (N, S, S, 3)
    mask = (rgb.amax(-1) - rgb.amin(-1) > 60).float()[:, None]  # (N, 1, S, S)
    coarse = F.adaptive_avg_pool2d(mask, 4).flatten(1)  # (N, 16)
    projection = torch.randn(16, MICRO.out_dim, generator=torch.Generator().manual_seed(0))  # (16, 8)
    return F.normalize((coarse - coarse.mean(dim=1, keepdim=True)) @ projection, dim=-1)  # (N, 8)


@pytest.fixture(scope="module")
def clips():
    """Preprocessed clips of two shape sounds, (2, 3, 1, 32, 204)."""
    return torch.stack([waveform_to_clips(sound_for(shape, seed=0, index=0), config=MICRO)
                        for shape in ("circle", "star")])


# ---- preprocessing ------------------------------------------------------------------------------------------------

def test_clips_have_imagebind_layout_and_normalisation(clips):
    assert clips.shape == (2, 3, 1, 32, 204)
    assert abs(float(clips.mean())) < 1.0 and 0.1 < float(clips.std()) < 1.5
    huge = waveform_to_clips(sound_for("square", seed=0, index=0), config=imagebind_huge_audio_config())
    assert huge.shape == (3, 1, 128, 204)


def test_clips_are_spaced_like_constant_clips_per_video_sampler():
    assert clip_bounds(5 * 16000, config=MICRO) == [(0, 32000), (16000, 48000), (32000, 64000)]
    assert clip_bounds(16000, config=MICRO) == [(0, 32000)] * 3  # short audio: every clip starts at 0
    short = waveform_to_clips(sound_for("circle", seed=0, index=0)[:12000], config=MICRO)
    assert short.shape == (3, 1, 32, 204) and torch.equal(short[0], short[2])


@pytest.mark.parametrize("bad, message", [
    (np.full(32000, np.nan, np.float32), "NaN"),
    (np.zeros(32000, np.float32), "silent"),
    (np.full(32000, 1e-5, np.float32), "silent"),
    (np.ones(4000, np.float32) * 0.1, "between 0.5 and 60"),
    (np.ones(61 * 16000, np.float32) * 0.1, "between 0.5 and 60"),
    (np.ones((2, 32000), np.float32) * 0.1, "to_mono"),
    (np.ones((32000, 2), np.float32) * 0.1, "to_mono"),
    (np.ones(32000, np.int16), "integer PCM"),
    (np.ones(32000, np.float32) * 3000.0, r"\[-1, 1\]"),
    ([0.1] * 32000, "numpy array or torch tensor"),
])
def test_bad_waveforms_raise_clear_errors(bad, message):
    with pytest.raises(AnyRefInputError, match=message):
        waveform_to_clips(bad, config=MICRO)


def test_to_mono_averages_either_layout():
    left, right = np.full(100, 0.2, np.float32), np.full(100, 0.4, np.float32)
    assert torch.allclose(to_mono(np.stack([left, right])), torch.full((100,), 0.3))
    assert torch.allclose(to_mono(np.stack([left, right], axis=1)), torch.full((100,), 0.3))


@pytest.mark.parametrize("rate", [8000, 44100])
def test_load_waveform_resamples_arrays_to_16k(rate):
    t = np.arange(rate) / rate  # 1 s
    wave = load_waveform((0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sample_rate=rate)
    assert wave.shape == (16000,) and wave.dtype == torch.float32
    spectrum = torch.fft.rfft(wave).abs()
    assert int(spectrum.argmax()) == 440  # 1 Hz bins: the tone survives resampling


def test_load_waveform_reads_wav_files(tmp_path):
    sound = sound_for("diamond", seed=0, index=0)
    soundfile.write(tmp_path / "mono.wav", sound, 16000, subtype="FLOAT")
    assert torch.equal(load_waveform(tmp_path / "mono.wav"), torch.from_numpy(sound))
    stereo = np.stack([sound, sound], axis=1)[::2]  # (40000, 2) at 22050 Hz from here on
    soundfile.write(tmp_path / "stereo.wav", stereo, 22050)
    with pytest.warns(AnyRefWarning, match="averaged them to mono"):
        wave = load_waveform(tmp_path / "stereo.wav")
    assert torch.equal(wave, load_waveform(tmp_path / "stereo.wav", average_channels=True))
    assert wave.shape == (round(40000 * 16000 / 22050),)
    with pytest.raises(AnyRefInputError, match="does not exist"):
        load_waveform(tmp_path / "missing.wav")
    with pytest.raises(AnyRefInputError, match="sample_rate"):
        load_waveform(sound)


# ---- encoder ------------------------------------------------------------------------------------------------------

def test_encoder_returns_scaled_unit_embeddings_per_clip(clips):
    encoder = micro_encoder()
    with torch.no_grad():
        out = encoder(clips)  # (2, 3, 8)
        pooled = encoder.embed(clips)  # (2, 8)
    assert out.shape == (2, 3, MICRO.out_dim)
    assert torch.allclose(out.norm(dim=-1), torch.full((2, 3), MICRO.logit_scale), atol=1e-4)
    assert torch.allclose(pooled, out.mean(dim=1))
    with pytest.raises(AnyRefInputError, match="waveform_to_clips"):
        encoder(clips[:, :, :, :16])


def test_parameter_names_follow_imagebind():
    keys = set(micro_encoder().state_dict())
    for key in [
        "modality_preprocessors.audio.cls_token",
        "modality_preprocessors.audio.rgbt_stem.proj.weight",
        "modality_preprocessors.audio.rgbt_stem.norm_layer.weight",
        "modality_preprocessors.audio.pos_embedding_helper.pos_embed",
        "modality_trunks.audio.blocks.0.attn.in_proj_weight",
        "modality_trunks.audio.blocks.0.attn.bias_k",
        "modality_trunks.audio.blocks.0.attn.out_proj.weight",
        "modality_trunks.audio.blocks.0.norm_1.weight",
        "modality_trunks.audio.blocks.0.mlp.fc1.weight",
        "modality_trunks.audio.blocks.0.mlp.fc2.bias",
        "modality_trunks.audio.blocks.0.norm_2.bias",
        "modality_heads.audio.0.weight",
        "modality_heads.audio.2.weight",
        "modality_postprocessors.audio.1.log_logit_scale",
    ]:
        assert key in keys, key


def test_imagebind_huge_sizes():
    with torch.device("meta"):
        encoder = AudioEncoder(imagebind_huge_audio_config())
    state = encoder.state_dict()
    assert state["modality_preprocessors.audio.pos_embedding_helper.pos_embed"].shape == (1, 1 + 12 * 19, 768)
    assert state["modality_heads.audio.2.weight"].shape == (1024, 768)
    assert len(encoder.modality_trunks["audio"].blocks) == 12
    assert 85e6 < sum(p.numel() for p in encoder.parameters()) < 87e6


def test_load_imagebind_audio_takes_audio_keys_of_a_full_state_dict(tmp_path, clips):
    source = micro_encoder(seed=1)
    full = {**source.state_dict(), "modality_trunks.vision.blocks.0.attn.in_proj_weight": torch.zeros(3, 3)}
    torch.save(full, tmp_path / "imagebind.pth")
    encoder = micro_encoder(seed=2)
    load_imagebind_audio(encoder, tmp_path / "imagebind.pth")
    with torch.no_grad():
        assert torch.equal(encoder(clips), source(clips))
    from_config = AudioEncoder(replace(MICRO, checkpoint=str(tmp_path / "imagebind.pth")))
    assert torch.equal(from_config.state_dict()["modality_heads.audio.2.weight"], full["modality_heads.audio.2.weight"])
    deeper = AudioEncoder(replace(MICRO, depth=2))
    with pytest.raises(AnyRefCheckpointError, match="missing"):
        load_imagebind_audio(deeper, tmp_path / "imagebind.pth")
    torch.save({"modality_trunks.vision.x": torch.zeros(1)}, tmp_path / "vision_only.pth")
    with pytest.raises(AnyRefCheckpointError, match="no modality_"):
        load_imagebind_audio(encoder, tmp_path / "vision_only.pth")


def test_save_and_load_round_trip(tmp_path, clips):
    encoder = micro_encoder(seed=3)
    save_audio_encoder(encoder, tmp_path / "audio", metrics={"retrieval_top1": 0.5})
    loaded = load_audio_encoder(tmp_path / "audio")
    assert loaded.config == encoder.config
    assert json.loads((tmp_path / "audio" / "metrics.json").read_text()) == {"retrieval_top1": 0.5}
    with torch.no_grad():
        assert torch.equal(loaded(clips), encoder(clips))
    with pytest.raises(AnyRefCheckpointError, match="overwrite"):
        save_audio_encoder(encoder, tmp_path / "audio")
    save_audio_encoder(micro_encoder(seed=4), tmp_path / "audio", overwrite=True)
    with pytest.raises(AnyRefCheckpointError, match="missing"):
        load_audio_encoder(tmp_path / "nowhere")


# ---- crops and binding --------------------------------------------------------------------------------------------

def test_object_crop_is_centred_on_the_object():
    scene = make_scene(np.random.default_rng(0))
    for k, obj in enumerate(scene.objects):
        crop = object_crop(scene, k, size=32)
        assert crop.shape == (32, 32, 3) and crop.dtype == np.uint8
        colour = scene.image[obj.mask].astype(float).mean(axis=0)  # (3,)
        assert np.abs(crop[14:18, 14:18].astype(float).mean(axis=(0, 1)) - colour).max() < 30
    with pytest.raises(AnyRefInputError, match="out of range"):
        object_crop(scene, len(scene.objects))


def test_binding_loss_decreases_and_is_seeded():
    encoder = micro_encoder()
    result = train_audio_binding(encoder, silhouette_embed, steps=30, batch_size=6, lr=3e-3, seed=0, progress=False)
    losses = result["losses"]
    assert len(losses) == 30 and result["steps"] == 30
    assert np.mean(losses[-8:]) < np.mean(losses[:8]) - 0.1
    first = train_audio_binding(micro_encoder(), silhouette_embed, steps=2, batch_size=4, lr=3e-3, seed=5,
                                progress=False)["losses"]
    again = train_audio_binding(micro_encoder(), silhouette_embed, steps=2, batch_size=4, lr=3e-3, seed=5,
                                progress=False)["losses"]
    assert first == again
    top1 = audio_retrieval_top1(encoder, silhouette_embed, num=6)
    assert 0.0 <= top1 <= 1.0 and not encoder.training


def test_mixture_pairs_play_two_shapes_of_their_scene_together():
    single = [binding_pair(seed=0, index=i) for i in range(20)]
    assert all(len(crops) == 1 and len(shapes) == 1 for crops, _, shapes in single)
    crops, sound, shapes = single[3]
    np.testing.assert_array_equal(sound, sound_for(shapes[0], seed=0, index=3))
    mixed = [binding_pair(seed=0, index=i, mixture_fraction=1.0) for i in range(20)]
    two = [(i, pair) for i, pair in enumerate(mixed) if len(pair[0]) == 2]
    assert len(two) >= 15  # every scene with two shape classes gives a mixture
    for i, (crops, sound, (first, second)) in two:
        assert first != second and all(crop.shape == (32, 32, 3) for crop in crops)
        expected = sounds.mix(sound_for(first, seed=0, index=i), sound_for(second, seed=0, index=SECOND_SOURCE + i))
        np.testing.assert_array_equal(sound, expected)
        np.testing.assert_array_equal(crops[0], single[i][0][0])  # the first object is the single pair's object


def test_binding_with_mixtures_trains_and_scores_mixtures():
    encoder = micro_encoder()
    result = train_audio_binding(encoder, silhouette_embed, steps=3, batch_size=4, lr=3e-3, seed=0,
                                 mixture_fraction=0.5, progress=False)
    assert len(result["losses"]) == 3 and all(np.isfinite(result["losses"]))
    assert 0.0 <= mixture_top2(encoder, silhouette_embed, num=4) <= 1.0 and not encoder.training
    with pytest.raises(AnyRefInputError, match="mixture_fraction"):
        train_audio_binding(micro_encoder(), silhouette_embed, steps=1, batch_size=2, lr=1e-3, seed=0,
                            mixture_fraction=1.5, progress=False)


def test_binding_rejects_a_mismatched_image_side():
    with pytest.raises(AnyRefInputError, match="out_dim"):
        train_audio_binding(micro_encoder(), lambda crops: torch.zeros(len(crops), 5), steps=1, batch_size=2,
                            lr=1e-3, seed=0, progress=False)


# ---- parity with Meta's imagebind package (skipped when it is not installed) --------------------------------------

def test_matches_imagebind_package_on_the_same_weights(clips):
    from functools import partial

    from torch import nn

    helpers = pytest.importorskip("imagebind.models.helpers")
    pre = pytest.importorskip("imagebind.models.multimodal_preprocessors")
    trunk = pytest.importorskip("imagebind.models.transformer")
    c = MICRO
    stem = pre.PatchEmbedGeneric(
        proj_stem=[nn.Conv2d(1, c.embed_dim, kernel_size=c.kernel, stride=c.stride, bias=False)],
        norm_layer=nn.LayerNorm(c.embed_dim),
    )
    theirs = nn.Module()
    theirs.modality_preprocessors = nn.ModuleDict({"audio": pre.AudioPreprocessor(
        img_size=[1, c.num_mel_bins, c.target_length], num_cls_tokens=1, audio_stem=stem,
        pos_embed_fn=partial(pre.SpatioTemporalPosEmbeddingHelper, learnable=True),
    )})
    theirs.modality_trunks = nn.ModuleDict({"audio": trunk.SimpleTransformer(
        embed_dim=c.embed_dim, num_blocks=c.depth, ffn_dropout_rate=0.0, drop_path_rate=c.drop_path,
        attn_target=partial(trunk.MultiheadAttention, embed_dim=c.embed_dim, num_heads=c.num_heads, bias=True,
                            add_bias_kv=True),
        pre_transformer_layer=nn.Sequential(nn.Identity(), helpers.EinOpsRearrange("b l d -> l b d")),
        post_transformer_layer=helpers.EinOpsRearrange("l b d -> b l d"),
    )})
    theirs.modality_heads = nn.ModuleDict({"audio": nn.Sequential(
        nn.LayerNorm(c.embed_dim, eps=1e-6), helpers.SelectElement(index=0),
        nn.Linear(c.embed_dim, c.out_dim, bias=False),
    )})
    theirs.modality_postprocessors = nn.ModuleDict({"audio": nn.Sequential(
        helpers.Normalize(dim=-1), helpers.LearnableLogitScaling(logit_scale_init=c.logit_scale, learnable=False),
    )})
    ours = micro_encoder(seed=6)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    theirs.eval()
    with torch.no_grad():
        x = theirs.modality_preprocessors["audio"](audio=clips.flatten(0, 1))["trunk"]["tokens"]
        x = theirs.modality_postprocessors["audio"](theirs.modality_heads["audio"](theirs.modality_trunks["audio"](x)))
        assert torch.allclose(ours(clips), x.view(2, 3, -1), atol=1e-5)


def test_preprocessing_matches_imagebind_package():
    data = pytest.importorskip("imagebind.data")
    wave = torch.from_numpy(sound_for("triangle", seed=0, index=0))[None]  # (1, T)
    sampler = data.ConstantClipsPerVideoSampler(clip_duration=2, clips_per_video=3)
    timepoints = data.get_clip_timepoints(sampler, wave.shape[1] / 16000)
    expected = torch.stack([
        (data.waveform2melspec(wave[:, int(a * 16000):int(b * 16000)].clone(), 16000, MICRO.num_mel_bins, 204)
         - (-4.268)) / 9.138
        for a, b in timepoints
    ])  # (3, 1, mel, 204); clone() avoids ImageBind's in-place mean subtraction leaking into the next clip
    assert torch.allclose(waveform_to_clips(wave[0], config=MICRO), expected, atol=1e-5)
