"""ShapeScenes samples -> teacher-forced model batches (prompt, answer, image, one mask per `<obj>`)."""
from __future__ import annotations

import numpy as np
import torch

from .model import Batch
from .referring import check_references
from .tokens import IGNORE_INDEX, encode, pad_batch, segment_answer, segment_question


def collate(samples, tokenizer, *, max_tokens: int) -> Batch:
    """Text-referring samples -> Batch: "Can you segment {exp} in this image?" -> "{exp} <obj>." (supplement 6.2)."""
    ids, labels = zip(*(encode(tokenizer, segment_question(s.expression), segment_answer(s.expression),
                               max_tokens=max_tokens) for s in samples))
    input_ids = pad_batch(list(ids), value=tokenizer.pad_token_id)  # (B, T)
    attention = pad_batch([[1] * len(x) for x in ids], value=0)  # (B, T)
    label_ids = pad_batch(list(labels), value=IGNORE_INDEX)  # (B, T)
    images = torch.from_numpy(np.stack([s.scene.image for s in samples]))  # (B, H, W, 3) uint8
    masks = [torch.from_numpy(s.mask[None].astype(np.float32)) for s in samples]  # each (1, H, W)
    return Batch(input_ids=input_ids, attention_mask=attention, labels=label_ids, images=images, masks=masks)


def collate_tasks(samples, tokenizer, *, max_tokens: int) -> Batch:
    """Task-mixture samples (anyref.data.tasks.TaskSample) -> Batch with each sample's references."""
    ids, labels = [], []
    for s in samples:
        sample_ids, sample_labels = encode(tokenizer, s.question, s.answer, max_tokens=max_tokens)
        check_references(sample_ids, s.references)
        ids.append(sample_ids)
        labels.append(sample_labels)
    input_ids = pad_batch(ids, value=tokenizer.pad_token_id)  # (B, T)
    attention = pad_batch([[1] * len(x) for x in ids], value=0)  # (B, T)
    label_ids = pad_batch(labels, value=IGNORE_INDEX)  # (B, T)
    images = torch.from_numpy(np.stack([s.scene.image for s in samples]))  # (B, H, W, 3) uint8
    masks = [None if s.masks is None else torch.from_numpy(s.masks.astype(np.float32)) for s in samples]  # (N, H, W)
    return Batch(input_ids=input_ids, attention_mask=attention, labels=label_ids, images=images, masks=masks,
                 references=[tuple(s.references) for s in samples])
