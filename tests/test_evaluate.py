"""Task evaluation: a perfect answerer scores 1 on every mask figure; the segment-everything floor scores below it."""
import numpy as np
import pytest

from anyref.evaluate import (_target, all_objects_baseline, evaluate_audio, evaluate_referring, evaluate_tasks,
                             segment_everything, words_before_obj)
from anyref.predict import Prediction


def perfect(sample):
    """An oracle: the true words and the true masks."""
    words = getattr(sample, "target_text", getattr(sample, "expression", ""))
    truth = _target(sample)[None]
    return Prediction(text=f"{words} <obj>.", masks=truth, mask_logits=np.where(truth, 5.0, -5.0).astype(np.float32))


def test_a_perfect_answerer_scores_one_everywhere():
    scores = evaluate_tasks(perfect, num=6, shots=2, meteor=False, progress=False)
    assert all(scores["text"][split]["ciou"] == 1.0 and scores["text"][split]["obj_rate"] == 1.0
               for split in ("val", "testA", "testB"))
    assert scores["reg"]["exact_match"] == 1.0 and scores["reg"]["mask_ciou"] == 1.0
    assert all(figures["miou"] == 1.0 for figures in scores["image"].values())
    assert all(figures[key] == 1.0 for figures in scores["audio"].values()
               for key in ("miou", "fscore", "fscore_per_sample"))


def test_segment_everything_is_a_floor_not_a_pass():
    floor = all_objects_baseline(num=6, shots=2)
    assert 0 < floor["text_ciou"]["val"] < 1 and 0 < floor["image_one_shot_miou"] < 1
    assert 0 < floor["audio_single_miou"] <= 1 and 0 < floor["reg_mask_ciou"] < 1


def test_audio_scores_come_from_probabilities():
    """Probability 0.9 on the target and 0.6 elsewhere: at 0.5 the mask covers everything (low mIoU), but F-score's
    threshold sweep finds the cut between 0.6 and 0.9, which only probabilities can show."""
    def ranked(sample):
        truth = _target(sample)[None]
        logits = np.where(truth, np.log(9.0), np.log(1.5)).astype(np.float32)  # sigmoid: 0.9 / 0.6
        return Prediction(text="<obj>", masks=logits > 0, mask_logits=logits)

    scores = evaluate_audio(ranked, num=3, progress=False)["single_source"]
    assert scores["miou"] < 0.5 and scores["fscore"] == pytest.approx(1.0)


def test_an_answer_without_obj_counts_as_an_empty_mask(samples):
    silent = lambda sample: Prediction(text="no", masks=np.zeros((0, 64, 64), bool),
                                       mask_logits=np.zeros((0, 64, 64), np.float32))
    scores = evaluate_referring(silent, samples, progress=False)
    assert scores["ciou"] == 0.0 and scores["obj_rate"] == 0.0
    assert evaluate_referring(segment_everything, samples, progress=False)["obj_rate"] == 1.0


@pytest.mark.parametrize("text, words", [("the red circle <obj>.", "the red circle"), ("nothing", "nothing")])
def test_words_before_obj(text, words):
    assert words_before_obj(text) == words


def test_an_answer_restates_its_expression_only_word_for_word():
    from anyref.evaluate import restates_expression

    assert restates_expression("the small red star <obj>.", "the small red star")
    assert restates_expression("the small red star <obj> .", "the small red star")
    assert not restates_expression("the red star <obj>.", "the small red star")
    assert not restates_expression("<obj>.", "the small red star")
