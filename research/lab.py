"""Where the lab keeps its results (research/results, and research/results/attempts for attempts that led nowhere),
and how its curves load a long run's kept checkpoints."""
from pathlib import Path

import torch
from safetensors.torch import load

from anyref.checkpoint import STEP_NAME, WEIGHTS, read_verified

RESULTS = Path(__file__).resolve().parent / "results"
ATTEMPTS = RESULTS / "attempts"


def snapshots(folder: Path) -> list[Path]:
    """The step-NNNNNN checkpoint copies in a folder, in step order (the trainer's half-written or half-deleted
    step-NNNNNN.partial / .deleting folders left out); an error naming the folder when there are none."""
    found = sorted((path for path in Path(folder).glob("step-*") if STEP_NAME.fullmatch(path.name)),
                   key=lambda path: int(STEP_NAME.fullmatch(path.name).group(1)))
    if not found:
        raise FileNotFoundError(f"no step-NNNNNN checkpoint folders in {folder}; keep a run's checkpoints aside while "
                                "it trains (the trainer keeps only its last two)")
    return found


def load_snapshot(model: torch.nn.Module, folder: Path) -> int:
    """Copy a checkpoint's trainable weights (verified against its manifest) into a model of the same configuration;
    returns the checkpoint's step."""
    weights = load(read_verified(Path(folder))[WEIGHTS])
    params = dict(model.named_parameters())
    unknown = sorted(set(weights) - set(params))
    if unknown:
        raise KeyError(f"{folder} holds weights the model lacks ({unknown[:3]}...); was it saved by another "
                       "configuration?")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    return int(STEP_NAME.fullmatch(Path(folder).name).group(1))
