"""The paper's checkpoints in their real formats, at reduced sizes: LLaVA-v1 (sharded .bin with mm_projector and
rotary buffers), CLIP ViT (CLIPModel folder), SAM (sam_vit_h_4b8939.pth) and ImageBind (imagebind_huge.pth).

Each loads into the model with the files' exact key names; each broken variant fails with an error naming the file
and the keys, and a pickle payload never runs."""
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from anyref import AnyRefModel, preset
from anyref.audio import AudioEncoder
from anyref.config import AudioConfig, SAMConfig
from anyref.errors import AnyRefCheckpointError
from anyref.sam import build_sam

LLM = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
           num_key_value_heads=2)
CLIP_VISION = dict(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                   patch_size=8)
SAM = SAMConfig(image_size=64, patch_size=8, embed_dim=32, depth=2, num_heads=2, window_size=4,
                global_attn_indexes=(1,), use_rel_pos=True, prompt_dim=32, decoder_depth=2, decoder_mlp_dim=64,
                decoder_heads=2)
AUDIO = AudioConfig(num_mel_bins=32, embed_dim=16, depth=1, num_heads=2, out_dim=16)
PAYLOAD_MARK = "pwned.txt"


class _Payload:
    """A pickle that would create a file when unpickled without weights_only."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


def _save_shards(state: dict, folder: Path, shards: int = 2) -> None:
    """LLaVA's layout: pytorch_model-0000k-of-0000n.bin files and pytorch_model.bin.index.json."""
    keys = sorted(state)
    names = [f"pytorch_model-{k + 1:05d}-of-{shards:05d}.bin" for k in range(shards)]
    weight_map = {key: names[i * shards // len(keys)] for i, key in enumerate(keys)}
    for name in names:
        torch.save({k: v for k, v in state.items() if weight_map[k] == name}, folder / name)
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {"total_size": 0},
                                                                     "weight_map": weight_map}))


