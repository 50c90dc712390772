"""The paper's real checkpoints from local folders, checked key by key before loading (nothing downloaded, no code run).

- LLaVA-7B (v1): a transformers Llama folder (config `model_type: llava`), `.bin` or `.safetensors` shards with an
  index, whose `model.mm_projector.*` keys are LLaVA's vision-language projection.
- CLIP ViT-L/14: a transformers CLIPModel (or CLIPVisionModel) folder; the text tower is not needed.
- SAM-H: `sam_vit_h_4b8939.pth`, a plain state dict (`image_encoder.*`, `prompt_encoder.*`, `mask_decoder.*`).
- ImageBind-H: `imagebind_huge.pth`, a plain state dict of every modality; only `modality_*.audio.*` is read.

Every file is read with safetensors or `torch.load(weights_only=True)` (anyref.weights). A missing or unexpected
key, a wrong shape, a damaged file or a pickle that would run code is an AnyRefCheckpointError naming the file
and the keys.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from .errors import AnyRefCheckpointError
from .weights import read_safetensors, read_state_dict

SHOWN = 4  # keys named per kind of mismatch in an error
# Index first: a sharded folder also holds the shards' names in it. transformers prefers safetensors, and so do we.
WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
                "pytorch_model.bin")
LLAVA_PROJECTOR = "model.mm_projector."
# Keys of a LLaVA folder that are not the LLM's: the projector (read separately), rotary tables that old
# transformers saved as buffers, and the CLIP tower some LLaVA releases store inside.
LLAVA_EXTRAS = (r"^model\.mm_projector\.", r"\.rotary_emb\.inv_freq$", r"^model\.vision_tower\.")
# Keys of a CLIPModel folder that a CLIPVisionModel does not use: the text tower, the projections, the logit scale
# and the position-id buffers that older files saved.
CLIP_VISION_PREFIX = "vision_model."
CLIP_EXTRAS = (r"^text_model\.", r"^visual_projection\.", r"^text_projection\.", r"^logit_scale$", r"position_ids$")


def read_tensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} from a .safetensors or .pth/.bin file; anything else in it is an error naming the keys."""
    if not path.is_file():
        raise AnyRefCheckpointError(f"{what} {str(path)!r} does not exist; give the path of the local file")
    state = read_safetensors(path, what) if path.suffix == ".safetensors" else read_state_dict(path, what)
    odd = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if odd:
        raise AnyRefCheckpointError(f"{what} {str(path)!r} holds values that are not tensors at {odd[:SHOWN]}; "
                                    "it is not a plain state dict: replace it with the original file")
    return state


def weight_files(folder: Path, what: str) -> list[Path]:
    """The tensor files of a transformers folder: the shards its index names, or its single weights file."""
    name = next((n for n in WEIGHT_FILES if (folder / n).is_file()), None)
    if name is None:
        raise AnyRefCheckpointError(f"{what} {str(folder)!r} holds none of {list(WEIGHT_FILES)}; point it at the "
                                    "folder with the model's config.json and weights")
    if not name.endswith(".index.json"):
        return [folder / name]
    try:
        weight_map = json.loads((folder / name).read_text())["weight_map"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise AnyRefCheckpointError(f"{what} index {str(folder / name)!r} is not a shard index ({error!r}); "
                                    "restore the original file") from None
    shards = sorted({folder / shard for shard in weight_map.values()})
    absent = [p.name for p in shards if not p.is_file()]
    if absent:
        raise AnyRefCheckpointError(f"{what} index {str(folder / name)!r} names shards that are missing: {absent}; "
                                    "copy every shard into the folder")
    return shards


def read_folder(folder: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, Path]]:
    """Every tensor of a transformers folder, and the file each key came from."""
    tensors, origin = {}, {}
    for path in weight_files(folder, what):
        state = read_tensors(path, what)
        tensors.update(state)
        origin.update(dict.fromkeys(state, path))
    return tensors, origin


