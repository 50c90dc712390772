"""ShapeScenes: RefCOCO-style referring segmentation in miniature.

Seeded synthetic scenes of coloured shapes with exact instance masks, referring
expressions that pick out exactly one object ("the leftmost red circle"), and
class prompts ("circle") that select every instance of a shape class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import MINI_IMAGE_SIZE
from ..errors import AnyRefInputError

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "diamond")
COLOURS = {
    "red": (220, 45, 45),
    "green": (40, 175, 65),
    "blue": (45, 85, 225),
    "yellow": (240, 215, 40),
    "purple": (150, 55, 195),
    "orange": (250, 135, 20),
}
SIZES = ("small", "large")
KINDS = ("attribute", "spatial", "class")
SPLIT_ID = {"val": 0, "testA": 1, "testB": 2}

MIN_IMAGE_SIZE = 48
MAX_IMAGE_SIZE = 1024
REFERENCE_SIZE = 128  # image size at which the radius ranges below hold
RADIUS_RANGE = {"small": (8.0, 11.0), "large": (15.0, 20.0)}  # circumradius, px at 128
GAP_PX = 2.0  # minimum gap between bounding circles
MIN_OBJECTS, MAX_OBJECTS = 2, 6  # objects per scene
BORDER_PX = 1.0  # minimum gap between a bounding circle and the image edge
PLACEMENT_TRIES = 200  # rejection-sampling tries per object
SCENE_TRIES = 50  # whole-scene retries when fewer than min_objects fit
SPATIAL_MARGIN = 0.05  # extreme object must lead the runner-up by this * image_size
COLOUR_JITTER = 5  # max per-channel RGB offset of an object's colour
NOISE_PX = 4  # max per-pixel background noise, RGB units

# Attribute words a phrase uses, in the order they are spoken.
PHRASE_FORMS = (("shape",), ("colour", "shape"), ("size", "shape"), ("size", "colour", "shape"))
OBJECT_NOUN = "object"  # the noun of a phrase that does not name the shape ("the large red object")
# Spatial word -> (axis of the centre: 0 = x, 1 = y, sign: -1 picks the minimum, +1 the maximum).
SUPERLATIVES = {
    "leftmost": (0, -1),
    "rightmost": (0, 1),
    "topmost": (1, -1),
    "bottommost": (1, 1),
}
# Suffix used when exactly two objects match, keyed by the equivalent superlative.
PAIR_SUFFIXES = {
    "leftmost": "on the left",
    "rightmost": "on the right",
    "topmost": "at the top",
    "bottommost": "at the bottom",
}


def _regular_polygon(count: int, start_deg: float) -> np.ndarray:
    """Vertices of a regular polygon with unit circumradius."""
    angles = np.deg2rad(start_deg + 360.0 * np.arange(count) / count)  # (V,)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)  # (V, 2) x, y with y down


def _star(points: int, inner: float) -> np.ndarray:
    """Vertices of a star with unit outer radius, first point facing up."""
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)  # (2P,)
    return radii[:, None] * _regular_polygon(2 * points, -90.0)  # (2P, 2)


# Unit-circumradius outlines of the polygonal shapes (image coordinates, y down).
POLYGONS = {
    "square": _regular_polygon(4, 45.0),
    "triangle": _regular_polygon(3, -90.0),
    "star": _star(5, 0.45),
    "hexagon": _regular_polygon(6, 0.0),
    "diamond": np.array([[0.0, -1.0], [0.7, 0.0], [0.0, 1.0], [-0.7, 0.0]]),
}


@dataclass(frozen=True, eq=False)
class SceneObject:
    """One rendered shape with its attributes and exact mask."""

    shape: str
    colour: str
    size: str
    centre: tuple[float, float]  # (x, y) in pixels
    box: tuple[float, float, float, float]  # (x1, y1, x2, y2), x2/y2 exclusive
    mask: np.ndarray  # (H, W) bool


@dataclass(frozen=True, eq=False)
class Scene:
    """An RGB image and the objects drawn in it."""

    image: np.ndarray  # (H, W, 3) uint8
    objects: list[SceneObject]

    @property
    def masks(self) -> np.ndarray:
        """Instance masks stacked as (N, H, W) bool."""
        height, width = self.image.shape[:2]
        if not self.objects:
            return np.zeros((0, height, width), dtype=bool)
        return np.stack([obj.mask for obj in self.objects])  # (N, H, W) bool

    @property
    def boxes(self) -> np.ndarray:
        """Tight boxes as (N, 4) float32 (x1, y1, x2, y2)."""
        return np.array([obj.box for obj in self.objects], dtype=np.float32).reshape(-1, 4)


@dataclass(frozen=True, eq=False)
class ReferringSample:
    """A scene, a text prompt and the indices of the objects it refers to."""

    scene: Scene
    expression: str
    targets: tuple[int, ...]
    kind: str

    @property
    def mask(self) -> np.ndarray:
        """Union of the target masks as (H, W) bool."""
        return self.scene.masks[list(self.targets)].any(axis=0)  # (H, W) bool


def grid_cell(x: float, y: float, *, grid: int, height: float, width: float) -> tuple[int, int]:
    """(row, column) of the cell holding pixel point (x, y) when a height x width image is cut into grid x grid."""
    return min(int(y * grid / height), grid - 1), min(int(x * grid / width), grid - 1)


def _check_image_size(image_size: int) -> None:
    """Raise AnyRefInputError unless image_size is an int within the supported range."""
    is_int = isinstance(image_size, (int, np.integer))
    if not (is_int and MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE):
        raise AnyRefInputError(
            f"image_size must be an int in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}], got {image_size!r}"
        )


def _check_kind(kind: str) -> None:
    """Raise AnyRefInputError unless kind is a known sample kind."""
    if kind not in KINDS:
        raise AnyRefInputError(f"kind must be one of {KINDS}, got {kind!r}")


def _check_index(name: str, value: int) -> None:
    """Raise AnyRefInputError unless value is a non-negative int (SeedSequence entries must be)."""
    if not isinstance(value, (int, np.integer)) or value < 0:
        raise AnyRefInputError(f"{name} must be a non-negative int, got {value!r}")


def _pixel_grid(x0: int, x1: int, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of the window [x0, x1) x [y0, y1)."""
    xs = np.arange(x0, x1) + 0.5  # (w,)
    ys = np.arange(y0, y1) + 0.5  # (h,)
    return np.meshgrid(xs, ys)  # 2 x (h, w)


