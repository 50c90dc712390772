"""Special tokens, tokenizer preparation and the supplement's prompt/answer templates (Sec. 3.1.1, supplement 6.2)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import AnyRefCheckpointError, AnyRefInputError
from .referring import expand_spans

IMAGE_TOKEN = "<image>"
OBJ_TOKEN = "<obj>"  # `[SEG]` in LISA and the official code
IMG_REF_START, IMG_REF_END = "<img.ref>", "</img.ref>"
AUD_REF_START, AUD_REF_END = "<aud.ref>", "</aud.ref>"
REFERENCE_TOKENS = (IMG_REF_START, IMG_REF_END, AUD_REF_START, AUD_REF_END)  # a question may quote these
SPECIAL_TOKENS = (IMAGE_TOKEN, OBJ_TOKEN, *REFERENCE_TOKENS)
IGNORE_INDEX = -100

SEGMENT_QUESTION = "Can you segment {exp} in this image?"
SEGMENT_ANSWER = "{exp} " + OBJ_TOKEN + "."
REGION_QUESTION = "Can you provide a description of <img.ref></img.ref> in this image?"
EXAMPLE_QUESTION = "Can you find similar object of <img.ref></img.ref> in this image?"
AUDIO_QUESTION = "Can you segment the object that makes sound of <aud.ref></aud.ref> in this image?"
USER, ASSISTANT = "USER:", "ASSISTANT:"
# The supplement's templates (segment / region description / image reference / audio reference) and the roles.
TEMPLATE_WORDS = ("can", "you", "segment", "in", "this", "image", "user", "assistant", "provide", "description", "of",
                  "find", "similar", "object", "that", "makes", "sound")


def add_special_tokens(tokenizer):
    """Add the paper's special tokens (each must become ONE id) and a pad token if missing."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    for token in SPECIAL_TOKENS:
        ids = tokenizer(token, add_special_tokens=False).input_ids
        if len(ids) != 1:  # LISA issue #55: "[SEG]" can split into two ids with some tokenizers
            raise AnyRefCheckpointError(f"special token {token!r} tokenizes to {ids}, not one id")
    return tokenizer


def load_tokenizer(path: str | Path):
    """A tokenizer from a local folder (paper: LLaVA's), prepared by `add_special_tokens`."""
    from transformers import AutoTokenizer

    from .paths import resolve

    folder = resolve(path)
    if not folder.is_dir():
        raise AnyRefCheckpointError(f"tokenizer folder {str(folder)!r} does not exist; point tokenizer_path at a "
                                    "local folder holding tokenizer files (nothing is downloaded)")
    return add_special_tokens(AutoTokenizer.from_pretrained(str(folder)))


@dataclass
class TokenIds:
    """The ids of the special tokens for one tokenizer."""

    image: int
    obj: int
    img_ref_start: int
    img_ref_end: int
    aud_ref_start: int
    aud_ref_end: int
    eos: int
    pad: int
    unk: int | None

    @classmethod
    def of(cls, tokenizer) -> "TokenIds":
        """Look the ids up in a tokenizer prepared by `add_special_tokens`."""
        get = tokenizer.convert_tokens_to_ids
        return cls(get(IMAGE_TOKEN), get(OBJ_TOKEN), get(IMG_REF_START), get(IMG_REF_END), get(AUD_REF_START),
                   get(AUD_REF_END), tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id)


def segment_question(expression: str) -> str:
    """Supplement 6.2: the question of a text-referring sample."""
    return SEGMENT_QUESTION.format(exp=expression)


def segment_answer(expression: str) -> str:
    """Supplement 6.2: the answer repeats the expression so refocusing has words to attend to."""
    return SEGMENT_ANSWER.format(exp=expression)


def prompt_text(question: str) -> str:
    """The conversation up to the assistant's turn, with the image placeholder first (LLaVA-v1 style)."""
    return f"{USER} {IMAGE_TOKEN} {question} {ASSISTANT}"