def check_keys(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], *, what: str, source: Path,
               origin: dict[str, Path] | None = None, ignore: tuple[str, ...] = ()) -> None:
    """Refuse `found` unless it has exactly the keys and shapes of `expected` (keys matching `ignore` aside)."""
    def where(key: str) -> str:
        return (origin or {}).get(key, source).name

    unexpected = [k for k in found if k not in expected and not any(re.search(p, k) for p in ignore)]
    missing = [k for k in expected if k not in found]
    resized = [f"{k} {tuple(found[k].shape)} in {where(k)}, model {tuple(v.shape)}" for k, v in expected.items()
               if k in found and found[k].shape != v.shape]
    problems = [f"{len(keys)} {kind}: {keys[:SHOWN]}" for kind, keys in
                (("missing keys", missing), ("unexpected keys", [f"{k} in {where(k)}" for k in unexpected]),
                 ("wrong shapes", resized)) if keys]
    if problems:
        raise AnyRefCheckpointError(f"{what} {str(source)!r} does not match the model ({'; '.join(problems)}); "
                                    "check that the file is the one this configuration expects")


def load_checked(module: torch.nn.Module, state: dict[str, torch.Tensor], *, what: str, source: Path,
                 ignore: tuple[str, ...] = ()) -> None:
    """Load `state` into `module` after `check_keys` (entries matching `ignore` are dropped)."""
    check_keys(module.state_dict(), state, what=what, source=source, ignore=ignore)
    module.load_state_dict({k: v for k, v in state.items() if not any(re.search(p, k) for p in ignore)})


def _meta_skeleton(model_class, config) -> dict[str, torch.Tensor]:
    """The state dict (shapes only) of `model_class(config)`, built on the meta device."""
    with torch.device("meta"):
        return model_class(config).state_dict()


def check_llama_folder(folder: Path) -> None:
    """Refuse a LLaMA / LLaVA folder whose weights do not match its config.json (before transformers loads it)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    expected = _meta_skeleton(LlamaForCausalLM, LlamaConfig.from_pretrained(str(folder)))
    found, origin = read_folder(folder, "LLM folder")
    check_keys(expected, found, what="LLM folder", source=folder, origin=origin, ignore=LLAVA_EXTRAS)


def check_clip_folder(folder: Path) -> None:
    """Refuse a CLIP folder whose vision tower does not match its config.json (before transformers loads it)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    expected = _meta_skeleton(CLIPVisionModel, CLIPVisionConfig.from_pretrained(str(folder)))
    found, origin = read_folder(folder, "CLIP folder")
    if not any(k.startswith(CLIP_VISION_PREFIX) for k in expected):  # transformers 5 names them without it
        expected = {CLIP_VISION_PREFIX + k: v for k, v in expected.items()}
    check_keys(expected, found, what="CLIP folder", source=folder, origin=origin, ignore=CLIP_EXTRAS)


def llava_projector_state(folder: Path) -> dict[str, torch.Tensor]:
    """LLaVA-v1's mm_projector (one Linear: `weight`, `bias`) from a LLaVA folder's shards."""
    found, origin = read_folder(folder, "LLaVA folder")
    state = {k[len(LLAVA_PROJECTOR):]: v for k, v in found.items() if k.startswith(LLAVA_PROJECTOR)}
    if not state:
        raise AnyRefCheckpointError(f"LLaVA folder {str(folder)!r} has no {LLAVA_PROJECTOR}* keys; it is a plain "
                                    "LLM folder: give the projector as a .safetensors file or a LLaVA folder")
    if set(state) != {"weight", "bias"}:
        raise AnyRefCheckpointError(f"LLaVA folder {str(folder)!r} has projector keys {sorted(state)}; this project "
                                    "uses LLaVA-v1's single linear projector (weight, bias), not LLaVA-1.5's "
                                    "mlp2x_gelu (0.*, 2.*): use a LLaVA-v1 / Lightning checkpoint")
    return state
