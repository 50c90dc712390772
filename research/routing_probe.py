"""Lab: can AnyRef-mini's LLM learn to carry the target's position to the `<obj>` position at all?

Skips SAM: a linear head reads the target centre from the hidden state that predicts `<obj>` (teacher-forced
answers), trained with MSE together with the LLM. Held-out R^2 after N steps, per variant.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from anyref import AnyRefModel, preset
from anyref.batching import collate
from anyref.data import split_samples, training_sample
from anyref.tokens import IGNORE_INDEX


def centre_hidden(model, samples):
    """Hidden states (N, D) at the positions predicting `<obj>`, and the targets' centres (N, 2) in [0, 1]."""
    batch = collate(samples, model.tokenizer, max_tokens=model.config.max_text_tokens)
    _, image_tokens = model.image_features(batch.images)
    image_tokens = image_tokens * model.image_scale
    embeds, token_ids, where = model.splice(batch.input_ids, image_tokens, None)
    num = image_tokens.shape[1]
    attention = model._expand(batch.attention_mask, where, num, 1)
    labels = model._expand(batch.labels, where, num, IGNORE_INDEX)
    hidden = model.llama.model(inputs_embeds=embeds, attention_mask=attention).last_hidden_state  # (B, L, D)
    starts = [int((row != IGNORE_INDEX).nonzero()[0]) for row in labels]
    queries = model.obj_queries(token_ids, starts)
    h = hidden[torch.tensor([q.batch for q in queries]), torch.tensor([q.query for q in queries])]  # (N, D)
    centres = torch.tensor([s.scene.objects[s.targets[0]].centre for s in samples], dtype=torch.float32) / 128
    return h, centres


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fresh-llm", action="store_true")
    parser.add_argument("--image-scale", type=float, default=1.0)
    parser.add_argument("--positions", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--kinds", default="attribute")
    parser.add_argument("--init-std", type=float, default=None, help="re-initialise the LLM's linear layers")
    parser.add_argument("--clip", default=None, help="another CLIP-mini folder (its projector then trains too)")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = preset("mini")
    config.vision.position_amplitude = args.positions
    config.llm.use_lora, config.trainable.llm_full = False, True
    if args.fresh_llm:
        config.llm.pretrained_path = None
    if args.clip:
        config.vision.pretrained_path = args.clip
        config.trainable.projector = True
    model = AnyRefModel(config)
    model.image_scale = args.image_scale
    if args.init_std:
        with torch.no_grad():
            for module in model.llama.model.modules():
                if isinstance(module, torch.nn.Linear):
                    module.weight.normal_(0.0, args.init_std)
    head = torch.nn.Linear(model.llama.config.hidden_size, 2)
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    mix = tuple((k, 1.0) for k in args.kinds.split(","))
    held = [s for s in split_samples("val", num=200) if s.kind in args.kinds.split(",")][:120]
    began, curve = time.time(), []
    for step in range(args.steps):
        samples = [training_sample(step * args.batch + i, seed=0, mix=mix) for i in range(args.batch)]
        h, centres = centre_hidden(model, samples)
        loss = ((head(h) - centres) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if (step + 1) % 100 == 0:
            with torch.no_grad():
                h, centres = centre_hidden(model, held)
                pred = head(h)
                r2 = 1 - ((pred - centres) ** 2).sum() / ((centres - centres.mean(0)) ** 2).sum()
            curve.append({"step": step + 1, "train_mse": float(loss), "heldout_r2": float(r2),
                          "wall_s": round(time.time() - began, 1)})
            print(json.dumps({**vars(args), **curve[-1]}), flush=True)


if __name__ == "__main__":
    main()
