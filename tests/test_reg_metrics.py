"""Tests for the AVSBench F-score / meter and the region-description scores (CIDEr, METEOR, exact match)."""
import numpy as np
import pytest

from anyref.errors import AnyRefError, AnyRefInputError
from anyref.metrics import AVSMeter, f_score, normalise_caption, reg_scores

REFERENCES = ["the small red circle", "the large blue star", "the small green hexagon", "the large yellow diamond"]


def masks(*rows):
    """A (1, W) bool mask per row string of 0/1."""
    return [np.array([[c == "1" for c in row]]) for row in rows]


def test_f_score_by_hand():
    pred, target = masks("11110000", "11000000")
    precision, recall = 0.5, 1.0
    assert f_score(pred, target) == pytest.approx(1.3 * precision * recall / (0.3 * precision + recall))  # 0.5652
    assert f_score(target, pred) == pytest.approx(1.3 * 1.0 * 0.5 / (0.3 + 0.5))  # P = 1, R = 0.5: 0.8125
    assert f_score(pred, target, beta2=1.0) == pytest.approx(2 / 3)
    assert f_score(pred, pred) == 1.0
    empty, disjoint = masks("00000000", "00001111")
    assert f_score(empty, empty) == 1.0  # nothing to find, nothing found
    assert f_score(empty, target) == 0.0 and f_score(target, empty) == 0.0 and f_score(disjoint, target) == 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        f_score(pred, np.zeros((2, 8), bool))


def test_avs_meter_averages_per_sample():
    pred, target, empty = masks("11110000", "11000000", "00000000")
    meter = AVSMeter()
    assert meter.update(pred, target) == (pytest.approx(0.5), pytest.approx(0.65 / 1.15))
    meter.update(empty, empty)
    assert meter.miou == pytest.approx(0.75) and meter.fscore == pytest.approx((0.65 / 1.15 + 1.0) / 2)


def test_captions_are_normalised_before_scoring():
    assert normalise_caption("The small  red circle <obj>.") == "the small red circle"
    scores = reg_scores(["The small red circle <obj>.", *REFERENCES[1:]], REFERENCES, meteor=False)
    assert scores["exact_match"] == 1.0 and scores["cider"] > 0 and scores["meteor"] is None and scores["n"] == 4


def test_cider_and_exact_match_drop_on_mistakes():
    perfect = reg_scores(REFERENCES, REFERENCES, meteor=False)
    wrong = reg_scores(["the small red square", REFERENCES[1], "", "the large yellow diamond"], REFERENCES,
                       meteor=False)
    assert wrong["exact_match"] == 0.5 and 0 < wrong["cider"] < perfect["cider"]
    with pytest.raises(AnyRefInputError, match="as many predictions"):
        reg_scores(REFERENCES[:2], REFERENCES, meteor=False)


def test_meteor_needs_java(monkeypatch):
    monkeypatch.setenv("PATH", "")
    with pytest.raises(AnyRefError, match="needs Java"):
        reg_scores(REFERENCES, REFERENCES)


@pytest.mark.slow
def test_meteor_is_one_for_identical_captions_and_lower_otherwise():
    perfect = reg_scores(REFERENCES, REFERENCES)  # Java loads METEOR's paraphrase table once (10-40 s)
    wrong = reg_scores(["the small red square", REFERENCES[1], "", "the large yellow diamond"], REFERENCES)
    assert perfect["meteor"] == pytest.approx(1.0) and 0.0 <= wrong["meteor"] < perfect["meteor"]
