"""DeepSpeed ZeRO-2 on CPU (gloo): one process equals the plain loop, two processes equal the plain loop's
micro-batch average, a killed run resumes to the uninterrupted losses, and the ZeRO checkpoint exports to a folder
that predicts the same masks. The recipe configs are checked as data."""
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from anyref import AnyRefModel, preset
from anyref.deepspeed_engine import (CHECKPOINT_DIR, RESULT_FILE, averaged_step_loss, export, main, read_config,
                                     recipe, verify_checkpoint)
from anyref.engine import Recipe, run
from anyref.errors import AnyRefCheckpointError, AnyRefConfigError
from anyref.paths import REPO_ROOT
from anyref.train import TrainConfig, batch_at, train

STEPS, BATCH, SEED, IMAGE = 10, 4, 0, 64
CONFIGS = REPO_ROOT / "configs" / "deepspeed"
KILL_AFTER = 5  # the killed run checkpoints at steps 2 and 4, then dies after step 5


def ds_config(tmp, *, micro: int, name: str) -> Path:
    """The CPU twin, shortened to STEPS steps with a global batch of BATCH."""
    config = json.loads((CONFIGS / "cpu_zero2.json").read_text())
    config["train_micro_batch_size_per_gpu"] = micro
    config["scheduler"]["params"].update(total_num_steps=STEPS, warmup_num_steps=3)
    path = tmp / name
    path.write_text(json.dumps(config))
    return path


def train_config(**changes) -> TrainConfig:
    """What `anyref train --preset micro --image-size 64 --checkpoint-every 2` gives the DeepSpeed trainer."""
    config = TrainConfig(steps=STEPS, batch_size=BATCH, lr=1e-3, warmup_steps=3, seed=SEED, image_size=IMAGE,
                         checkpoint_every=2)
    return replace(config, **changes)


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "PYTHONUNBUFFERED": "1"}


def _free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


# A training script for runs the CLI cannot express: two processes without LoRA dropout (each process draws its own
# dropout masks, which no single process reproduces), and a run that kills itself.
SCRIPT = """
import json, os, signal, sys, torch
from dataclasses import replace
from anyref import AnyRefModel, preset
from anyref.deepspeed_engine import train_deepspeed
from anyref.train import TrainConfig
config_path, run_dir, dropout, kill_after, resume = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), \
    sys.argv[5] == "resume"
model_config = preset("micro", **json.loads(sys.argv[6]))
model_config.llm = replace(model_config.llm, lora_dropout=dropout)
torch.manual_seed({seed})
model = AnyRefModel(model_config)
def die(steps, result):
    if steps == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)
train_deepspeed(model, config_path, TrainConfig(image_size={image}, seed={seed}, checkpoint_every=2),
                run_dir=run_dir, resume=resume, progress=False, callback=die)
""".format(seed=SEED, image=IMAGE)


def run_script(tmp, config: Path, run_dir: Path, *, processes=1, dropout=0.05, kill_after=0, resume=False,
               changes=None):
    script = tmp / "train_ds.py"
    script.write_text(SCRIPT)
    args = [str(config), str(run_dir), str(dropout), str(kill_after), "resume" if resume else "fresh",
            json.dumps(changes or {})]
    launcher = ([str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", str(processes),
                 "--master_port", _free_port()] if processes > 1 else [sys.executable])
    return subprocess.run([*launcher, str(script), *args], cwd=REPO_ROOT, env=_env(), capture_output=True,
                          text=True, timeout=900)


