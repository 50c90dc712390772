"""LLaVA-mini's training conversations never reveal an answer before it is asked for."""
import numpy as np

from anyref.data import make_scene
from anyref.data.language import conversation
from anyref.pretrain.llava_mini import lm_sentence


def test_no_answer_is_named_by_an_earlier_turn_over_1000_conversations():
    rng = np.random.default_rng(0)
    leaks, lengths = 0, []
    for _ in range(1000):
        turns = conversation(make_scene(rng), rng, turns=4)
        lengths.append(len(turns))
        said: set[str] = set()
        for q, a in turns:
            leaks += bool(said & set(a.split()))
            said |= set(q.rstrip("?").split()) | set(a.split())
    assert leaks == 0
    assert np.mean(lengths) > 3.5  # nearly every conversation still has its four turns


def test_the_language_model_stage_reads_captions_not_question_answer_pairs():
    rng = np.random.default_rng(1)
    sentences = [lm_sentence(rng, 128) for _ in range(50)]
    assert not any("?" in s for s in sentences)
    assert all(s.startswith("a ") for s in sentences)
