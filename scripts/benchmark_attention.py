"""Benchmark: SDPA's default backend vs its MATH backend in training (forward + backward + AdamW step), on the CPU.

Three cases: (a) a training step of the mini preset (batch 8, as `anyref train`), (b) a 1024-token step of the mini
preset's LLM as the training forward runs it (LoRA, last-layer capture, refocused `<obj>` embeddings, padded batch),
(c) attention alone with the mini LLM's shapes at 1024 tokens. The two backends alternate within each repeat, so
drift on a shared machine hits both. Writes data/results/attention_backends.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from anyref import AnyRefModel, preset
from anyref.engine import Recipe, make_optimizer, seed_everything
from anyref.paths import RESULTS_DIR
from anyref.provenance import commit, machine
from anyref.refocus import ObjQuery, capture_last_layer
from anyref.train import TrainConfig, batch_at, step_loss

BACKENDS = {"default": nullcontext, "math": lambda: sdpa_kernel([SDPBackend.MATH])}


def timed(step, repeats: int, warmup: int) -> dict:
    """Seconds of `step()` under each backend: `warmup` untimed rounds, then `repeats` rounds alternating the order."""
    times = {name: [] for name in BACKENDS}
    for round_ in range(warmup + repeats):
        order = list(BACKENDS) if round_ % 2 == 0 else list(reversed(BACKENDS))
        for name in order:
            with BACKENDS[name]():
                began = time.perf_counter()
                step()
                spent = time.perf_counter() - began
            if round_ >= warmup:
                times[name].append(round(spent, 4))
    median = {name: statistics.median(values) for name, values in times.items()}
    return {"median_s": median, "math_over_default": round(median["math"] / median["default"], 3),
            "faster": min(median, key=median.get),
            "rounds_default_faster": sum(d < m for d, m in zip(times["default"], times["math"])),
            "times_s": times, "repeats": repeats, "warmup_rounds": warmup}


def optimiser_step(module, loss_of):
    """One training step (zero grad, backward of `loss_of()`, AdamW) over the trainable parameters of `module`."""
    optimizer, _ = make_optimizer(module, Recipe(steps=100, lr=1e-5, seed=0, warmup_steps=1))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_of().backward()
        optimizer.step()
    return step


def training_case(model, *, batch_size: int):
    """(a) `anyref train`'s step on the mini preset: one fixed batch of text referring."""
    batch = batch_at(0, model, TrainConfig(batch_size=batch_size))
    return optimiser_step(model, lambda: step_loss(model, batch)["loss"])


def long_llm_case(model, *, tokens: int, batch_size: int):
    """(b) The training forward's LLM part at `tokens` tokens: last-layer capture, LM loss, refocused `<obj>`."""
    llama = model.llama
    width = llama.config.hidden_size
    embeds = torch.randn(batch_size, tokens, width) * 0.02  # (B, L, D)
    attention = torch.ones(batch_size, tokens, dtype=torch.long)  # (B, L)
    attention[1::2, tokens * 3 // 4:] = 0  # every other prompt shorter, padded as in a batch
    labels = torch.randint(0, llama.config.vocab_size, (batch_size, tokens))  # (B, L)
    queries = [ObjQuery(batch=b, query=int(attention[b].sum()) - 1, start=tokens // 2) for b in range(batch_size)]

    def loss():
        with capture_last_layer(llama.model) as record:
            hidden = llama.model(inputs_embeds=embeds, attention_mask=attention).last_hidden_state  # (B, L, D)
        logits = llama.lm_head(hidden)  # (B, L, V)
        lm = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
        embeddings, _ = model.obj_embeddings(hidden, record[0], queries, key_padding=attention)  # (N, D)
        return lm + embeddings.pow(2).mean()
    return optimiser_step(model, loss)


def attention_case(model, *, tokens: int, batch_size: int):
    """(c) Causal SDPA alone, forward + backward, with the mini LLM's heads and head size."""
    config = model.llama.config
    heads, head_dim = config.num_attention_heads, config.hidden_size // config.num_attention_heads
    q, k, v = (torch.randn(batch_size, heads, tokens, head_dim, requires_grad=True) for _ in range(3))  # (B, H, L, d)

    def step():
        torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True).pow(2).mean().backward()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the other core is busy)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "attention_backends.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    seed_everything(0)
    model = AnyRefModel(preset("mini")).train()
    cases = {
        "mini_training_step_batch8": (training_case(model, batch_size=8), "anyref train's step, mini preset, batch 8"),
        f"llm_step_{args.tokens}_tokens": (long_llm_case(model, tokens=args.tokens, batch_size=4),
                                           f"mini LLM (LoRA) + refocusing, batch 4 x {args.tokens} tokens"),
        f"attention_{args.tokens}_tokens": (attention_case(model, tokens=args.tokens, batch_size=4),
                                            f"causal SDPA forward + backward, batch 4 x 4 heads x {args.tokens} x 32"),
    }
    load_before, results = os.getloadavg()[0], {}
    for name, (step, what) in cases.items():
        results[name] = {"what": what, **timed(step, args.repeats, warmup=2)}
        print(name, results[name]["median_s"], "math/default", results[name]["math_over_default"])
    report = {"benchmark": "SDPA default backend vs MATH, training steps on the CPU", "commit": commit(),
              "machine": machine(), "torch_threads": torch.get_num_threads(),
              "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
              "cases": results,
              "default_is_faster_everywhere": all(r["faster"] == "default" for r in results.values())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
