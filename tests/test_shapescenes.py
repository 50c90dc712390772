"""Tests for the ShapeScenes synthetic referring-segmentation generator."""

import numpy as np
import pytest

from anyref.data import (
    COLOURS,
    SHAPES,
    SIZES,
    Scene,
    SceneObject,
    class_prompts,
    make_sample,
    make_scene,
    referring_expressions,
    split_samples,
    training_sample,
    vocabulary,
)
from anyref.data.language import question

# Independent restatement of the expression grammar, used to check the generator.
SUPERLATIVE_AXES = {"leftmost": (0, -1), "rightmost": (0, 1), "topmost": (1, -1), "bottommost": (1, 1)}
PAIR_AXES = {
    ("on", "the", "left"): (0, -1),
    ("on", "the", "right"): (0, 1),
    ("at", "the", "top"): (1, -1),
    ("at", "the", "bottom"): (1, 1),
}
MARGIN_FRACTION = 0.05


def scenes(count, **kwargs):
    """A reproducible batch of scenes."""
    return [make_scene(np.random.default_rng(1000 + i), **kwargs) for i in range(count)]


@pytest.fixture(scope="module")
def scene_batch():
    """Scenes mixing default and all-duplicate settings."""
    return scenes(30) + scenes(30, duplicate_prob=1.0)


def parse_phrase(words):
    """Map phrase words (size? colour? shape-or-"object") to the attribute constraints they impose."""
    assert words and (words[-1] in SHAPES or words[-1] == "object"), words
    constraints = {} if words[-1] == "object" else {"shape": words[-1]}
    rest = list(words[:-1])
    if rest and rest[-1] in COLOURS:
        constraints["colour"] = rest.pop()
    if rest and rest[-1] in SIZES:
        constraints["size"] = rest.pop()
    assert not rest, f"unparsed words {rest} in {words}"
    return constraints


def resolve(expression, scene):
    """Indices of the objects an expression denotes, evaluated from scratch."""
    words = expression.split()
    assert words[0] == "the" and " ".join(words) == expression, expression
    spatial = None
    if words[1] in SUPERLATIVE_AXES:
        spatial, phrase = SUPERLATIVE_AXES[words[1]], words[2:]
    elif tuple(words[-3:]) in PAIR_AXES:
        spatial, phrase = PAIR_AXES[tuple(words[-3:])], words[1:-3]
    else:
        phrase = words[1:]
    constraints = parse_phrase(phrase)
    matches = [
        i for i, obj in enumerate(scene.objects) if all(getattr(obj, k) == v for k, v in constraints.items())
    ]
    if spatial is None:
        return matches
    if tuple(words[-3:]) in PAIR_AXES:
        assert len(matches) == 2, f"pair form needs exactly two matches: {expression}"
    axis, sign = spatial
    margin = MARGIN_FRACTION * scene.image.shape[0]
    coord = {i: sign * scene.objects[i].centre[axis] for i in matches}
    return [i for i in matches if all(coord[i] - coord[j] >= margin for j in matches if j != i)]


def ring(mask, inner, outer):
    """Pixels at Chebyshev distance in [inner, outer] outside a mask."""
    def dilate(m, steps):
        for _ in range(steps):
            m = m.copy()
            m[1:] |= m[:-1].copy()
            m[:-1] |= m[1:].copy()
            m[:, 1:] |= m[:, :-1].copy()
            m[:, :-1] |= m[:, 1:].copy()
        return m

    return dilate(mask, outer) & ~dilate(mask, inner - 1)


def erode(mask):
    """Pixels whose 3x3 neighbourhood lies inside the mask."""
    inner = mask.copy()
    inner[1:-1, 1:-1] &= mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    inner[[0, -1]] = False
    inner[:, [0, -1]] = False
    return inner


def mixing_weight(scene, obj):
    """Per-pixel position t of the colour between local background (0) and object colour (1)."""
    image = scene.image.astype(float)
    fg = np.median(image[erode(obj.mask)], axis=0)  # (3,)
    bg = np.median(image[ring(obj.mask, 3, 4)], axis=0)  # (3,)
    axis = fg - bg
    t = (image - bg) @ axis / (axis @ axis)  # (H, W)
    return t


