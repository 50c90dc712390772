"""The text the miniature world speaks: captions (CLIP-mini), questions and answers (LLaVA-mini), LM sentences."""
from __future__ import annotations

import numpy as np

from .shapescenes import PHRASE_FORMS, Scene, SceneObject, grid_cell, referring_expressions

NUMBERS = ("zero", "one", "two", "three", "four", "five", "six")
ROWS, COLUMNS = ("top", "middle", "bottom"), ("left", "centre", "right")
QUESTION_KINDS = ("colour", "shape", "where", "count")
# Phrase forms a question may use to name its object; a colour or shape question never names what it asks for.
DESCRIPTION_FORMS = PHRASE_FORMS + (("colour",), ("size",), ("size", "colour"))
# Every word captions, questions and answers use beyond the referring-expression vocabulary.
WORDS = ("a", "and", "what", "colour", "shape", "is", "where", "how", "many", "shapes", "are", "there", "describe",
         "briefly", "middle", "centre") + NUMBERS


def crop_caption(obj: SceneObject, rng: np.random.Generator) -> str:
    """A caption of one object crop: "a red circle" or "a small red circle"."""
    return f"a {obj.size} {obj.colour} {obj.shape}" if rng.random() < 0.5 else f"a {obj.colour} {obj.shape}"


def scene_caption(scene: Scene) -> str:
    """The objects of a scene from left to right: "a red circle , a large blue star and a green hexagon"."""
    names = [f"a {o.colour} {o.shape}" for o in sorted(scene.objects, key=lambda o: o.centre[0])]
    return names[0] if len(names) == 1 else " , ".join(names[:-1]) + " and " + names[-1]


def position_words(obj: SceneObject, image_size: int) -> str:
    """Where an object's centre lies on a 3 x 3 grid: "top left", "middle centre", ..."""
    row, column = grid_cell(*obj.centre, grid=3, height=image_size, width=image_size)
    return f"{ROWS[row]} {COLUMNS[column]}"


def question(scene: Scene, rng: np.random.Generator, *, kind: str) -> tuple[str, str]:
    """One (question, answer) pair of a kind in QUESTION_KINDS about a scene."""
    image_size = scene.image.shape[0]
    if kind == "count":
        colour = [o.colour for o in scene.objects][rng.integers(len(scene.objects))] if rng.random() < 0.8 else \
            str(rng.choice(["red", "green", "blue", "yellow", "purple", "orange"]))
        count = sum(o.colour == colour for o in scene.objects)
        return f"how many {colour} shapes are there?", NUMBERS[count]
    forms = tuple(form for form in DESCRIPTION_FORMS if kind not in form) if kind in ("colour", "shape") else \
        PHRASE_FORMS
    # In the rare scene where no object can be named without the asked attribute (one of the first ~110,000 colour
    # questions of LLaVA-mini's training run), the phrase may name it.
    expressions = [(text, targets) for text, targets, _ in referring_expressions(scene, forms=forms)] or \
        [(text, targets) for text, targets, _ in referring_expressions(scene)]
    text, (target,) = expressions[rng.integers(len(expressions))]
    obj = scene.objects[target]
    if kind == "colour":
        return f"what colour is {text}?", obj.colour
    if kind == "shape":
        return f"what shape is {text}?", obj.shape
    if kind == "where":
        return f"where is {text}?", position_words(obj, image_size)
    raise ValueError(f"unknown question kind {kind!r}; choose one of {QUESTION_KINDS}")


def conversation(scene: Scene, rng: np.random.Generator, *, turns: int, tries: int = 20) -> list[tuple[str, str]]:
    """Up to `turns` (question, answer) pairs about one scene in which no answer is named by an earlier turn.

    LLaVA-Instruct's conversations are multi-turn; here a candidate turn is dropped when any word of its answer was
    already said (in an earlier question or answer), so a model cannot copy it from the conversation.
    """
    chosen: list[tuple[str, str]] = []
    said: set[str] = set()
    for _ in range(tries):
        if len(chosen) == turns:
            break
        q, a = question(scene, rng, kind=QUESTION_KINDS[rng.integers(len(QUESTION_KINDS))])
        if said & set(a.split()):
            continue
        chosen.append((q, a))
        said |= set(q.rstrip("?").split()) | set(a.split())
    return chosen