def _polygon_sdf(px: np.ndarray, py: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Exact signed distance (negative inside) from points to a closed polygon."""
    start = vertices  # (V, 2)
    edge = np.roll(vertices, -1, axis=0) - start  # (V, 2)
    wx = px[..., None] - start[:, 0]  # (h, w, V)
    wy = py[..., None] - start[:, 1]  # (h, w, V)
    t = np.clip((wx * edge[:, 0] + wy * edge[:, 1]) / (edge**2).sum(axis=1), 0.0, 1.0)  # (h, w, V)
    dist = np.sqrt(((wx - t * edge[:, 0]) ** 2 + (wy - t * edge[:, 1]) ** 2).min(axis=-1))  # (h, w)
    above_start = py[..., None] >= start[:, 1]  # (h, w, V)
    below_end = py[..., None] < start[:, 1] + edge[:, 1]  # (h, w, V)
    left_of_edge = edge[:, 0] * wy > edge[:, 1] * wx  # (h, w, V)
    crossing = (above_start == below_end) & (below_end == left_of_edge)  # (h, w, V)
    inside = crossing.sum(axis=-1) % 2 == 1  # (h, w) bool
    return np.where(inside, -dist, dist)  # (h, w)


def _shape_sdf(
    shape: str, px: np.ndarray, py: np.ndarray, centre: tuple[float, float], radius: float
) -> np.ndarray:
    """Signed distance in pixels from pixel centres to a shape of the given circumradius."""
    dx, dy = px - centre[0], py - centre[1]  # (h, w)
    if shape == "circle":
        return np.hypot(dx, dy) - radius  # (h, w)
    return radius * _polygon_sdf(dx / radius, dy / radius, POLYGONS[shape])  # (h, w)


def _background(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """Grey-ish background with a smooth low-contrast gradient and pixel noise."""
    coords = (np.arange(image_size) + 0.5) / image_size - 0.5  # (W,) pixel centres in [-0.5, 0.5]
    coords = coords.astype(np.float32)
    u, v = coords[None, :], coords[:, None]  # (1, W), (H, 1)
    grey = rng.uniform(110.0, 145.0) + rng.uniform(-5.0, 5.0, size=3)  # (3,) slight tint
    slope_x, slope_y = rng.uniform(-20.0, 20.0, size=2).tolist()  # brightness change across image
    phase = rng.uniform(0.0, 2.0 * np.pi)
    ripple = 4.0 * np.sin(2.0 * np.pi * (u + v) + phase)  # (H, W) float32
    shade = slope_x * u + slope_y * v + ripple  # (H, W) float32
    size = (image_size, image_size, 3)
    noise = rng.integers(-NOISE_PX, NOISE_PX + 1, size=size, dtype=np.int8)  # (H, W, 3)
    return (shade[..., None] + grey.astype(np.float32)) + noise  # (H, W, 3) float32


def _place(
    rng: np.random.Generator, radii: np.ndarray, image_size: int
) -> list[tuple[int, tuple[float, float]]]:
    """Rejection-sample non-overlapping centres; (object index, centre) for each one that fits."""
    placed: list[tuple[int, tuple[float, float]]] = []
    for index, radius in enumerate(radii):
        low, high = radius + BORDER_PX, image_size - radius - BORDER_PX
        tries = rng.uniform(low, high, size=(PLACEMENT_TRIES, 2))  # (T, 2) candidate centres
        others = np.array([centre for _, centre in placed]).reshape(-1, 2)  # (P, 2)
        needed = radius + radii[[j for j, _ in placed]] + GAP_PX  # (P,)
        gaps = np.linalg.norm(tries[:, None] - others[None], axis=-1) >= needed  # (T, P) bool
        fits = np.flatnonzero(gaps.all(axis=1))
        if fits.size:
            placed.append((index, (float(tries[fits[0], 0]), float(tries[fits[0], 1]))))
    return placed


def _pick(rng: np.random.Generator, options) -> str:
    """One element of options, chosen uniformly."""
    options = list(options)
    return options[rng.integers(len(options))]


def _draw_attributes(
    rng: np.random.Generator, count: int, duplicate_prob: float
) -> list[tuple[str, str, str]]:
    """Random (shape, colour, size) triples, optionally with a group of 2-3 sharing a shape."""
    attributes = [
        (_pick(rng, SHAPES), _pick(rng, COLOURS), _pick(rng, SIZES)) for _ in range(count)
    ]
    if count >= 2 and rng.random() < duplicate_prob:
        group = min(int(rng.integers(2, 4)), count)
        shape, colour, size = attributes[0]
        share_colour, share_size = rng.random(2) < 0.5
        attributes[:group] = [
            (shape, colour if share_colour else c, size if share_size else s)
            for _, c, s in attributes[:group]
        ]
    return attributes


def _render_object(
    image: np.ndarray, shape: str, rgb: np.ndarray, centre: tuple[float, float], radius: float
) -> np.ndarray:
    """Alpha-composite one shape into image (in place) and return its exact (H, W) bool mask."""
    image_size = image.shape[0]
    reach = radius + 1.0  # coverage is zero beyond radius + 0.5
    x0, y0 = (max(int(np.floor(c - reach)), 0) for c in centre)
    x1, y1 = (min(int(np.ceil(c + reach)), image_size) for c in centre)
    px, py = _pixel_grid(x0, x1, y0, y1)  # (h, w)
    sdf = _shape_sdf(shape, px, py, centre, radius)  # (h, w)
    coverage = np.clip(0.5 - sdf, 0.0, 1.0)[..., None]  # (h, w, 1)
    window = image[y0:y1, x0:x1]  # (h, w, 3) view
    window += coverage * (rgb - window)
    mask = np.zeros((image_size, image_size), dtype=bool)  # (H, W)
    mask[y0:y1, x0:x1] = sdf < 0.0
    return mask


def _tight_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight (x1, y1, x2, y2) box of a non-empty (H, W) mask, x2/y2 exclusive."""
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def make_scene(
    rng: np.random.Generator,
    *,
    image_size: int = MINI_IMAGE_SIZE,
    min_objects: int = MIN_OBJECTS,
    max_objects: int = MAX_OBJECTS,
    duplicate_prob: float = 0.5,
) -> Scene:
    """Render a random scene of non-overlapping coloured shapes."""
    _check_image_size(image_size)
    if min_objects < 1 or min_objects > max_objects:
        raise AnyRefInputError(
            "need 1 <= min_objects <= max_objects, "
            f"got min_objects={min_objects}, max_objects={max_objects}"
        )
    if not 0.0 <= duplicate_prob <= 1.0:
        raise AnyRefInputError(f"duplicate_prob must be in [0, 1], got {duplicate_prob!r}")
    scale = image_size / REFERENCE_SIZE
    for _ in range(SCENE_TRIES):
        count = int(rng.integers(min_objects, max_objects + 1))
        attributes = _draw_attributes(rng, count, duplicate_prob)
        ranges = [RADIUS_RANGE[size] for *_, size in attributes]
        radii = scale * np.array([rng.uniform(low, high) for low, high in ranges])  # (N,)
        placed = _place(rng, radii, image_size)
        if len(placed) >= min_objects:
            break
    else:
        raise AnyRefInputError(
            f"could not fit min_objects={min_objects} shapes into a {image_size} px image; lower it"
        )
    image = _background(rng, image_size)  # (H, W, 3) float32
    objects = []
    for index, centre in placed:
        shape, colour, size = attributes[index]
        jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3)  # (3,)
        rgb = np.array(COLOURS[colour], dtype=float) + jitter  # (3,)
        mask = _render_object(image, shape, rgb, centre, radii[index])
        objects.append(SceneObject(shape, colour, size, centre, _tight_box(mask), mask))
    return Scene(np.clip(np.rint(image), 0, 255).astype(np.uint8), objects)


