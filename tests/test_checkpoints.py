"""Checkpoints: a kill between any two file operations, a damaged file or a hostile pickle never resumes wrongly."""
import pickle

import numpy as np
import pytest
import torch

from anyref import checkpoint
from anyref.errors import AnyRefCheckpointError
from anyref.pretrain.loop import run_loop

SETTINGS = dict(steps=8, lr=1e-2, seed=0, warmup_steps=2, progress=False, checkpoint_every=2)


@pytest.fixture(autouse=True)
def _no_fsync(monkeypatch):
    """Flushing to disk is for power cuts; these tests kill the writer in-process, where it only costs time."""
    monkeypatch.setattr(checkpoint.os, "fsync", lambda fd: None)


class _Kill(Exception):
    """Stands in for the process dying."""


def _module():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3))


def _run(run_dir, **extra):
    """A run whose losses depend on torch's RNG (dropout): resuming must restore it, the weights and AdamW."""
    module = _module()

    def loss_at(step):
        x = torch.from_numpy(np.random.default_rng(step).normal(size=(8, 4)).astype(np.float32))
        return torch.nn.functional.dropout(module(x), p=0.3, training=True).pow(2).mean()
    result = run_loop(loss_at, module, run_dir=run_dir, **{**SETTINGS, **extra})
    return result, module


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The losses and weights of a run that nothing interrupts, and the file operations its checkpoints make."""
    made = []
    real = checkpoint._file_op

    def count(action, *args, **kwargs):
        made.append(action)
        return real(action, *args, **kwargs)
    checkpoint._file_op = count
    try:
        result, module = _run(tmp_path_factory.mktemp("whole"))
    finally:
        checkpoint._file_op = real
    return result.losses, module.state_dict(), made


def _kill_at(monkeypatch, index: int, *, torn: bool):
    """Make file operation number `index` kill the run: before it runs, or (`torn`) half way through a write."""
    real, done = checkpoint._file_op, []

    def op(action, *args, **kwargs):
        if len(done) == index:
            if torn:
                path, data = args
                real(action, path, data[:len(data) // 2])
            raise _Kill(index)
        done.append(action)
        return real(action, *args, **kwargs)
    monkeypatch.setattr(checkpoint, "_file_op", op)


def _same_state(module, expected):
    return all(torch.equal(value, expected[name]) for name, value in module.state_dict().items())


def test_a_kill_between_any_two_file_operations_resumes_exactly(uninterrupted, tmp_path, monkeypatch):
    losses, weights, operations = uninterrupted
    assert len(operations) >= 4 * 9  # 4 checkpoints of 9 file operations each, and the pruning
    kills = [(index, False) for index in range(len(operations))]
    kills += [(index, True) for index, action in enumerate(operations) if action is checkpoint._write]
    for index, torn in kills:
        run_dir = tmp_path / f"kill-{index}-{torn}"
        with monkeypatch.context() as patch:
            _kill_at(patch, index, torn=torn)
            with pytest.raises(_Kill):
                _run(run_dir)
        resumed, module = _run(run_dir, resume=True)
        assert resumed.losses == losses, (index, torn, operations[index])
        assert _same_state(module, weights), (index, torn)


def test_two_kills_in_a_row_still_resume_exactly(uninterrupted, tmp_path, monkeypatch):
    losses, _, operations = uninterrupted
    for first, second in [(5, 3), (13, 9), (20, 20), (30, 1)]:
        run_dir = tmp_path / f"kills-{first}-{second}"
        for index, resume in ((first, False), (second, True)):
            with monkeypatch.context() as patch:
                _kill_at(patch, index, torn=False)
                with pytest.raises(_Kill):
                    _run(run_dir, resume=resume)
        assert _run(run_dir, resume=True)[0].losses == losses


def test_only_the_two_newest_checkpoints_are_kept(tmp_path):
    _run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-000006", "step-000008"]
    assert (tmp_path / "latest").read_text().strip() == "step-000008"
    assert sorted(p.name for p in (tmp_path / "step-000008").iterdir()) == sorted(
        [checkpoint.MANIFEST, checkpoint.WEIGHTS, checkpoint.TENSORS, checkpoint.STATE])


def test_leftovers_of_earlier_kills_are_cleared(uninterrupted, tmp_path):
    import shutil

    def stop_at_five(step, result):
        if step == 5:
            raise _Kill(step)
    with pytest.raises(_Kill):
        _run(tmp_path, callback=stop_at_five)
    shutil.copytree(tmp_path / "step-000002", tmp_path / "step-000002.deleting")  # a prune killed half way
    shutil.copytree(tmp_path / "step-000004", tmp_path / "step-000008")  # complete, but not what `latest` names
    (tmp_path / "step-000006.partial").mkdir()  # a write killed half way
    assert _run(tmp_path, resume=True)[0].losses == uninterrupted[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-000006", "step-000008"]


def _damage(path, how):
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[:len(data) // 2])
    elif how == "flip":
        path.write_bytes(data[:-3] + bytes([data[-3] ^ 1]) + data[-2:])
    else:
        path.unlink()


@pytest.mark.parametrize("name", [checkpoint.WEIGHTS, checkpoint.TENSORS, checkpoint.STATE, checkpoint.MANIFEST])
@pytest.mark.parametrize("how", ["truncate", "flip", "delete"])
def test_a_damaged_checkpoint_falls_back_to_the_previous_one_and_says_so(uninterrupted, tmp_path, capsys, name, how):
    _run(tmp_path)
    _damage(tmp_path / "step-000008" / name, how)
    resumed, _ = _run(tmp_path, resume=True)
    assert resumed.losses == uninterrupted[0]
    warning = capsys.readouterr().err
    assert "step-000008" in warning and name in warning and "step-000006" in warning


def test_a_checkpoint_mixed_from_two_steps_is_refused(tmp_path):
    _run(tmp_path)
    (tmp_path / "step-000006" / checkpoint.MANIFEST).unlink()  # no older complete checkpoint to fall back to
    newest = tmp_path / "step-000008"
    for name in (checkpoint.WEIGHTS, checkpoint.TENSORS, checkpoint.STATE):  # the torn state the issue found
        own = (newest / name).read_bytes()
        (newest / name).write_bytes((tmp_path / "step-000006" / name).read_bytes())
        with pytest.raises(AnyRefCheckpointError, match=f"{name}.*sha256.*start a new run folder"):
            _run(tmp_path, resume=True)
        (newest / name).write_bytes(own)
    assert _run(tmp_path, resume=True)[0].steps == 8


def test_a_pointer_to_nowhere_or_outside_falls_back_and_says_so(tmp_path, capsys):
    _run(tmp_path, steps=2)
    for text in ("step-000004", "../../etc", ""):
        (tmp_path / "latest").write_text(text)
        assert _run(tmp_path, resume=True, steps=2)[0].steps == 2
        assert "latest" in capsys.readouterr().err or text == "step-000004"


def test_settings_of_another_run_are_not_a_fallback(tmp_path):
    _run(tmp_path)
    with pytest.raises(AnyRefCheckpointError, match="other settings"):
        _run(tmp_path, resume=True, lr=2e-2)


class _Bomb:
    """Unpickling this creates `marker`: what a hostile file could do instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(path, marker, *, raw=False):
    """A pickle at `path` whose loading creates `marker`: a bare pickle (`raw`) or torch.save's zip archive."""
    if raw:
        path.write_bytes(pickle.dumps({"state": _Bomb(marker)}))
    else:
        torch.save({"state": _Bomb(marker)}, path)
    assert pickle.loads(pickle.dumps(_Bomb(marker))) and marker.exists()  # the bomb works when unpickled ...
    marker.unlink()  # ... so its marker shows whether loading unpickled it