def losses_of(run_dir: Path) -> list[float]:
    return json.loads((run_dir / CHECKPOINT_DIR / RESULT_FILE).read_text())["losses"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """`anyref train --deepspeed` in one process, no launcher: the uninterrupted run."""
    tmp = tmp_path_factory.mktemp("ds_cli")
    config = ds_config(tmp, micro=BATCH, name="one_process.json")
    args = ["-m", "anyref.cli", "train", "--preset", "micro", "--image-size", str(IMAGE), "--seed", str(SEED),
            "--checkpoint-every", "2", "--deepspeed", str(config), "--run-dir", str(tmp / "run"),
            "--out", str(tmp / "model")]
    done = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=_env(), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "through DeepSpeed on 1 process" in done.stdout
    return {"tmp": tmp, "config": config, "run": tmp / "run", "model": tmp / "model"}


def test_one_process_zero2_equals_the_plain_loop(cli_run):
    torch.manual_seed(SEED)
    plain = train(AnyRefModel(preset("micro")), train_config(), progress=False)
    deepspeed = losses_of(cli_run["run"])
    assert len(deepspeed) == STEPS
    assert max(abs(a - b) for a, b in zip(plain.losses, deepspeed)) < 1e-5
    assert deepspeed[-1] < deepspeed[0]


def test_two_processes_equal_the_plain_loops_micro_batch_average(tmp_path):
    config = ds_config(tmp_path, micro=BATCH // 2, name="two_processes.json")
    done = run_script(tmp_path, config, tmp_path / "run", processes=2, dropout=0.0)
    assert done.returncode == 0, done.stderr[-3000:]
    deepspeed = json.loads((tmp_path / "run" / CHECKPOINT_DIR / RESULT_FILE).read_text())
    assert deepspeed["world_size"] == 2 and len(deepspeed["losses"]) == STEPS
    model_config = preset("micro")
    model_config.llm = replace(model_config.llm, lora_dropout=0.0)
    torch.manual_seed(SEED)
    model = AnyRefModel(model_config).train()
    config = train_config()
    plain = run(lambda step: averaged_step_loss(model, config, step, micro=BATCH // 2), model,
                Recipe(steps=STEPS, lr=config.lr, seed=SEED, warmup_steps=config.warmup_steps), settings={},
                progress=False)
    assert max(abs(a - b) for a, b in zip(plain.losses, deepspeed["losses"])) < 1e-4


def test_a_model_with_the_locator_and_a_learned_lambda_trains_like_the_plain_loop(cli_run, tmp_path):
    """The locator's parameters and a trained lambda_f (one-element tensors both) go through DeepSpeed's broadcast."""
    changes = {"locator": True, "refocus_learnable": True}
    done = run_script(tmp_path, cli_run["config"], tmp_path / "run", dropout=0.0, changes=changes)
    assert done.returncode == 0, done.stderr[-3000:]
    model_config = preset("micro", **changes)
    model_config.llm = replace(model_config.llm, lora_dropout=0.0)
    torch.manual_seed(SEED)
    plain = train(AnyRefModel(model_config), train_config(), progress=False)
    deepspeed = losses_of(tmp_path / "run")
    assert len(deepspeed) == STEPS and max(abs(a - b) for a, b in zip(plain.losses, deepspeed)) < 1e-5


def test_killed_run_resumes_to_the_uninterrupted_losses(cli_run, tmp_path):
    run_dir = tmp_path / "run"
    killed = run_script(tmp_path, cli_run["config"], run_dir, kill_after=KILL_AFTER)
    assert killed.returncode == -signal.SIGKILL
    assert (run_dir / CHECKPOINT_DIR / "latest").read_text().strip() == "global_step4"
    refused = run_script(tmp_path, cli_run["config"], run_dir)  # no resume flag: refuses to overwrite
    assert refused.returncode != 0 and "already holds a DeepSpeed checkpoint" in refused.stderr
    resumed = run_script(tmp_path, cli_run["config"], run_dir, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert losses_of(run_dir) == losses_of(cli_run["run"])


def test_bf16_weights_train_like_fp32(cli_run, tmp_path):
    config = json.loads(cli_run["config"].read_text())
    config["bf16"] = {"enabled": True}  # weights cast to 16 bits, as fp16 does on V100s (fp16 is refused on CPU)
    path = tmp_path / "bf16.json"
    path.write_text(json.dumps(config))
    done = run_script(tmp_path, path, tmp_path / "run")
    assert done.returncode == 0, done.stderr[-3000:]
    half, full = losses_of(tmp_path / "run"), losses_of(cli_run["run"])
    assert half != full and max(abs(a - b) for a, b in zip(half, full)) < 0.02


def test_export_loads_and_predicts_the_in_memory_models_masks(cli_run):
    out = cli_run["tmp"] / "exported"
    assert main(["export", str(cli_run["run"]), str(out)]) == 0
    exported = AnyRefModel.from_pretrained(out).eval()
    in_memory = AnyRefModel.from_pretrained(cli_run["model"]).eval()
    trained = {n for n, p in in_memory.named_parameters() if p.requires_grad}
    theirs = dict(in_memory.named_parameters())
    assert all(torch.equal(p, theirs[n]) for n, p in exported.named_parameters() if n in trained)
    batch = batch_at(STEPS, in_memory, train_config())  # samples neither model trained on
    with torch.no_grad():
        ours, reference = exported(batch)["mask_logits"], in_memory(batch)["mask_logits"]
    assert ours.shape[0] == BATCH and torch.equal(ours, reference)


def test_export_and_resume_refuse_a_planted_pickle(cli_run, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(cli_run["run"], run_dir)
    folder = run_dir / CHECKPOINT_DIR
    tag = (folder / "latest").read_text().strip()

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'ran'}",)
    torch.save({"module": Payload()}, folder / tag / "mp_rank_00_model_states.pt")
    with pytest.raises(AnyRefCheckpointError, match="nothing in it ran"):
        verify_checkpoint(folder, tag)
    (folder / "latest").write_text("../../elsewhere")
    with pytest.raises(AnyRefCheckpointError, match="not a checkpoint"):
        export(run_dir, tmp_path / "out")
    assert not (tmp_path / "ran").exists()


def test_the_papers_recipe_reads_as_the_paper_says():
    config = read_config(CONFIGS / "paper_v100_zero2.json")
    paper = recipe(config, TrainConfig(), world=8)
    assert (paper.batch_size, paper.lr, paper.weight_decay, paper.warmup_steps, paper.steps, paper.grad_clip) == \
        (6 * 8 * 8, 5e-5, 0.01, 200, 10_000, 1.0)
    assert config["fp16"]["enabled"] and config["zero_optimization"]["stage"] == 2
    assert config["gradient_accumulation_steps"] == 8 and config["train_micro_batch_size_per_gpu"] == 6
    with pytest.raises(AnyRefConfigError, match="launch 8 processes"):
        recipe(config, TrainConfig(), world=4)
    twin = read_config(CONFIGS / "cpu_zero2.json")
    assert not twin["fp16"]["enabled"] and twin["zero_optimization"]["stage"] == 2
    assert recipe(twin, TrainConfig(), world=2).batch_size == 2 * recipe(twin, TrainConfig(), world=1).batch_size


@pytest.mark.parametrize("change, phrase", [
    (lambda c: c["optimizer"].update(type="Adam"), "optimizer type 'Adam' is not supported"),
    (lambda c: c["scheduler"].update(type="WarmupDecayLR"), "use WarmupCosineLR"),
    (lambda c: c["scheduler"]["params"].update(warmup_type="log"), "warmup_type=linear"),
    (lambda c: c["optimizer"]["params"].update(betas=[0.9, 0.95]), "betas=[0.9, 0.999]"),
    (lambda c: c["zero_optimization"].update(stage=3), "stage 3"),
    (lambda c: c.pop("scheduler"), "lacks ['scheduler']"),
])
def test_unsupported_configs_are_refused(tmp_path, change, phrase):
    config = json.loads((CONFIGS / "cpu_zero2.json").read_text())
    change(config)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(AnyRefConfigError) as error:
        recipe(read_config(path), TrainConfig(), world=1, path=path)
    assert phrase in str(error.value)
    path.write_text("{not json")
    with pytest.raises(AnyRefConfigError, match="cannot be read as JSON"):
        read_config(path)