def _phrase(obj: SceneObject, form: tuple[str, ...]) -> str:
    """Words of one phrase form filled in from an object's attributes; "object" stands in for a missing shape."""
    return " ".join([getattr(obj, attribute) for attribute in form] + ([] if "shape" in form else [OBJECT_NOUN]))


def _matches(scene: Scene, obj: SceneObject, form: tuple[str, ...]) -> tuple[int, ...]:
    """Indices of the objects that agree with obj on every attribute in form."""
    return tuple(
        i
        for i, other in enumerate(scene.objects)
        if all(getattr(other, attribute) == getattr(obj, attribute) for attribute in form)
    )


def _attribute_expressions(scene: Scene, forms) -> list[tuple[str, tuple[int, ...], str]]:
    """Unique attribute descriptions, at most one word longer than each object's shortest."""
    expressions = []
    for index, obj in enumerate(scene.objects):
        unique = [form for form in forms if _matches(scene, obj, form) == (index,)]
        if unique:
            longest = min(len(form) for form in unique) + 1
            chosen = [form for form in unique if len(form) <= longest]
            expressions += [(f"the {_phrase(obj, form)}", (index,), "attribute") for form in chosen]
    return expressions


def _extreme(
    scene: Scene, group: tuple[int, ...], axis: int, sign: int, margin: float
) -> int | None:
    """Index in group whose centre leads all others along axis by at least margin, else None."""
    ranked = sorted(group, key=lambda i: sign * scene.objects[i].centre[axis], reverse=True)
    lead = sign * (scene.objects[ranked[0]].centre[axis] - scene.objects[ranked[1]].centre[axis])
    return ranked[0] if lead >= margin else None