def test_image_and_masks_are_well_formed(scene_batch):
    for scene in scene_batch:
        assert scene.image.dtype == np.uint8 and scene.image.shape == (128, 128, 3)
        assert 2 <= len(scene.objects) <= 6
        masks = scene.masks
        assert masks.dtype == bool and masks.shape == (len(scene.objects), 128, 128)
        assert scene.boxes.dtype == np.float32 and scene.boxes.shape == (len(scene.objects), 4)
        assert (masks.sum(axis=0) <= 1).all(), "masks overlap"
        for obj in scene.objects:
            assert obj.shape in SHAPES and obj.colour in COLOURS and obj.size in SIZES
            assert obj.mask.any()
            assert not (obj.mask[0].any() or obj.mask[-1].any() or obj.mask[:, 0].any() or obj.mask[:, -1].any())
            ys, xs = np.nonzero(obj.mask)
            assert obj.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            x, y = obj.centre
            assert obj.box[0] <= x <= obj.box[2] and obj.box[1] <= y <= obj.box[3]


def test_objects_keep_a_gap(scene_batch):
    for scene in scene_batch:
        for i, obj in enumerate(scene.objects):
            near = ring(obj.mask, 1, 1)
            for j, other in enumerate(scene.objects):
                assert i == j or not (near & other.mask).any(), "objects touch"


def test_masks_agree_with_rendered_pixels(scene_batch):
    for scene in scene_batch[:20]:
        for obj in scene.objects:
            t = mixing_weight(scene, obj)
            assert np.median(t[obj.mask]) > 0.8
            assert (t[obj.mask] > 0.35).all(), "masked pixel is mostly background"
            outside = ring(obj.mask, 1, 1)
            assert (t[outside] < 0.65).all(), "unmasked pixel is mostly object"


def test_edges_are_anti_aliased(scene_batch):
    partial = 0
    for scene in scene_batch[:10]:
        for obj in scene.objects:
            t = mixing_weight(scene, obj)
            edge = ring(obj.mask, 1, 1) | (obj.mask & ~erode(obj.mask))
            partial += int(((t[edge] > 0.2) & (t[edge] < 0.8)).sum())
    assert partial > 100


def test_sizes_scale_with_the_image():
    for size in (64, 192):
        for scene in scenes(10, image_size=size):
            assert scene.image.shape == (size, size, 3)
            assert scene.masks.shape[1:] == (size, size)
            for text, targets, _ in referring_expressions(scene):
                assert resolve(text, scene) == list(targets)
        sample = training_sample(0, seed=0, image_size=size)
        assert sample.mask.shape == (size, size)


def test_large_objects_are_larger_than_small_ones(scene_batch):
    areas = {size: [] for size in SIZES}
    for scene in scene_batch:
        for obj in scene.objects:
            if obj.shape == "circle":
                areas[obj.size].append(obj.mask.sum())
    assert max(areas["small"]) < min(areas["large"])


def test_every_expression_identifies_exactly_its_target(scene_batch):
    kinds = set()
    for scene in scene_batch:
        for text, targets, kind in referring_expressions(scene):
            kinds.add(kind)
            assert len(targets) == 1
            assert resolve(text, scene) == list(targets), text
            is_spatial = text.split()[1] in SUPERLATIVE_AXES or tuple(text.split()[-3:]) in PAIR_AXES
            assert kind == ("spatial" if is_spatial else "attribute")
    assert kinds == {"attribute", "spatial"}


def test_spatial_phrases_are_ambiguous_on_their_own(scene_batch):
    for scene in scene_batch:
        for text, _, kind in referring_expressions(scene):
            if kind == "spatial":
                words = text.split()
                phrase = words[2:] if words[1] in SUPERLATIVE_AXES else words[1:-3]
                assert len(resolve("the " + " ".join(phrase), scene)) >= 2


def test_duplicates_force_spatial_expressions():
    with_spatial = sum(
        any(kind == "spatial" for _, _, kind in referring_expressions(scene))
        for scene in scenes(20, duplicate_prob=1.0)
    )
    assert with_spatial >= 12


def test_class_prompts_cover_every_instance(scene_batch):
    for scene in scene_batch:
        prompts = dict(class_prompts(scene))
        assert set(prompts) == {obj.shape for obj in scene.objects}
        for shape, targets in prompts.items():
            assert targets == tuple(i for i, obj in enumerate(scene.objects) if obj.shape == shape)