def test_an_old_pickled_trainer_state_is_never_unpickled(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    _plant(folder / checkpoint.LEGACY_STATE, tmp_path / "ran")
    for resume in (True, False):
        with pytest.raises(AnyRefCheckpointError, match=f"{checkpoint.LEGACY_STATE}.*new run folder"):
            _run(folder, resume=resume)
    assert not (tmp_path / "ran").exists()


PLANTED = [(checkpoint.WEIGHTS, False), (checkpoint.TENSORS, False), (checkpoint.STATE, False),
           (checkpoint.MANIFEST, False), (checkpoint.WEIGHTS, True), (checkpoint.TENSORS, True), (checkpoint.STATE, True)]


@pytest.mark.parametrize("name, consistent", PLANTED)
def test_a_pickle_planted_in_a_checkpoint_never_runs(tmp_path, name, consistent):
    """A file of the only checkpoint replaced by a pickle (`consistent`: and the manifest made to match it)."""
    import hashlib
    import json

    _run(tmp_path / "run", steps=2)
    folder = tmp_path / "run" / "step-000002"
    _plant(folder / name, tmp_path / "ran")
    if consistent:
        manifest = json.loads((folder / checkpoint.MANIFEST).read_text())
        data = (folder / name).read_bytes()
        manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        (folder / checkpoint.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(AnyRefCheckpointError, match=f"step-000002/{name}"):
        _run(tmp_path / "run", resume=True, steps=2)
    assert not (tmp_path / "ran").exists()


def test_a_pickle_planted_as_the_pointer_never_runs(tmp_path, capsys):
    _run(tmp_path / "run", steps=2)
    _plant(tmp_path / "run" / checkpoint.LATEST, tmp_path / "ran")
    assert _run(tmp_path / "run", resume=True, steps=2)[0].steps == 2  # the one complete checkpoint, said on stderr
    assert "latest" in capsys.readouterr().err and not (tmp_path / "ran").exists()


def _tiny_llm_folder(folder):
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(folder)


def _tiny_clip_folder(folder):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    CLIPVisionModel(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     image_size=32, patch_size=8)).save_pretrained(folder)


def _model_folder(folder):
    from anyref import AnyRefModel, preset

    torch.manual_seed(0)
    AnyRefModel(preset("micro")).save_pretrained(folder)


def _ingredient_folder(folder):
    from anyref.weights import save_ingredient

    save_ingredient(torch.nn.Linear(2, 2), {"in": 2}, folder)


def _load_model(folder):
    from anyref import AnyRefModel

    AnyRefModel.from_pretrained(folder)


def _load_ingredient(folder):
    from anyref.weights import load_weights

    load_weights(torch.nn.Linear(2, 2), folder)


def _load_llm(folder):
    from anyref.config import LLMConfig
    from anyref.llm import build_llama

    build_llama(LLMConfig(pretrained_path=str(folder)), vocab_size=32, pad_token_id=0, eos_token_id=1, bos_token_id=2)


def _load_clip(folder):
    from transformers import CLIPVisionModel

    from anyref.vision import load_clip_folder

    load_clip_folder(CLIPVisionModel, folder)


def _load_sam(path):
    from anyref.config import preset
    from anyref.sam import build_sam, load_sam_checkpoint

    load_sam_checkpoint(build_sam(preset("micro").sam), path)


def _load_imagebind(path):
    from anyref.audio import AudioEncoder, load_imagebind_audio
    from anyref.config import preset

    load_imagebind_audio(AudioEncoder(preset("micro").audio), path)


def _load_projector(path):
    from anyref.vision import load_projector

    load_projector(torch.nn.Linear(2, 2), path)


def _load_refs(path):
    from anyref.formats.safe_pickle import load_plain_pickle

    load_plain_pickle(path, "REFER refs file")


# what makes the folder, the file planted in it, what loads it (from the folder, or the file), what the error names
HOSTILE = {
    "model weights": (_model_folder, "model.safetensors", _load_model, "model.safetensors"),
    "model config": (_model_folder, "config.json", _load_model, "config.json"),
    "model tokenizer": (_model_folder, "tokenizer/tokenizer.json", _load_model, "tokenizer"),
    "model tokenizer config": (_model_folder, "tokenizer/tokenizer_config.json", _load_model, "tokenizer"),
    "ingredient weights": (_ingredient_folder, "model.safetensors", _load_ingredient, "model.safetensors"),
    "ingredient config": (_ingredient_folder, "config.json", _load_ingredient, "config.json"),
    "LLM weights": (_tiny_llm_folder, "model.safetensors", _load_llm, "model.safetensors"),
    "LLM .bin weights": (_tiny_llm_folder, "pytorch_model.bin", _load_llm, "pytorch_model.bin"),
    "CLIP weights": (_tiny_clip_folder, "model.safetensors", _load_clip, "model.safetensors"),
    "CLIP .bin weights": (_tiny_clip_folder, "pytorch_model.bin", _load_clip, "pytorch_model.bin"),
    "SAM .pth": (None, "sam.pth", _load_sam, "sam.pth"),
    "SAM .safetensors": (None, "sam.safetensors", _load_sam, "sam.safetensors"),
    "ImageBind .pth": (None, "imagebind.pth", _load_imagebind, "imagebind.pth"),
    "projector": (None, "projector.safetensors", _load_projector, "projector.safetensors"),
    "REFER refs pickle": (None, "refs(unc).p", _load_refs, "refs(unc).p"),
}


@pytest.mark.parametrize("raw", [False, True])
@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_pickle_planted_where_models_and_data_load_never_runs(tmp_path, case, raw):
    import re

    from anyref.errors import AnyRefError

    make, name, load, named = HOSTILE[case]
    folder = tmp_path / "folder"
    folder.mkdir()
    if make is not None:
        make(folder)
    if name.endswith(".bin"):
        (folder / "model.safetensors").unlink()  # the .bin is all the folder offers
    _plant(folder / name, tmp_path / "ran", raw=raw)
    with pytest.raises(AnyRefError, match=re.escape(named)):
        load(folder if make is not None else folder / name)
    assert not (tmp_path / "ran").exists()
