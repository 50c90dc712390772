"""Datasets for AnyRef: ShapeScenes, a synthetic stand-in for RefCOCO, with object crops and shape sounds."""

from anyref.data.crops import object_crop
from anyref.data.shapescenes import (
    COLOURS,
    KINDS,
    SHAPES,
    SIZES,
    SPLIT_ID,
    ReferringSample,
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
from anyref.data.sounds import SAMPLE_RATE, mix, shape_sound, sound_for

__all__ = [
    "COLOURS",
    "KINDS",
    "SAMPLE_RATE",
    "SHAPES",
    "SIZES",
    "SPLIT_ID",
    "ReferringSample",
    "Scene",
    "SceneObject",
    "class_prompts",
    "make_sample",
    "make_scene",
    "mix",
    "object_crop",
    "referring_expressions",
    "shape_sound",
    "sound_for",
    "split_samples",
    "training_sample",
    "vocabulary",
]