def encode(tokenizer, question: str, answer: str | None = None, *, max_tokens: int) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 on the prompt) for one turn; `answer=None` gives the prompt alone.

    Each empty `<img.ref></img.ref>` / `<aud.ref></aud.ref>` in the question is filled with placeholder ids, one per
    reference feature (16 / 3), which the model replaces one-for-one.
    """
    question = question.strip()
    if not question:
        raise AnyRefInputError("the text is empty; ask something, e.g. 'Can you segment the red circle in this image?'")
    check_question(tokenizer, question)
    if answer and IMAGE_TOKEN in answer:
        raise AnyRefInputError(f"{IMAGE_TOKEN} is added by the model; remove it from the answer")
    prompt = tokenizer(prompt_text(question), add_special_tokens=False).input_ids
    prompt = [tokenizer.bos_token_id, *prompt] if tokenizer.bos_token_id is not None else prompt
    _check_known_words(tokenizer, question, prompt)
    prompt = expand_spans(prompt, img_start=tokenizer.convert_tokens_to_ids(IMG_REF_START),
                          img_end=tokenizer.convert_tokens_to_ids(IMG_REF_END),
                          aud_start=tokenizer.convert_tokens_to_ids(AUD_REF_START),
                          aud_end=tokenizer.convert_tokens_to_ids(AUD_REF_END))  # one placeholder per feature
    ids, labels = list(prompt), [IGNORE_INDEX] * len(prompt)
    if answer is not None:
        reply = _reply_ids(tokenizer, answer)
        ids += reply
        labels += reply
    room = 2 if answer is None else 0  # a prompt needs room for at least "<obj>" and an end token
    if len(ids) + room > max_tokens:
        raise AnyRefInputError(f"the text is {len(ids)} tokens long; at most {max_tokens - room} fit "
                               f"(max_text_tokens={max_tokens}); shorten it")
    return ids, labels


def encode_conversation(tokenizer, turns, *, max_tokens: int) -> tuple[list[int], list[int]]:
    """Token ids and labels of a multi-turn conversation about one image (LLaVA-Instruct style): the first turn as
    `encode`, each later turn "USER: q ASSISTANT: a</s>" with labels on the answers only."""
    (first_question, first_answer), *later = turns
    ids, labels = encode(tokenizer, first_question, first_answer, max_tokens=max_tokens)
    for question, answer in later:
        check_question(tokenizer, question)
        prompt = tokenizer(f"{USER} {question.strip()} {ASSISTANT}", add_special_tokens=False).input_ids
        _check_known_words(tokenizer, question, prompt)
        reply = _reply_ids(tokenizer, answer)
        ids += prompt + reply
        labels += [IGNORE_INDEX] * len(prompt) + reply
    if len(ids) > max_tokens:
        raise AnyRefInputError(f"the conversation is {len(ids)} tokens long; at most {max_tokens} fit "
                               f"(max_text_tokens={max_tokens}); use fewer turns")
    return ids, labels


def check_question(tokenizer, question: str) -> None:
    """Refuse special tokens typed into a question: `<image>` and `<obj>` are the model's, `<s>`, `</s>`, `<pad>`...
    the tokenizer's; only the empty reference pairs may be quoted."""
    typed = [token for token in tokenizer.all_special_tokens if token not in REFERENCE_TOKENS and token in question]
    if typed:
        raise AnyRefInputError(f"the text contains the special token(s) {typed}, which are added by the model, not "
                               "typed; remove them (quote a reference only as an empty '<img.ref></img.ref>' or "
                               "'<aud.ref></aud.ref>' pair)")


def _reply_ids(tokenizer, answer: str) -> list[int]:
    """The assistant's answer as ids, ending in the end token; every word must be known."""
    reply = tokenizer(" " + answer, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    _check_known_words(tokenizer, answer, reply)
    return reply


def _check_known_words(tokenizer, text: str, ids: list[int]) -> None:
    unk = tokenizer.unk_token_id
    if unk is None or unk not in ids:
        return
    vocab = tokenizer.get_vocab()
    for token in SPECIAL_TOKENS:  # whole tokens, not words to split
        text = text.replace(token, " ")
    pieces = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(tokenizer.backend_tokenizer.normalizer
                                                                        .normalize_str(text))
    unknown = sorted({p for p, _ in pieces if p not in vocab})
    raise AnyRefInputError(f"words not in the model's vocabulary: {unknown}; the miniature model knows only "
                           "ShapeScenes words (see anyref.data.vocabulary())")


def pad_batch(sequences: list[list[int]], *, value: int) -> torch.Tensor:
    """Right-pad a list of id lists into a (B, T) long tensor."""
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), value, dtype=torch.long)  # (B, T)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out
