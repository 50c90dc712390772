"""Training: seeds fix the losses, and resuming from a checkpoint continues exactly like an uninterrupted run."""
import pytest
import torch

from anyref import AnyRefModel, preset
from anyref.train import TrainConfig, train


def _run(steps, *, seed=3):
    torch.manual_seed(seed)
    model = AnyRefModel(preset("micro"))
    config = TrainConfig(steps=steps, batch_size=2, image_size=64, lr=1e-3, warmup_steps=2, seed=seed)
    return model, train(model, config, progress=False)


def test_same_seed_gives_identical_losses():
    _, first = _run(6)
    _, second = _run(6)
    assert first.losses == second.losses
    assert len(first.losses) == 6 and first.losses[0] != first.losses[-1]


def test_resume_continues_like_an_uninterrupted_run(tmp_path):
    _, full = _run(6)
    torch.manual_seed(3)
    model = AnyRefModel(preset("micro"))
    config = TrainConfig(steps=6, batch_size=2, image_size=64, lr=1e-3, warmup_steps=2, seed=3, checkpoint_every=3,
                         time_budget_s=0.0)  # stop (and checkpoint) after the first step, as if interrupted
    partial = train(model, config, run_dir=tmp_path, progress=False)
    assert partial.steps == 1
    torch.manual_seed(3)  # a fresh process rebuilds the same frozen weights from the same seed ...
    fresh = AnyRefModel(preset("micro"))
    torch.manual_seed(123)  # ... but its RNG state differs: the checkpoint must restore it
    config.time_budget_s = None
    resumed = train(fresh, config, run_dir=tmp_path, resume=True, progress=False)
    assert resumed.losses == full.losses


def test_existing_checkpoint_is_not_overwritten(tmp_path):
    torch.manual_seed(0)
    model = AnyRefModel(preset("micro"))
    config = TrainConfig(steps=1, batch_size=2, image_size=64, warmup_steps=1, checkpoint_every=1)
    train(model, config, run_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        train(model, config, run_dir=tmp_path, progress=False)
    other = TrainConfig(steps=1, batch_size=4, image_size=64, warmup_steps=1, checkpoint_every=1)
    with pytest.raises(ValueError, match="other settings"):
        train(model, other, run_dir=tmp_path, resume=True, progress=False)
    torch.manual_seed(1)
    different_init = AnyRefModel(preset("micro"))
    with pytest.raises(ValueError, match="frozen weights"):
        train(different_init, config, run_dir=tmp_path, resume=True, progress=False)


def test_train_runs_step_loss_on_batch_at():
    """train() is the engine stepping `step_loss(model, batch_at(step))`: its first loss is that function's value."""
    from anyref.train import batch_at, step_loss

    model, result = _run(1)
    torch.manual_seed(3)
    fresh = AnyRefModel(preset("micro")).train()
    config = TrainConfig(steps=1, batch_size=2, image_size=64, seed=3)
    torch.manual_seed(3)  # train() seeds every RNG with config.seed before its first step
    out = step_loss(fresh, batch_at(0, fresh, config))
    assert set(out) == {"loss", "ce", "bce", "dice"} and float(out["loss"].detach()) == result.losses[0]
    assert result.parts[0] == {k: round(float(out[k].detach()), 5) for k in ("ce", "bce", "dice")}
    assert not model.training  # train() leaves the model in eval mode
