"""The grounding diagnosis: its learned stand-ins learn what they can, and report chance where there is nothing."""
import numpy as np
import pytest
import torch

from anyref.data.shapescenes import vocabulary
from diagnose import (attribute_probe, cell_code_ciou, cell_index, centre_features, frozen_features,
                      oracle_prompt_ciou, search_accuracy, text_prompt_ciou, word_codes)


def test_cell_index_finds_the_centroid_cell():
    mask = np.zeros((64, 64), bool)
    mask[40:48, 8:16] = True  # centroid (y 43.5, x 11.5) -> row 5, column 1 of an 8 x 8 grid
    assert cell_index(mask, grid=8) == 5 * 8 + 1
    with pytest.raises(ValueError, match="non-empty"):
        cell_index(np.zeros((8, 8), bool), grid=2)


def test_word_codes_pad_and_reject_unknown_words(samples):
    codes = word_codes(samples, length=10)
    assert codes.shape == (4, 10)
    first = samples[0].expression.split()
    assert codes[0, len(first):].eq(len(vocabulary())).all()

    class Odd:
        expression = "the purple unicorn"
    with pytest.raises(ValueError, match="unicorn"):
        word_codes([Odd()])


def _search_set(n, *, informative, generator):
    """Samples whose target cell's feature carries the first word's id (informative) or pure noise."""
    cells, words = torch.randint(0, 16, (n,), generator=generator), torch.randint(0, 5, (n,), generator=generator)
    features = torch.randn(n, 16, 8, generator=generator) * 0.1  # (N, P, F)
    if informative:
        features[torch.arange(n), cells, words] = 1.0
    codes = torch.full((n, 3), len(vocabulary()))
    codes[:, 0] = words
    return {"features": features, "codes": codes, "cells": cells, "spatial": torch.arange(n) % 2 == 1}


def test_search_learns_a_findable_target_and_not_a_hidden_one():
    generator = torch.Generator().manual_seed(0)
    train, val = _search_set(400, informative=True, generator=generator), _search_set(200, informative=True, generator=generator)
    found = search_accuracy(train, val, steps=120, batch_size=32, lr=5e-3, progress=False)
    assert found["accuracy"] > 0.9
    train, val = _search_set(400, informative=False, generator=generator), _search_set(200, informative=False, generator=generator)
    hidden = search_accuracy(train, val, steps=120, batch_size=32, lr=5e-3, progress=False)
    assert hidden["accuracy"] < 0.25 and hidden["chance"] == 1 / 16


def test_attribute_probe_reads_an_encoded_label_and_not_noise():
    rng = np.random.default_rng(0)
    labels = {"colour": list(rng.choice(["red", "blue", "green"], 300))}
    vectors = rng.normal(size=(300, 6))
    assert attribute_probe(vectors, labels)["colour"] < 0.6
    vectors[:, 0] = [["red", "blue", "green"].index(c) * 3.0 for c in labels["colour"]]
    vectors[:, 1] = [c == "blue" for c in labels["colour"]]
    assert attribute_probe(vectors, labels)["colour"] == 1.0


def test_diagnosis_runs_on_the_micro_model(micro_model, samples):
    features = frozen_features(micro_model, samples, progress=False)
    assert features["sam"].shape[0] == features["tokens"].shape[0] == 4
    single = [s for s in samples if len(s.targets) == 1]
    oracle = oracle_prompt_ciou(micro_model, single, frozen_features(micro_model, single, progress=False)["sam"])
    assert set(oracle) == {"point", "box"} and all(0 <= v <= 1 for v in oracle.values())
    sets = {**features, "cells": torch.tensor([cell_index(s.mask, grid=4) for s in samples])}
    before = [p.clone() for p in micro_model.sam.mask_decoder.parameters()]
    grads = [None if p.grad is None else p.grad.clone() for p in micro_model.sam.parameters()]
    ciou = cell_code_ciou(micro_model, sets, sets, grid=4, steps=2, batch_size=2, progress=False)
    assert 0 <= ciou <= 1
    assert all(torch.equal(a, b) for a, b in zip(before, micro_model.sam.mask_decoder.parameters()))  # stays frozen
    assert all((g is None and p.grad is None) or (g is not None and p.grad is not None and torch.equal(g, p.grad))
               for g, p in zip(grads, micro_model.sam.parameters()))  # and gets no stray gradients
    sets.update(codes=word_codes(samples), spatial=torch.tensor([s.kind == "spatial" for s in samples]))
    weights = [p.clone() for p in micro_model.sam.parameters()]
    prompted = text_prompt_ciou(micro_model, sets, sets, steps=2, batch_size=2, progress=False)
    assert set(prompted) == {"ciou", "attribute", "spatial"} and 0 <= prompted["ciou"] <= 1
    assert all(torch.equal(a, b) for a, b in zip(weights, micro_model.sam.parameters()))  # trains a copy of SAM
    vectors, labels = centre_features([s.scene for s in samples], features["sam"])
    assert len(vectors) == len(labels["shape"]) == sum(len(s.scene.objects) for s in samples)
