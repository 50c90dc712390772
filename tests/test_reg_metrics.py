"""Tests for the region-description scores (CIDEr, METEOR, exact match); AVS metrics: test_metrics_avs.py."""
import pytest

from anyref.errors import AnyRefError, AnyRefInputError
from anyref.metrics import normalise_caption, reg_scores

REFERENCES = ["the small red circle", "the large blue star", "the small green hexagon", "the large yellow diamond"]


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
