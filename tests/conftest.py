"""Shared fixtures: a seeded micro model (seconds to build) and a few ShapeScenes samples."""
import pytest
import torch

from anyref import AnyRefModel, preset
from anyref.data import training_sample


@pytest.fixture(scope="session")
def micro_model():
    """A micro AnyRef with the paper's freezing and LoRA, in eval mode."""
    torch.manual_seed(0)
    return AnyRefModel(preset("micro")).eval()


@pytest.fixture(scope="session")
def samples():
    """Four deterministic 64 px text-referring samples."""
    return [training_sample(i, seed=0, image_size=64) for i in range(4)]


def _force(tokens):
    """A logits processor that makes greedy decoding emit a scripted answer (token ids, ending with eos)."""
    def force(step, logits):
        forced = torch.full_like(logits, -1e9)
        forced[..., tokens[min(step, len(tokens) - 1)]] = 0
        return forced
    return force


@pytest.fixture
def forcer():
    """Build scripted-decoding logits processors: forcer(token_ids)."""
    return _force