def _spatial_expressions(scene: Scene, forms) -> list[tuple[str, tuple[int, ...], str]]:
    """Ambiguous phrases disambiguated by a spatial word, one entry per valid wording."""
    groups: dict[str, tuple[int, ...]] = {}
    for obj in scene.objects:
        for form in forms:
            groups.setdefault(_phrase(obj, form), _matches(scene, obj, form))
    margin = SPATIAL_MARGIN * scene.image.shape[0]
    expressions = []
    for phrase, group in groups.items():
        if len(group) < 2:
            continue
        for word, (axis, sign) in SUPERLATIVES.items():
            target = _extreme(scene, group, axis, sign, margin)
            if target is None:
                continue
            expressions.append((f"the {word} {phrase}", (target,), "spatial"))
            if len(group) == 2:
                expressions.append((f"the {phrase} {PAIR_SUFFIXES[word]}", (target,), "spatial"))
    return expressions


def referring_expressions(scene: Scene, *, forms=PHRASE_FORMS) -> list[tuple[str, tuple[int, ...], str]]:
    """All (expression, targets, kind) that identify exactly one object, attribute then spatial; `forms` lists the
    attribute combinations a phrase may use (a form without "shape" ends in "object")."""
    return _attribute_expressions(scene, forms) + _spatial_expressions(scene, forms)


