"""Datasets for AnyRef: ShapeScenes, a synthetic stand-in for RefCOCO."""

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

__all__ = [
    "COLOURS",
    "KINDS",
    "SHAPES",
    "SIZES",
    "SPLIT_ID",
    "ReferringSample",
    "Scene",
    "SceneObject",
    "class_prompts",
    "make_sample",
    "make_scene",
    "referring_expressions",
    "split_samples",
    "training_sample",
    "vocabulary",
]
