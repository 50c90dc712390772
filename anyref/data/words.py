"""The ShapeScenes word tokenizer: one id per word of the scenes' language, the templates and the special tokens."""
from __future__ import annotations

from ..tokens import TEMPLATE_WORDS, add_special_tokens
from .language import WORDS
from .shapescenes import vocabulary

PUNCTUATION = (".", "?", ",", ":", "'")


def build_word_tokenizer():
    """A word-level tokenizer over the ShapeScenes vocabulary plus the paper's special tokens."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    base = ["<unk>", "<pad>", "<s>", "</s>"]
    words = sorted(set(TEMPLATE_WORDS) | set(WORDS) | set(vocabulary()))
    vocab = {tok: i for i, tok in enumerate(base + list(PUNCTUATION) + words)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        clean_up_tokenization_spaces=True,
    )
    return add_special_tokens(tokenizer)
