"""The lab's snapshot loader reads the trainer's own checkpoints, and refuses foreign ones."""
import shutil

import pytest
import torch

from anyref import AnyRefModel, preset
from anyref.train import TrainConfig, train
from lab import load_snapshot, snapshots


def test_load_snapshot_restores_a_kept_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = AnyRefModel(preset("micro"))
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    train(model, TrainConfig(steps=2, lr=1e-2, warmup_steps=1, checkpoint_every=2, batch_size=2,
                             image_size=64), run_dir=tmp_path / "run")
    kept = tmp_path / "kept"
    kept.mkdir()
    shutil.copytree(tmp_path / "run" / "checkpoint" / "step-000002", kept / "step-000002")
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert any(not torch.equal(before[n], trained[n]) for n in before)
    with torch.no_grad():  # put the starting weights back, then load the kept step
        for name, param in model.named_parameters():
            if name in before:
                param.copy_(before[name])
    (kept / "step-000004.partial").mkdir()  # a copy taken while the trainer was writing: not a checkpoint
    assert [folder.name for folder in snapshots(kept)] == ["step-000002"]
    assert load_snapshot(model, kept / "step-000002") == 2
    assert all(torch.equal(param, trained[name]) for name, param in model.named_parameters() if name in trained)


def test_snapshots_says_when_a_folder_has_none(tmp_path):
    with pytest.raises(FileNotFoundError, match="no step-NNNNNN"):
        snapshots(tmp_path)