def _llava_state(seed: int = 0) -> dict:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    state = {k: v.half() for k, v in LlamaForCausalLM(LlamaConfig(**LLM, tie_word_embeddings=False)).state_dict().items()}
    for layer in range(LLM["num_hidden_layers"]):  # transformers 4.31 saved these buffers
        state[f"model.layers.{layer}.self_attn.rotary_emb.inv_freq"] = torch.rand(LLM["hidden_size"] // 4)
    state["model.mm_projector.weight"] = torch.randn(LLM["hidden_size"], CLIP_VISION["hidden_size"]).half()
    state["model.mm_projector.bias"] = torch.randn(LLM["hidden_size"]).half()
    return state


def make_llava(folder: Path, state: dict | None = None) -> Path:
    """A LLaVA-v1 folder: config.json of model_type llava with its mm_* fields, two .bin shards and their index."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {**LLM, "model_type": "llava", "architectures": ["LlavaLlamaForCausalLM"], "torch_dtype": "float16",
              "mm_hidden_size": CLIP_VISION["hidden_size"], "mm_vision_tower": "openai/clip-vit-large-patch14",
              "mm_vision_select_layer": -2, "mm_use_im_start_end": True, "tie_word_embeddings": False,
              "rms_norm_eps": 1e-6, "hidden_act": "silu", "max_position_embeddings": 256}
    (folder / "config.json").write_text(json.dumps(config))
    _save_shards(_llava_state() if state is None else state, folder)
    return folder


def _clip_state_and_config(seed: int = 0):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    config = CLIPConfig(text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, vocab_size=64, max_position_embeddings=16),
                        vision_config=CLIP_VISION, projection_dim=16)
    state = CLIPModel(config).state_dict()
    state["vision_model.embeddings.position_ids"] = torch.arange(17)[None]  # older files saved these buffers
    state["text_model.embeddings.position_ids"] = torch.arange(16)[None]
    return state, config


def make_clip(folder: Path, state: dict | None = None) -> Path:
    """An HF CLIPModel folder as openai/clip-vit-large-patch14 ships it: config.json and pytorch_model.bin."""
    default, config = _clip_state_and_config()
    config.save_pretrained(str(folder))
    torch.save(default if state is None else state, folder / "pytorch_model.bin")
    return folder


def make_sam(path: Path, state: dict | None = None) -> Path:
    """A SAM checkpoint as Meta ships sam_vit_h_4b8939.pth: torch.save of the Sam state dict."""
    torch.manual_seed(0)
    torch.save(build_sam(SAM).state_dict() if state is None else state, path)
    return path


def make_imagebind(path: Path, state: dict | None = None) -> Path:
    """An ImageBind checkpoint as imagebind_huge.pth: every modality's weights in one state dict."""
    torch.manual_seed(0)
    full = {**AudioEncoder(AUDIO).state_dict(), "modality_trunks.vision.blocks.0.attn.in_proj_weight": torch.zeros(6, 2),
            "modality_heads.text.proj.0.weight": torch.zeros(2, 2)}
    torch.save(full if state is None else state, path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One good file or folder per format."""
    root = tmp_path_factory.mktemp("real_formats")
    return {"llava": make_llava(root / "LLaVA-Lightning-7B-v1-1"), "clip": make_clip(root / "clip-vit-large-patch14"),
            "sam": make_sam(root / "sam_vit_h_4b8939.pth"), "imagebind": make_imagebind(root / "imagebind_huge.pth")}


def paper_like_config(files):
    """The micro preset pointed at the four real-format files (the paper preset's layout at reduced sizes)."""
    config = preset("micro")
    config.vision = replace(config.vision, pretrained_path=str(files["clip"]), projector_path=str(files["llava"]),
                            select_layer=-2)
    config.llm = replace(config.llm, pretrained_path=str(files["llava"]))
    config.sam = replace(SAM, checkpoint=str(files["sam"]))
    config.audio = replace(AUDIO, checkpoint=str(files["imagebind"]))
    return config


def test_the_whole_model_loads_from_the_four_formats(files):
    model = AnyRefModel(paper_like_config(files))
    llava = _llava_state()
    llama = model.llama
    assert torch.equal(llama.model.layers[1].mlp.up_proj.weight, llava["model.layers.1.mlp.up_proj.weight"])
    assert torch.equal(llama.model.norm.weight, llava["model.norm.weight"])
    assert torch.equal(model.vision.projector.weight, llava["model.mm_projector.weight"].to(torch.float32))
    clip, _ = _clip_state_and_config()
    q_proj = model.vision.clip.encoder.layers[1].self_attn.q_proj.weight
    assert torch.equal(q_proj, clip["vision_model.encoder.layers.1.self_attn.q_proj.weight"])
    torch.manual_seed(0)
    sam = build_sam(SAM).state_dict()
    assert all(torch.equal(model.sam.state_dict()[k], v) for k, v in sam.items())
    torch.manual_seed(0)
    audio = AudioEncoder(AUDIO).state_dict()
    assert all(torch.equal(model.audio.state_dict()[k], v) for k, v in audio.items())


def test_project_sam_builder_matches_segment_anythings_vit_h():
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        theirs = sam_model_registry["vit_h"]().state_dict()
        ours = build_sam(preset("paper").sam).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


def _broken(tmp_path, kind, edit):
    """A copy of a good file with `edit` applied to its state dict."""
    if kind == "llava":
        state = _llava_state()
        edit(state)
        return make_llava(tmp_path / "llava", state)
    if kind == "clip":
        state, _ = _clip_state_and_config()
        edit(state)
        return make_clip(tmp_path / "clip", state)
    if kind == "sam":
        torch.manual_seed(0)
        state = build_sam(SAM).state_dict()
        edit(state)
        return make_sam(tmp_path / "sam_vit_h_4b8939.pth", state)
    torch.manual_seed(0)
    state = dict(AudioEncoder(AUDIO).state_dict())
    edit(state)
    return make_imagebind(tmp_path / "imagebind_huge.pth", state)


def _load(kind, path, files):
    """Build the part that reads `path` as the model would."""
    from anyref.llm import build_llama
    from anyref.vision import VisionTower

    config = paper_like_config({**files, kind: path})
    if kind == "llava":
        build_llama(config.llm, vocab_size=LLM["vocab_size"], pad_token_id=0, eos_token_id=1, bos_token_id=2)
        VisionTower(config.vision, llm_hidden_size=LLM["hidden_size"])
    elif kind == "clip":
        VisionTower(config.vision, llm_hidden_size=LLM["hidden_size"])
    elif kind == "sam":
        build_sam(config.sam)
    else:
        AudioEncoder(config.audio)


def _drop(key):
    return lambda state: state.pop(key)


def _set(key, value):
    return lambda state: state.__setitem__(key, value)


BROKEN = [  # (id, format, edit, phrases the error must contain)
    ("llava-missing-norm", "llava", _drop("model.norm.weight"), ["missing keys", "model.norm.weight"]),
    ("llava-wrong-shape", "llava", _set("model.layers.0.mlp.up_proj.weight", torch.zeros(65, 32)),
     ["wrong shapes", "model.layers.0.mlp.up_proj.weight", "pytorch_model-0000"]),
    ("llava-unexpected", "llava", _set("model.layers.0.self_attn.extra.weight", torch.zeros(2)),
     ["unexpected keys", "model.layers.0.self_attn.extra.weight in pytorch_model-0000"]),
    ("llava-1.5-projector", "llava",
     lambda s: s.update({"model.mm_projector.0.weight": s.pop("model.mm_projector.weight")}), ["mlp2x_gelu"]),
    ("llava-no-projector", "llava",
     lambda s: [s.pop(k) for k in ("model.mm_projector.weight", "model.mm_projector.bias")], ["no model.mm_projector"]),
    ("clip-missing", "clip", _drop("vision_model.post_layernorm.weight"),
     ["CLIP folder", "missing keys", "vision_model.post_layernorm.weight"]),
    ("clip-wrong-shape", "clip", _set("vision_model.embeddings.position_embedding.weight", torch.zeros(5, 24)),
     ["wrong shapes", "vision_model.embeddings.position_embedding.weight", "pytorch_model.bin"]),
    ("sam-wrong-shape", "sam", _set("mask_decoder.iou_token.weight", torch.zeros(2, 32)),
     ["SAM checkpoint", "sam_vit_h_4b8939.pth", "mask_decoder.iou_token.weight (2, 32)"]),
    ("sam-missing", "sam", _drop("image_encoder.blocks.1.attn.rel_pos_h"),
     ["missing keys", "image_encoder.blocks.1.attn.rel_pos_h"]),
    ("sam-unexpected", "sam", _set("image_encoder.blocks.9.attn.qkv.weight", torch.zeros(2)),
     ["unexpected keys", "image_encoder.blocks.9.attn.qkv.weight"]),
    ("sam-not-a-tensor", "sam", _set("image_encoder.pos_embed", [1, 2, 3]),
     ["not tensors", "image_encoder.pos_embed"]),
    ("imagebind-wrong-shape", "imagebind", _set("modality_heads.audio.2.weight", torch.zeros(8, 16)),
     ["imagebind_huge.pth", "modality_heads.audio.2.weight (8, 16)"]),
    ("imagebind-missing", "imagebind", _drop("modality_trunks.audio.blocks.0.attn.bias_k"),
     ["missing keys", "modality_trunks.audio.blocks.0.attn.bias_k"]),
]


@pytest.mark.parametrize("name, kind, edit, phrases", BROKEN, ids=[case[0] for case in BROKEN])
def test_broken_checkpoint_is_refused_with_its_file_and_keys(tmp_path, files, name, kind, edit, phrases):
    path = _broken(tmp_path, kind, edit)
    with pytest.raises(AnyRefCheckpointError) as error:
        _load(kind, path, files)
    assert path.name in str(error.value)
    for phrase in phrases:
        assert phrase in str(error.value)


@pytest.mark.parametrize("kind", ["llava", "clip", "sam", "imagebind"])
def test_a_pickle_payload_never_runs(tmp_path, files, kind):
    mark = tmp_path / PAYLOAD_MARK
    path = _broken(tmp_path, kind, _set("payload", _Payload(mark)))
    with pytest.raises(AnyRefCheckpointError, match="nothing in it ran"):
        _load(kind, path, files)
    assert not mark.exists()


def test_damaged_and_incomplete_files_name_themselves(tmp_path, files):
    sam = tmp_path / "sam_vit_h_4b8939.pth"
    sam.write_bytes(files["sam"].read_bytes()[:1000])  # a download cut short
    with pytest.raises(AnyRefCheckpointError, match="sam_vit_h_4b8939.pth"):
        _load("sam", sam, files)
    llava = shutil.copytree(files["llava"], tmp_path / "llava")
    (llava / "pytorch_model-00002-of-00002.bin").unlink()
    with pytest.raises(AnyRefCheckpointError, match="pytorch_model-00002-of-00002.bin"):
        _load("llava", llava, files)
    (llava / "pytorch_model.bin.index.json").write_text("{not json")
    with pytest.raises(AnyRefCheckpointError, match="not a shard index"):
        _load("llava", llava, files)
    empty = tmp_path / "clip-empty"
    empty.mkdir()
    (empty / "config.json").write_text((files["clip"] / "config.json").read_text())
    with pytest.raises(AnyRefCheckpointError, match="holds none of"):
        _load("clip", empty, files)
