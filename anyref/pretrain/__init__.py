"""Pretraining of the miniature ingredients (CLIP-mini, SAM-mini, audio-mini, ...) on ShapeScenes."""