def class_prompts(scene: Scene) -> list[tuple[str, tuple[int, ...]]]:
    """(shape name, indices of every instance) for each shape class present, in SHAPES order."""
    prompts = []
    for shape in SHAPES:
        instances = tuple(i for i, obj in enumerate(scene.objects) if obj.shape == shape)
        if instances:
            prompts.append((shape, instances))
    return prompts


def _candidates(scene: Scene, kind: str) -> list[tuple[str, tuple[int, ...]]]:
    """Valid (prompt, targets) of one kind for a scene."""
    if kind == "class":
        return class_prompts(scene)
    return [(text, targets) for text, targets, k in referring_expressions(scene) if k == kind]


def make_sample(rng: np.random.Generator, *, kind: str, image_size: int = MINI_IMAGE_SIZE) -> ReferringSample:
    """Draw scenes until one supports kind, then pick one of its valid prompts uniformly."""
    _check_kind(kind)
    duplicate_prob = 1.0 if kind == "spatial" else 0.5
    while True:
        scene = make_scene(rng, image_size=image_size, duplicate_prob=duplicate_prob)
        candidates = _candidates(scene, kind)
        if candidates:
            text, targets = candidates[rng.integers(len(candidates))]
            return ReferringSample(scene, text, targets, kind)


def training_sample(
    index: int,
    *,
    seed: int,
    image_size: int = MINI_IMAGE_SIZE,
    mix: tuple[tuple[str, float], ...] = (("attribute", 0.45), ("spatial", 0.35), ("class", 0.2)),
) -> ReferringSample:
    """Training sample fully determined by (seed, index); its kind is drawn from mix."""
    _check_index("index", index)
    _check_index("seed", seed)
    kinds = [kind for kind, _ in mix]
    weights = np.array([weight for _, weight in mix], dtype=float)  # (K,)
    for kind in kinds:
        _check_kind(kind)
    if not kinds or (weights < 0).any() or weights.sum() <= 0:
        raise AnyRefInputError(f"mix needs non-negative weights with a positive sum, got {mix!r}")
    rng = np.random.default_rng(np.random.SeedSequence([0, seed, index]))
    kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
    return make_sample(rng, kind=kind, image_size=image_size)


def _split_kind(split: str, index: int) -> str:
    """Kind of sample index in a split: val alternates, testA is attribute, testB spatial."""
    if split == "val":
        return ("attribute", "spatial")[index % 2]
    return "attribute" if split == "testA" else "spatial"


def split_samples(split: str, *, num: int = 200, image_size: int = MINI_IMAGE_SIZE) -> list[ReferringSample]:
    """Fixed evaluation samples of a split ("val", "testA", "testB"), identical on every call."""
    if split not in SPLIT_ID:
        raise AnyRefInputError(f"unknown split {split!r}; valid splits are {tuple(SPLIT_ID)}")
    _check_index("num", num)
    return [
        make_sample(
            np.random.default_rng(np.random.SeedSequence([1, SPLIT_ID[split], i])),
            kind=_split_kind(split, i),
            image_size=image_size,
        )
        for i in range(num)
    ]


def vocabulary() -> list[str]:
    """Sorted list of every word any expression or class prompt can contain."""
    suffix_words = {word for suffix in PAIR_SUFFIXES.values() for word in suffix.split()}
    spatial = set(SUPERLATIVES) | suffix_words
    return sorted(set(SHAPES) | set(COLOURS) | set(SIZES) | spatial | {"the"})