def test_words_are_in_vocabulary(scene_batch):
    vocab = vocabulary()
    assert vocab == sorted(set(vocab))
    words = set()
    for scene in scene_batch:
        words.update(w for text, _, _ in referring_expressions(scene) for w in text.split())
        words.update(w for text, _ in class_prompts(scene) for w in text.split())
    assert words <= set(vocab)
    assert {"leftmost", "left", "on", "at"} <= words


def test_make_sample_kinds():
    rng = np.random.default_rng(7)
    for kind in ("attribute", "spatial", "class"):
        for _ in range(3):
            sample = make_sample(rng, kind=kind)
            assert sample.kind == kind
            union = np.any([sample.scene.objects[i].mask for i in sample.targets], axis=0)
            assert np.array_equal(sample.mask, union)
            if kind == "class":
                assert sample.expression in SHAPES
                assert sample.targets == dict(class_prompts(sample.scene))[sample.expression]
            else:
                assert resolve(sample.expression, sample.scene) == list(sample.targets)


def test_training_samples_are_deterministic():
    a, b = training_sample(5, seed=3), training_sample(5, seed=3)
    assert a.scene.image.tobytes() == b.scene.image.tobytes()
    assert np.array_equal(a.scene.masks, b.scene.masks)
    assert (a.expression, a.targets, a.kind) == (b.expression, b.targets, b.kind)
    assert training_sample(6, seed=3).scene.image.tobytes() != a.scene.image.tobytes()
    assert training_sample(5, seed=4).scene.image.tobytes() != a.scene.image.tobytes()


def test_training_mix_controls_kinds():
    kinds = {training_sample(i, seed=0, mix=(("spatial", 1.0),)).kind for i in range(5)}
    assert kinds == {"spatial"}
    mixed = {training_sample(i, seed=0).kind for i in range(30)}
    assert mixed == {"attribute", "spatial", "class"}


def test_splits_are_fixed_and_typed():
    first, second = split_samples("val", num=6), split_samples("val", num=6)
    for a, b in zip(first, second):
        assert a.scene.image.tobytes() == b.scene.image.tobytes()
        assert (a.expression, a.targets) == (b.expression, b.targets)
    assert [s.kind for s in first] == ["attribute", "spatial"] * 3
    assert {s.kind for s in split_samples("testA", num=4)} == {"attribute"}
    assert {s.kind for s in split_samples("testB", num=4)} == {"spatial"}
    assert first[0].scene.image.tobytes() != training_sample(0, seed=0).scene.image.tobytes()
    with pytest.raises(ValueError, match="testA"):
        split_samples("test")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: make_scene(np.random.default_rng(0), image_size=47), "image_size"),
        (lambda: make_scene(np.random.default_rng(0), image_size=1025), "image_size"),
        (lambda: make_scene(np.random.default_rng(0), min_objects=4, max_objects=3), "min_objects"),
        (lambda: make_scene(np.random.default_rng(0), min_objects=0), "min_objects"),
        (lambda: make_sample(np.random.default_rng(0), kind="colour"), "kind"),
        (lambda: training_sample(0, seed=0, mix=(("relation", 1.0),)), "kind"),
        (lambda: training_sample(-1, seed=0), "index"),
    ],
)
def test_bad_arguments_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("kind, attribute", [("colour", "colour"), ("shape", "shape")])
def test_questions_name_their_object_without_the_asked_attribute(scene_batch, kind, attribute):
    """LLaVA-mini's colour / shape questions: the phrase resolves to one object and never gives the answer away."""
    prefix = f"what {kind} is "
    for i, scene in enumerate(scene_batch):
        q, answer = question(scene, np.random.default_rng(i), kind=kind)
        assert q.startswith(prefix) and q.endswith("?"), q
        expression = q[len(prefix):-1]
        assert answer not in expression.split(), q
        (target,) = resolve(expression, scene)
        assert getattr(scene.objects[target], attribute) == answer, (q, answer)


def test_a_question_names_the_asked_colour_only_when_nothing_else_can_name_the_object():
    """Two small stars 2 px apart: no colour-free phrase is unique, so the colour question falls back to one."""
    stars = [SceneObject("star", colour, "small", (60.0 + d, 60.0 + d), (0, 0, 1, 1), np.zeros((128, 128), bool))
             for colour, d in (("red", 0), ("blue", 2))]
    scene = Scene(np.zeros((128, 128, 3), np.uint8), stars)
    q, answer = question(scene, np.random.default_rng(0), kind="colour")
    assert answer in ("red", "blue") and q.startswith("what colour is the ") and f"{answer} star?" in q
