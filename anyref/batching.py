"""ShapeScenes samples -> teacher-forced model batches (prompt, answer, image, one mask per `<obj>`)."""
from __future__ import annotations

import numpy as np
import torch

from .model import Batch
from .referring import check_references
from .tokens import IGNORE_INDEX, encode, pad_batch, segment_answer, segment_question


def _batch(samples, ids, labels, masks, *, tokenizer, references=None) -> Batch:
    """Padded ids, attention mask and labels (B, T), stacked uint8 images (B, H, W, 3), masks and references."""
    return Batch(input_ids=pad_batch(list(ids), value=tokenizer.pad_token_id),
                 attention_mask=pad_batch([[1] * len(x) for x in ids], value=0),
                 labels=pad_batch(list(labels), value=IGNORE_INDEX),
                 images=torch.from_numpy(np.stack([s.scene.image for s in samples])), masks=masks, references=references)


def collate(samples, tokenizer, *, max_tokens: int) -> Batch:
    """Text-referring samples -> Batch: "Can you segment {exp} in this image?" -> "{exp} <obj>." (supplement 6.2)."""
    ids, labels = zip(*(encode(tokenizer, segment_question(s.expression), segment_answer(s.expression),
                               max_tokens=max_tokens) for s in samples))
    masks = [torch.from_numpy(s.mask[None].astype(np.float32)) for s in samples]  # each (1, H, W)
    return _batch(samples, ids, labels, masks, tokenizer=tokenizer)


def collate_tasks(samples, tokenizer, *, max_tokens: int) -> Batch:
    """Task-mixture samples (anyref.data.tasks.TaskSample) -> Batch with each sample's references."""
    ids, labels = zip(*(encode(tokenizer, s.question, s.answer, max_tokens=max_tokens) for s in samples))
    for sample, sample_ids in zip(samples, ids):
        check_references(sample_ids, sample.references)
    masks = [None if s.masks is None else torch.from_numpy(s.masks.astype(np.float32)) for s in samples]  # (N, H, W)
    return _batch(samples, ids, labels, masks, tokenizer=tokenizer, references=[tuple(s.references) for s in samples])
