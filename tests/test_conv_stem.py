"""CLIP-mini's conv stem: same token grid as the patchify, saved and loaded with its folder, checked key by key."""
import pytest
import torch
from safetensors.torch import load_file, save_file

from anyref.config import VisionConfig
from anyref.data.words import build_word_tokenizer
from anyref.errors import AnyRefCheckpointError
from anyref.pretrain import clip_mini
from anyref.vision import ConvStem, build_clip_vision

MICRO = VisionConfig(image_size=32, patch_size=8, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                     conv_stem=True)


def test_conv_stem_gives_the_patchify_grid():
    assert ConvStem(patch_size=8, hidden_size=32)(torch.zeros(2, 3, 32, 32)).shape == (2, 32, 4, 4)
    with pytest.raises(Exception, match="power-of-two"):
        ConvStem(patch_size=14, hidden_size=32)


def test_conv_stem_folder_loads_into_the_vision_tower_and_refuses_a_missing_key(tmp_path):
    clip = clip_mini.build_clip(clip_mini.CLIPMiniConfig(vision=MICRO), build_word_tokenizer()).eval()
    folder = clip_mini.save_clip_mini(clip, tmp_path / "clip")
    tower = build_clip_vision(VisionConfig(pretrained_path=str(folder)))
    pixels = torch.randn(2, 3, 32, 32)
    assert isinstance(tower.embeddings.patch_embedding, ConvStem)
    torch.testing.assert_close(tower(pixel_values=pixels).last_hidden_state,
                               clip.vision_model(pixel_values=pixels).last_hidden_state)
    state = load_file(str(folder / "model.safetensors"))
    del state["vision_model.embeddings.patch_embedding.project.weight"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(AnyRefCheckpointError, match="missing keys"):
        build_clip_vision(VisionConfig(pretrained_path=str(folder)))
